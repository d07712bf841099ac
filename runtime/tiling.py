"""Images of any size through a backend: padding, and tiles with blended overlaps.

Every backend sees NCHW float32 with H and W padded to a multiple of 16 (and up to
the engine profile's minimum), padded the way the network pads (reflect, or
replicate for sides too small to reflect), so a padded call equals the network's own
padding. Images larger than the profile or the memory budget run as overlapping
tiles; each tile's output is weighted by a separable raised-cosine ramp in the
overlaps, normalised so the weights of all tiles sum to exactly one at every pixel
(no seams on smooth content, no brightness change). One tile that covers the image
has weight one everywhere, so it equals the untiled result exactly.

Memory is bounded: tiles run one band of rows at a time and rows are written to the
output as soon as no later band touches them, so besides the input and the output
only one band of float32 accumulator and one tile are alive (an 8K image needs
~50 MB on top of its own 8-bit input and output, instead of ~800 MB in float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import SaphnetError
from ..sizes import PAD_MULTIPLE

DEFAULT_OVERLAP = 64

Infer = Callable[[np.ndarray], np.ndarray]


def pad_to_multiple(
    x: np.ndarray, multiple: int = PAD_MULTIPLE, min_hw: tuple[int, int] = (1, 1)
) -> np.ndarray:
    """Pad (N, C, H, W) at the bottom/right to a multiple of ``multiple`` and at least
    ``min_hw``, reflecting where the side allows it and replicating where it does not
    (the same rule as :func:`saphnet.model.pad_to_multiple`)."""
    h, w = x.shape[2], x.shape[3]
    th = max(-(-h // multiple) * multiple, -(-min_hw[0] // multiple) * multiple)
    tw = max(-(-w // multiple) * multiple, -(-min_hw[1] // multiple) * multiple)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)


def run_padded(infer: Infer, x: np.ndarray, min_hw: tuple[int, int] = (1, 1)) -> np.ndarray:
    """``infer`` on ``x`` padded to a multiple of 16, cropped back."""
    h, w = x.shape[2], x.shape[3]
    return infer(pad_to_multiple(x, PAD_MULTIPLE, min_hw))[:, :, :h, :w]


@dataclass(frozen=True)
class TilePlan:
    """Tile size and start positions along each axis."""

    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    overlap: int

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def axis_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Starts of tiles of size ``tile`` covering [0, length), neighbours overlapping by
    at least ``overlap``; the last tile ends at ``length``."""
    if tile >= length:
        return (0,)
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return tuple(starts)


def plan_tiles(
    h: int, w: int, tile: int | tuple[int, int], overlap: int = DEFAULT_OVERLAP
) -> TilePlan:
    """Tiles of at most ``tile`` (a multiple of 16) over an H x W image."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    for t in (th, tw):
        if t < 2 * PAD_MULTIPLE or t % PAD_MULTIPLE:
            raise SaphnetError(
                f"--tile {t} must be a multiple of {PAD_MULTIPLE} and at least {2 * PAD_MULTIPLE}"
            )
    if overlap < 0 or overlap >= min(th, tw):
        raise SaphnetError(
            f"--tile-overlap {overlap} must be >= 0 and smaller than the tile ({min(th, tw)})"
        )
    th, tw = min(th, h), min(tw, w)
    return TilePlan(th, tw, axis_starts(h, th, overlap), axis_starts(w, tw, overlap), overlap)


def choose_tile(
    h: int, w: int, max_hw: tuple[int, int] | None, max_pixels: int
) -> tuple[int, int] | None:
    """None when the (padded) image fits the profile and the pixel budget; else the
    largest tile that does (bigger tiles give the global attention more context).
    ``max_pixels`` comes from the memory budget (:func:`.memory.max_tile_pixels`)."""
    ph, pw = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
    fits_profile = max_hw is None or (ph <= max_hw[0] and pw <= max_hw[1])
    if fits_profile and ph * pw <= max_pixels:
        return None
    side = max(2 * PAD_MULTIPLE, int(math.sqrt(max_pixels)) // PAD_MULTIPLE * PAD_MULTIPLE)
    th = tw = side
    if max_hw is not None:
        th, tw = min(th, max_hw[0]), min(tw, max_hw[1])
    # Spend the budget on the long side when the other side is small.
    if ph <= th:
        tw = max(
            tw,
            min(pw, max_pixels // ph // PAD_MULTIPLE * PAD_MULTIPLE, max_hw[1] if max_hw else pw),
        )
    elif pw <= tw:
        th = max(
            th,
            min(ph, max_pixels // pw // PAD_MULTIPLE * PAD_MULTIPLE, max_hw[0] if max_hw else ph),
        )
    return th, tw


def _ramp(length: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """Raised-cosine ramps over ``overlap`` pixels at the sides that have a neighbour;
    strictly positive so every pixel has weight from the tiles that cover it."""
    r = np.ones(length, np.float64)
    n = min(overlap, length)
    if n > 0:
        up = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        if left:
            r[:n] = np.minimum(r[:n], up)
        if right:
            r[length - n :] = np.minimum(r[length - n :], up[::-1])
    return r


def axis_weights(length: int, tile: int, starts: tuple[int, ...], overlap: int) -> list[np.ndarray]:
    """Per-tile 1-D weights along one axis that sum to one at every position."""
    raw = [_ramp(tile, overlap, i > 0, i < len(starts) - 1) for i in range(len(starts))]
    total = np.zeros(length, np.float64)
    for s, r in zip(starts, raw, strict=True):
        total[s : s + tile] += r
    return [(r / total[s : s + tile]).astype(np.float32) for s, r in zip(starts, raw, strict=True)]


def _scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise SaphnetError(f"image dtype {dtype} is not uint8, uint16 or float")


_CHUNK = 64
"""Rows converted or moved at a time, so temporaries stay small next to the band."""


def _store(out: np.ndarray, y0: int, rows_chw: np.ndarray, scale: float) -> None:
    """Write float rows (C, n, W) in [0, 1] into ``out`` (H, W, C) of its own dtype."""
    for i in range(0, rows_chw.shape[1], _CHUNK):
        rows = np.moveaxis(rows_chw[:, i : i + _CHUNK], 0, -1)
        dst = out[y0 + i : y0 + i + rows.shape[0]]
        if np.issubdtype(out.dtype, np.floating):
            dst[...] = rows
        else:
            dst[...] = np.clip(np.rint(rows * scale), 0, scale)


def _shift_up(acc: np.ndarray, start: int, keep: int) -> None:
    """acc[:, :keep] = acc[:, start:start + keep], then zero the rest, chunk by chunk."""
    for i in range(0, keep, _CHUNK):
        n = min(_CHUNK, keep - i)
        acc[:, i : i + n] = acc[:, start + i : start + i + n]
    acc[:, keep:] = 0.0


def deblur_image(
    infer: Infer,
    image: np.ndarray,
    tile: int | tuple[int, int] | None = None,
    overlap: int = DEFAULT_OVERLAP,
    min_hw: tuple[int, int] = (1, 1),
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``infer`` over an (H, W, 3) image (uint8, uint16 or float in [0, 1]) and
    return an image of the same shape and dtype; ``tile=None`` runs it whole.

    ``infer`` takes and returns (1, 3, h, w) float32 with h, w multiples of 16;
    ``progress(done, total)`` is called with the tiles done and planned after each tile.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise SaphnetError(f"expected an (H, W, 3) image, got shape {image.shape}")
    h, w = image.shape[:2]
    scale = _scale(image.dtype)
    whole = max(2 * PAD_MULTIPLE, -(-max(h, w) // PAD_MULTIPLE) * PAD_MULTIPLE)
    plan = plan_tiles(h, w, tile if tile is not None else whole, overlap if tile is not None else 0)
    wy = axis_weights(h, plan.tile_h, plan.ys, overlap)
    wx = axis_weights(w, plan.tile_w, plan.xs, overlap)
    out = np.empty_like(image)
    acc = np.zeros((3, plan.tile_h, w), np.float32)
    done = 0
    for k, y in enumerate(plan.ys):
        for j, x in enumerate(plan.xs):
            patch = image[y : y + plan.tile_h, x : x + plan.tile_w]
            batch = np.ascontiguousarray(np.moveaxis(patch, -1, 0)[None], dtype=np.float32)
            if scale != 1.0:
                batch /= np.float32(scale)
            result = run_padded(infer, batch, min_hw)[0]
            if plan.count == 1:
                acc += result
            else:
                acc[:, :, x : x + plan.tile_w] += (
                    result * wy[k][None, :, None] * wx[j][None, None, :]
                )
            done += 1
            if progress is not None:
                progress(done, plan.count)
        end = plan.ys[k + 1] if k + 1 < len(plan.ys) else h
        _store(out, y, acc[:, : end - y], scale)
        keep = y + plan.tile_h - end
        _shift_up(acc, end - y, keep)
    return out
