"""Calibration tiles for ``saphnet quantize``: the user's own blurred images, cut into tiles.

Activation ranges are what calibration measures, and they depend on the content the
network will see, not on the image size (the network is fully convolutional), so a
few tiles spread over each image calibrate as well as whole frames at a fraction of
the time. Tiles are taken round-robin over the images (every image contributes before
any gives a second tile), each image's tiles spread evenly over it, so ``--images N``
samples the whole set. Without a folder the default set is the shipped blurred sample
and the held-out photos (scikit-image's chelsea and coffee) blurred with their own
seed, so that ``saphnet eval --heldout`` never scores an image it was calibrated on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import SaphnetError

TILE = 256
"""Side of a calibration tile (smaller images give one tile, cropped to a multiple of 16)."""
ALIGN = 16
CALIBRATION_SEED = 4321
"""Blur seed of the held-out photos in the default set (``eval --heldout`` uses 1234)."""
DEFAULT_IMAGES = 8


def default_calibration_images() -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 float32) of the shipped blurred sample and the blurred held-out photos."""
    from ..data.datasets import BUILTIN_HELDOUT, heldout_dataset, read_rgb
    from ..data.sample import SAMPLE_BLUR

    heldout = heldout_dataset(crop=None, count=len(BUILTIN_HELDOUT), seed=CALIBRATION_SEED)
    images = [("sample_blur.png", read_rgb(SAMPLE_BLUR))]
    images += [(f"heldout/{name}", heldout[i][0]) for i, name in enumerate(BUILTIN_HELDOUT)]
    return images


def folder_images(folder: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Every image file directly in ``folder``, or a one-line error naming the fix."""
    from ..data.datasets import image_files, read_rgb

    root = Path(folder)
    if not root.is_dir():
        raise SaphnetError(
            f"calibration folder {root} does not exist; give a folder of blurred images"
        )
    files = image_files(root)
    if not files:
        raise SaphnetError(
            f"{root} holds no PNG/JPEG/TIFF images; put a few blurred photos of the kind you will deblur there"
        )
    return [(p.name, read_rgb(p)) for p in files]


def _tile_origins(height: int, width: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping ``side`` tiles spread evenly over the image,
    nearest the centre first (the most typical content when only one is taken)."""
    rows, cols = max(1, height // side), max(1, width // side)
    ys = np.linspace(0, height - side, rows).round().astype(int)
    xs = np.linspace(0, width - side, cols).round().astype(int)
    cy, cx = (height - side) / 2, (width - side) / 2
    corners = [(int(y), int(x)) for y in ys for x in xs]
    return sorted(corners, key=lambda c: ((c[0] - cy) ** 2 + (c[1] - cx) ** 2, c))


def image_tiles(image: np.ndarray, side: int = TILE) -> list[np.ndarray]:
    """(1, 3, s, s) float32 tiles of an (H, W, 3) image, s = ``side`` or the largest
    multiple of 16 that fits."""
    h, w = image.shape[:2]
    s = min(side, h // ALIGN * ALIGN, w // ALIGN * ALIGN)
    if s < ALIGN:
        raise SaphnetError(f"a {h}x{w} image is too small to calibrate on; give images >= 16x16")
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    return [chw[None, :, y : y + s, x : x + s].copy() for y, x in _tile_origins(h, w, s)]


def calibration_tiles(
    images: Sequence[tuple[str, np.ndarray]], count: int, side: int = TILE
) -> list[np.ndarray]:
    """``count`` tiles taken round-robin over ``images`` (fewer when they hold fewer)."""
    if count < 1:
        raise SaphnetError(f"--images {count}: calibrate on at least one tile")
    per_image = [iter(image_tiles(image, side)) for _, image in images]
    tiles: list[np.ndarray] = []
    while len(tiles) < count and per_image:
        for source in list(per_image):
            tile = next(source, None)
            if tile is None:
                per_image.remove(source)
            elif len(tiles) < count:
                tiles.append(tile)
    return tiles


class TileReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of tiles, ticking a
    progress bar per tile (calibration runs the network once per tile)."""

    def __init__(self, input_name: str, tiles: Sequence[np.ndarray], progress=None) -> None:
        self.input_name, self.tiles, self.progress = input_name, list(tiles), progress
        self._items: Iterator[np.ndarray] = iter(self.tiles)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tile = next(self._items, None)
        if tile is None:
            return None
        if self.progress is not None:
            self.progress()
        return {self.input_name: tile}

    def rewind(self) -> None:
        self._items = iter(self.tiles)

    def __len__(self) -> int:
        return len(self.tiles)
