"""The smallest image every command takes, and the one check of it.

``deblur``, ``serve``, ``bench --sizes``, ``inspect``, ``eval`` and ``export --static``
all refuse the same sizes with the same words, so a size one command takes is one
every other command takes too. Torch- and numpy-free: the CLI's argument parsers use it.
"""

from __future__ import annotations

from .errors import SaphnetError

MIN_SIDE = 16
"""Smaller images have no room for the network's 1/4-resolution, 2x2-patch features;
it is also the smallest side the dynamic ONNX export is declared for."""

PAD_MULTIPLE = 16
"""The network pads every side to a multiple of this (so do engine profiles)."""

MIN_STATIC_SIDE = 2 * PAD_MULTIPLE
"""Smallest side of a static-shape export: larger images run as tiles of its size,
and a tile is at least two padding blocks (``runtime.tiling.plan_tiles``)."""


def too_small(h: int, w: int) -> str | None:
    """Why an H x W image is too small for SAPHNet, or None when it is not."""
    if min(h, w) < MIN_SIDE:
        return f"{w}x{h} is too small; SAPHNet needs at least {MIN_SIDE} pixels per side"
    return None


def check_min_side(what: str, h: int, w: int) -> None:
    """Raise a one-line SaphnetError naming ``what`` when H x W is too small."""
    problem = too_small(h, w)
    if problem:
        raise SaphnetError(f"{what}: {problem}")


def check_static_shape(h: int, w: int) -> None:
    """A static export's H x W: multiples of 16 of at least :data:`MIN_STATIC_SIDE`,
    the shapes an engine profile takes and deblur can tile with."""
    if min(h, w) < MIN_STATIC_SIDE or h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        fit = [max(MIN_STATIC_SIDE, -(-v // PAD_MULTIPLE) * PAD_MULTIPLE) for v in (h, w)]
        raise SaphnetError(
            f"static shape {h}x{w}: H and W must be multiples of {PAD_MULTIPLE} of at least "
            f"{MIN_STATIC_SIDE} (engines and tiles need them), e.g. --static {fit[0]}x{fit[1]}"
        )
