"""PyTorch FP32 reference vs exported ONNX files, on real images, with Polygraphy.

Polygraphy does the running and the comparing: a small :class:`TorchRunner` for the
reference (Polygraphy's own PyTorch runner assumes CUDA) and its ``OnnxrtRunner`` for
each file go through ``Comparator.run``; ``Comparator.compare_accuracy`` with
``SimpleCompareFunc`` (max and mean absolute error) and ``PsnrCompareFunc`` (peak =
the reference output's maximum, 1.0 for a typical image) gives the verdicts. SSIM (scikit-image) and the NaN/Inf count, which Polygraphy has no metric
for, are computed here from the same run results. Results are data
(:class:`ModelReport`); :mod:`.compare_report` prints and writes them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, PsnrCompareFunc, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from ..errors import SaphnetError
from ..export.metadata import ExportMetadata
from ..model import SAPHNet
from .artefacts import open_artefact
from .onnxruntime_backend import OnnxRuntimeBackend
from .tiling import pad_to_multiple

log = logging.getLogger(__name__)
# Plain text, as every saphnet line: with colours on, Polygraphy's first message is a
# warning that the optional 'colored' module is missing, which compare's users cannot act on.
G_LOGGER.colors = False

INPUT = "input"
OUTPUT = "output"
SAMPLE_IMAGE = Path(str(resources.files("saphnet") / "assets" / "sample_blur.png"))
SKIMAGE_IMAGES = ("astronaut", "chelsea", "coffee")


@dataclass(frozen=True)
class Thresholds:
    """What a file must meet on every image (NaN/Inf always fail)."""

    max_abs: float
    min_psnr: float
    min_ssim: float


DEFAULT_THRESHOLDS = {
    "fp32": Thresholds(max_abs=1e-3, min_psnr=60.0, min_ssim=0.999),
    "fp16": Thresholds(max_abs=5e-2, min_psnr=45.0, min_ssim=0.99),
    # saphnet quantize files: its default --min-psnr (40 dB on the calibration tiles)
    # less a margin for images it never saw; max abs reached 0.17 on held-out photos (README, INT8).
    "int8": Thresholds(max_abs=0.25, min_psnr=35.0, min_ssim=0.98),
}


@dataclass(frozen=True)
class ImageResult:
    """One file on one image, against the reference output."""

    image: str
    height: int
    width: int
    max_abs: float
    mean_abs: float
    psnr: float
    ssim: float
    nonfinite: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class ModelReport:
    """One ONNX file: what it is, what it had to meet, how it did per image."""

    path: str
    pdf_op: str
    precision: str
    providers: list[str]
    thresholds: Thresholds
    images: list[ImageResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.images)

    def worst(self) -> dict[str, float | int]:
        """Worst value of each metric over the images."""
        return {
            "max_abs": max(r.max_abs for r in self.images),
            "mean_abs": max(r.mean_abs for r in self.images),
            "psnr": min(r.psnr for r in self.images),
            "ssim": min(r.ssim for r in self.images),
            "nonfinite": sum(r.nonfinite for r in self.images),
        }


class TorchRunner(BaseRunner):
    """Polygraphy runner for the PyTorch FP32 reference on CPU."""

    def __init__(self, model: SAPHNet, name: str = "pytorch-fp32") -> None:
        super().__init__(name=name, prefix="pytorch-runner")
        self._model = model

    def activate_impl(self) -> None:
        self.model = self._model.float().eval()

    def get_input_metadata_impl(self) -> TensorMetadata:
        return TensorMetadata().add(INPUT, np.float32, (None, 3, None, None))

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model(torch.from_numpy(feed_dict[INPUT]))
        self.inference_time = time.perf_counter() - start
        return OrderedDict([(OUTPUT, out.numpy())])

    def deactivate_impl(self) -> None:
        del self.model


def load_image(path: str | os.PathLike[str], max_side: int) -> np.ndarray:
    """An RGB image as (3, H, W) float32 in [0, 1], centre-cropped to ``max_side``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise SaphnetError(f"cannot read image {path}: {exc}; give a PNG or JPEG") from None
    return _prepare(rgb, max_side)


def _prepare(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max_side > 0:
        top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
        rgb = rgb[top : top + max_side, left : left + max_side]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def default_images(max_side: int) -> list[tuple[str, np.ndarray]]:
    """The bundled blurred sample (when shipped) and scikit-image's colour test images."""
    import skimage.data

    images = []
    if SAMPLE_IMAGE.is_file():
        images.append((SAMPLE_IMAGE.name, load_image(SAMPLE_IMAGE, max_side)))
    images += [(name, _prepare(getattr(skimage.data, name)(), max_side)) for name in SKIMAGE_IMAGES]
    return images


def ssim(reference: np.ndarray, output: np.ndarray) -> float:
    """SSIM of two (3, H, W) images in [0, 1]; NaN when the output is not finite."""
    from skimage.metrics import structural_similarity

    if not np.isfinite(output).all():
        return math.nan
    return float(structural_similarity(reference, output, data_range=1.0, channel_axis=0))


def _failures(
    metrics: dict[str, float], nonfinite: int, limits: Thresholds, abs_ok: bool, psnr_ok: bool
) -> tuple[str, ...]:
    """Why an image fails: Polygraphy's max-abs and PSNR verdicts, our SSIM and NaN/Inf."""
    found = []
    if nonfinite:
        found.append(f"{nonfinite} NaN/Inf")
    if not abs_ok:
        found.append(f"max abs {metrics['max_abs']:.3g} > {limits.max_abs:g}")
    if not psnr_ok:
        found.append(f"PSNR {metrics['psnr']:.1f} < {limits.min_psnr:g} dB")
    if not metrics["ssim"] >= limits.min_ssim:  # NaN fails too
        found.append(f"SSIM {metrics['ssim']:.4f} < {limits.min_ssim:g}")
    return tuple(found)


def _runner_names(paths: Sequence[Path]) -> list[str]:
    names = []
    for path in paths:
        name = path.name
        while name in names:
            name = f"{name}'"
        names.append(name)
    return names


def fit_image(img: np.ndarray, hw: tuple[int, int] | None) -> np.ndarray:
    """A (3, H, W) image at a static file's own size: centre-cropped where larger,
    padded (reflect, as the network pads) at the bottom/right where smaller; None
    leaves it as it is. The reference sees the same pixels, so the comparison is fair."""
    if hw is None:
        return img
    h, w = hw
    top, left = max(0, (img.shape[1] - h) // 2), max(0, (img.shape[2] - w) // 2)
    img = img[:, top : top + h, left : left + w]
    return pad_to_multiple(img[None], 1, (h, w))[0]


def compare_models(
    reference: SAPHNet,
    onnx_paths: Sequence[str | os.PathLike[str]],
    images: Sequence[tuple[str, np.ndarray]],
    thresholds: dict[str, Thresholds] | None = None,
    providers: str | None = None,
) -> list[ModelReport]:
    """Run the reference and every file on every image; one report per file. A
    static-shape file is compared at its own size (:func:`fit_image`), with the
    reference run again on images of that size."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    paths = [Path(p) for p in onnx_paths]
    backends = [OnnxRuntimeBackend(p, providers=providers) for p in paths]
    names = _runner_names(paths)
    sizes: dict[tuple[int, int] | None, list[int]] = {}
    for i, backend in enumerate(backends):
        sizes.setdefault(backend.artefact.static_hw, []).append(i)
    reports: dict[int, ModelReport] = {}
    for hw, members in sizes.items():
        sized = [(name, fit_image(img, hw)) for name, img in images]
        ref = TorchRunner(reference)
        runners = [ref, *(OnnxrtRunner(backends[i].session, name=names[i]) for i in members)]
        feeds = [OrderedDict([(INPUT, img[None])]) for _, img in sized]
        log.info(
            "running %d images%s through the reference and %d files",
            len(feeds),
            f" at {hw[0]}x{hw[1]}" if hw else "",
            len(members),
        )
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
            results = Comparator.run(runners, data_loader=feeds)
        for index, i in enumerate(members, start=1):
            reports[i] = _report(results, ref.name, names[i], index, backends[i], sized, limits)
            backends[i].close()
    return [reports[i] for i in range(len(paths))]


def _report(
    results,
    ref_name: str,
    name: str,
    index: int,
    backend: OnnxRuntimeBackend,
    images: Sequence[tuple[str, np.ndarray]],
    limits: dict[str, Thresholds],
) -> ModelReport:
    """One file's report from a Comparator run (runner 0 the reference, ``index`` it)."""
    limit = limits[backend.precision]
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        simple, psnr = Comparator.compare_accuracy(
            results,
            comparisons=[(0, index)],
            compare_func=[
                SimpleCompareFunc(atol=limit.max_abs, rtol=0.0, check_error_stat="max"),
                PsnrCompareFunc(psnr_threshold=limit.min_psnr),
            ],
        )
    pair = (ref_name, name)
    report = ModelReport(
        str(backend.path),
        backend.metadata.pdf_op,
        backend.precision,
        backend.providers,
        limit,
    )
    for i, (image_name, img) in enumerate(images):
        out = results[name][i][OUTPUT][0]
        stats, psnr_result = simple[pair][i][OUTPUT], psnr[pair][i][OUTPUT]
        metrics = {
            "max_abs": stats.max_absdiff,
            "mean_abs": stats.mean_absdiff,
            "psnr": float(psnr_result.psnr),
            "ssim": ssim(results[ref_name][i][OUTPUT][0], out),
        }
        nonfinite = int(np.count_nonzero(~np.isfinite(out)))
        report.images.append(
            ImageResult(
                image_name,
                img.shape[1],
                img.shape[2],
                **metrics,
                nonfinite=nonfinite,
                failures=_failures(metrics, nonfinite, limit, bool(stats), bool(psnr_result)),
            )
        )
    return report


def check_same_network(
    reference_config_json: str, weights_tag: str, paths: Sequence[str | os.PathLike[str]]
) -> list[ExportMetadata]:
    """Every file must come from the reference's config and weights, or the numbers lie."""
    metas = []
    for path in paths:
        meta = open_artefact(path, ("onnx",)).metadata
        assert meta is not None  # open_artefact refuses files without saphnet metadata
        if meta.config_dict != json.loads(reference_config_json):
            raise SaphnetError(
                f"{path} was exported from another network config; pass the --weights it came from"
            )
        if meta.weights_sha256 != weights_tag:
            raise SaphnetError(
                f"{path} was exported from weights {meta.weights_sha256[:16]}, the reference is "
                f"{weights_tag[:16]}; pass the --weights it came from"
            )
        metas.append(meta)
    return metas
