"""How large a tile fits a memory budget: peak memory per backend, estimated per pixel.

``saphnet deblur`` picks its tiles so the whole process stays under a budget
(default :data:`DEFAULT_MEMORY_BUDGET_MB`, 1 GB: a small board such as a Jetson Orin
Nano has 4-8 GB shared by the system, the camera pipeline and the GPU). The estimate is

    peak = base + activation_bytes_per_pixel * tile pixels + image buffers

with base and bytes per pixel measured for each backend as a least-squares line
through the peak RSS of fresh processes that ran three S x S inferences of the shipped
network, S = 256 ... 1024 (``benchmarks/deblur_memory.py fit``; 2-core CPU, residuals
<= 36 MB). Three, not one: ONNX Runtime plans a memory pattern on the first run and
allocates it on the second while the first run's arena is still held, which doubles
its per-pixel cost (740 bytes after one run, 1415 after three). A network with other widths scales the per-pixel cost by its first width,
since activations are dominated by the full-resolution feature maps. GPU backends
(TensorRT, CUDA providers) are not measured here; they use the ONNX Runtime figures
as an estimate of device memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .tiling import PAD_MULTIPLE

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_MB = 1024
"""Peak memory of one ``saphnet deblur`` process, by default."""

MIN_TILE = 128
"""Smallest tile the budget may choose: smaller tiles give the attention too little
context and spend most of their work on overlaps."""

REFERENCE_WIDTH = 16
"""First width of the network the constants were measured with (the shipped one)."""


@dataclass(frozen=True)
class PeakModel:
    """Fitted peak memory of one inference: ``base_mb + bytes_per_pixel * pixels``."""

    base_mb: float
    bytes_per_pixel: float


PEAK_MODELS = {
    # benchmarks/results/deblur_memory.json, "fit" (2-core CPU, shipped weights)
    "onnxruntime": PeakModel(base_mb=80.8, bytes_per_pixel=1415.0),
    "torch": PeakModel(base_mb=313.5, bytes_per_pixel=576.0),
}
PEAK_MODELS["torch-compile"] = PEAK_MODELS["torch"]
PEAK_MODELS["tensorrt"] = PEAK_MODELS["onnxruntime"]  # estimate: not measured without a GPU

IMAGE_BYTES_PER_PIXEL = 9
"""Per image pixel (8 bits; times 2 for 16): three RGB copies live at the peak, the
decoded file, the input array and the output array."""

BAND_BYTES_PER_PIXEL = 3 * 4
"""Per pixel of one band of rows (tile height x image width): the float32 RGB
accumulator of the tiling."""


def backend_width(backend: object) -> int:
    """The network's first width, from a torch backend's config or an ONNX file's metadata."""
    config = getattr(backend, "config", None)
    if config is not None and hasattr(config, "widths"):
        return int(config.widths[0])
    metadata = getattr(backend, "metadata", None)
    if metadata is not None:
        try:
            return int(metadata.config_dict()["widths"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    return REFERENCE_WIDTH


def peak_model(backend: object) -> PeakModel:
    """The fitted peak of ``backend``'s kind, scaled to its network's width."""
    model = PEAK_MODELS.get(getattr(backend, "name", ""), PEAK_MODELS["onnxruntime"])
    scale = backend_width(backend) / REFERENCE_WIDTH
    return PeakModel(model.base_mb, model.bytes_per_pixel * scale)


def max_tile_pixels(
    model: PeakModel, budget_mb: float, h: int, w: int, itemsize: int = 1, min_tile: int = MIN_TILE
) -> int:
    """The most pixels one inference may have so that an H x W image stays in budget.

    Never fewer than ``min_tile`` squared: below that the budget cannot be met and a
    warning says so (the image still runs, in the smallest tiles)."""
    free = budget_mb * 2**20 - model.base_mb * 2**20 - IMAGE_BYTES_PER_PIXEL * itemsize * h * w
    # the band accumulator grows with the tile height; solve with a square tile side s:
    # bytes_per_pixel * s^2 + BAND * s * w <= free
    a, b = model.bytes_per_pixel, BAND_BYTES_PER_PIXEL * w
    side = (-b + (b * b + 4 * a * max(free, 0.0)) ** 0.5) / (2 * a)
    side = int(side) // PAD_MULTIPLE * PAD_MULTIPLE
    if side < min_tile:
        need = estimate_peak_mb(model, min_tile, min_tile, h, w, itemsize)
        log.warning(
            "memory budget %.0f MB is below the ~%.0f MB that %d-px tiles of a %dx%d image "
            "need; running %d-px tiles anyway (raise --memory-budget to silence this)",
            budget_mb,
            need,
            min_tile,
            h,
            w,
            min_tile,
        )
        side = min_tile
    return side * side


def estimate_peak_mb(
    model: PeakModel, tile_h: int, tile_w: int, h: int, w: int, itemsize: int = 1
) -> float:
    """Estimated peak MB of deblurring an H x W image in tiles of tile_h x tile_w."""
    image = IMAGE_BYTES_PER_PIXEL * itemsize * h * w
    band = BAND_BYTES_PER_PIXEL * min(tile_h, h) * w
    return model.base_mb + (model.bytes_per_pixel * tile_h * tile_w + image + band) / 2**20
