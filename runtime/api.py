"""One entry point over the backends: ``open_backend`` and ``deblur``.

What a backend can run follows from the model file: an engine runs on TensorRT, an
ONNX file on ONNX Runtime, weights (or nothing: the shipped checkpoint) on PyTorch
or, exported once to a cached ONNX file, on ONNX Runtime. ``kind="auto"`` takes the
fastest that is available, in the order of :data:`AUTO_ORDER`; the CPU part of that
order is measured (README, ``saphnet bench``), not assumed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import SaphnetError
from .artefacts import open_artefact
from .backend import Backend
from .memory import DEFAULT_MEMORY_BUDGET_MB, MIN_TILE, max_tile_pixels, peak_model
from .tiling import DEFAULT_OVERLAP, PAD_MULTIPLE, choose_tile, deblur_image, run_padded

log = logging.getLogger(__name__)


class NonFiniteError(SaphnetError):
    """The input or the network's output holds NaN or Inf."""


KINDS = ("auto", "torch", "onnxruntime", "tensorrt")

AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu", "torch-cpu")
"""Fastest first. TensorRT and the CUDA paths: the GPU benchmarks; ONNX Runtime before
PyTorch on CPU: ``saphnet bench`` on a 2-core CPU (see README)."""


def _ort_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _cuda_driver_sees_a_gpu() -> bool:
    """Whether the CUDA driver (``libcuda``, through ctypes) reports a device: a check
    that costs no import of torch, whose ~190 MB would break ``saphnet deblur``'s 1 GB
    budget on every CPU machine where auto then picks ONNX Runtime."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    return count.value > 0


def _torch_has_cuda() -> bool:
    """Whether PyTorch runs on CUDA here; torch is imported only where a GPU is."""
    if not _cuda_driver_sees_a_gpu():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def cache_dir() -> Path:
    """Where ONNX files exported from weights are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "saphnet"


def cached_onnx(
    weights: str | os.PathLike[str] | None, pdf_op: str = "custom", precision: str = "fp32"
) -> Path:
    """An ONNX file exported from ``weights`` (default: the shipped ones), exported
    once and reused; the name holds the weights' checksum and the saphnet version, so
    new weights or a new exporter re-export."""
    from .. import __version__
    from ..files import sha256_file
    from ..weights import default_weights

    source = weights or default_weights()
    digest = sha256_file(source) if source else None
    key = digest[:16] if digest else "random-default"
    path = cache_dir() / f"saphnet-{__version__}-{key}-{pdf_op}-{precision}.onnx"
    if not path.is_file():
        from ..export import export_onnx
        from .torch_backend import load_model

        model = load_model(weights)  # bad weights fail here, before the export is announced
        log.info("exporting %s to %s (once)", source or "the default network", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(
            model,
            path,
            pdf_op=pdf_op,
            precision=precision,
            force=True,
            weights_sha256=digest,
        )
    return path


def open_backend(
    kind: str = "auto",
    model: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    device: str = "auto",
    plugin_library: str | os.PathLike[str] | None = None,
    pdf_op: str = "custom",
) -> Backend:
    """Open a backend.

    Args:
        kind: ``auto``, ``torch``, ``onnxruntime`` or ``tensorrt``.
        model: an engine (``.engine``/``.plan``), an ONNX file, or None to use ``weights``.
        weights: SAPHNet ``.safetensors`` (None: the shipped checkpoint) for torch, or
            for ONNX Runtime through a cached export.
        precision: ``fp32`` or ``fp16`` (torch and exports; engines and ONNX files
            carry their own).
        device: ``auto``, ``cpu`` or ``cuda`` (torch and ONNX Runtime).
        plugin_library: the saphnet plugin library for TensorRT / ONNX Runtime's
            TensorRT provider (default: the installed one).
        pdf_op: the PDF op form of an export made from weights.
    """
    if kind not in KINDS:
        raise SaphnetError(f"backend {kind!r} is not one of {', '.join(KINDS)}")
    if model is not None and weights is not None:
        raise SaphnetError(
            "give --model or --weights, not both (the model file already holds its weights)"
        )
    artefact = open_artefact(model, ("onnx", "engine")) if model is not None else None
    if weights is not None:
        open_artefact(weights, ("weights",))

    if artefact is not None and artefact.kind == "engine":
        if kind not in ("auto", "tensorrt"):
            raise SaphnetError(
                f"{artefact.path.name} is a TensorRT engine; use --backend tensorrt or auto"
            )
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(artefact.path, plugin_library=plugin_library)
    if kind == "tensorrt":
        raise SaphnetError(
            "the tensorrt backend runs an engine: saphnet build MODEL.onnx -o MODEL.engine, then --model MODEL.engine"
        )
    if artefact is not None:
        if kind == "torch":
            raise SaphnetError(
                f"{artefact.path.name} is an ONNX file; use --backend onnxruntime or auto, or --weights for torch"
            )
        return _onnxruntime(artefact.path, device, plugin_library)

    choice = kind if kind != "auto" else _auto_for_weights(device)
    if choice.startswith("onnxruntime"):
        use_cuda = device == "cuda" or (device == "auto" and _ort_has_cuda())
        onnx_precision = precision if use_cuda else "fp32"
        return _onnxruntime(
            cached_onnx(weights, pdf_op, onnx_precision),
            "cuda" if use_cuda else "cpu",
            plugin_library,
        )
    from .torch_backend import TorchBackend

    return TorchBackend(weights=weights, precision=precision, device=device)


def _auto_for_weights(device: str) -> str:
    """The first of :data:`AUTO_ORDER` that runs from weights here (no engine given)."""
    # Checked lazily, in order: nothing is imported to rule out a backend already beaten.
    available: dict[str, Callable[[], bool]] = {
        "onnxruntime-cuda": lambda: device in ("auto", "cuda") and _ort_has_cuda(),
        "torch-cuda": lambda: device in ("auto", "cuda") and _torch_has_cuda(),
        "onnxruntime-cpu": lambda: device in ("auto", "cpu"),
        "torch-cpu": lambda: device in ("auto", "cpu"),
    }
    for name in AUTO_ORDER:
        if name in available and available[name]():
            log.info("auto backend: %s", name)
            return "onnxruntime" if name.startswith("onnxruntime") else "torch"
    raise SaphnetError(f"no backend runs on device {device!r}; use --device cpu")


def _onnxruntime(path: Path, device: str, plugin_library: str | os.PathLike[str] | None) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    if device == "auto":
        providers = "cuda" if _ort_has_cuda() else "cpu"
    elif device.startswith("cuda"):
        providers = "cuda"
    else:
        providers = "cpu"
    return OnnxRuntimeBackend(path, providers=providers, plugin_library=plugin_library)


def deblur(
    backend: Backend,
    rgb: np.ndarray,
    tile: int | None = 0,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Deblur an (H, W, 3) uint8/uint16/float image with ``backend``.

    ``tile``: 0 chooses (untiled when the image fits the backend's profile and the
    memory budget, else the largest tiles that fit it), None never tiles, N uses
    N x N tiles. ``memory_budget_mb``: peak memory of the process to stay under
    (estimated per backend, :mod:`.memory`). ``progress(done, total)`` is called
    after each tile. A non-finite input or output raises :class:`NonFiniteError`
    naming the likely cause, so no black image is ever returned.
    """
    if np.issubdtype(rgb.dtype, np.floating) and not np.isfinite(rgb).all():
        raise NonFiniteError("the input image holds NaN/Inf pixels; give an image of finite values")
    chosen = plan_tile(
        backend, rgb.shape[0], rgb.shape[1], tile, overlap, memory_budget_mb, rgb.dtype.itemsize
    )
    overlap = fit_overlap(chosen, overlap) if tile == 0 else overlap
    min_hw = getattr(backend, "min_hw", (1, 1))
    return deblur_image(_checked(backend), rgb, chosen, overlap, min_hw, progress)


def fit_overlap(tile: int | tuple[int, int] | None, overlap: int) -> int:
    """``overlap``, or a quarter of the tile where tiles capped by the model (an engine
    profile's or a static file's largest size) leave no room for it: chosen tiles are
    otherwise always wider than twice the overlap (:func:`pixel_budget`)."""
    if tile is None:
        return overlap
    side = min(tile) if isinstance(tile, tuple) else tile
    if overlap < side:
        return overlap
    fitted = side // 4
    log.warning(
        "the model takes tiles of at most %d px, too small for a %d px overlap: using %d px",
        side,
        overlap,
        fitted,
    )
    return fitted


def deblur_batch(
    backend: Backend,
    images: np.ndarray,
    tile: int | None = 0,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> np.ndarray:
    """Deblur (N, H, W, 3) uint8 or uint16 images of one size (video frames, a serving
    batch); each comes out with the bytes :func:`deblur` gives it alone under the same
    budget. Images that need no tiles go :func:`images_per_call` at a time into one
    inference (the same padding, scaling and rounding), tiled ones one by one."""
    n, h, w = images.shape[:3]
    max_pixels = pixel_budget(backend, h, w, overlap, memory_budget_mb, images.dtype.itemsize)
    step = images_per_call(backend, h, w, tile, max_pixels, n)
    if step == 1:
        return np.stack([deblur(backend, im, tile, overlap, memory_budget_mb) for im in images])
    out = np.empty_like(images)
    min_hw = getattr(backend, "min_hw", (1, 1))
    infer = _checked(backend)
    scale = float(np.iinfo(images.dtype).max)
    for i in range(0, n, step):
        x = np.ascontiguousarray(images[i : i + step].transpose(0, 3, 1, 2), np.float32)
        x /= np.float32(scale)
        y = run_padded(infer, x, min_hw)
        out[i : i + step] = np.clip(np.rint(y.transpose(0, 2, 3, 1) * scale), 0, scale)
    return out


def images_per_call(
    backend: Backend, h: int, w: int, tile: int | None, max_pixels: int, limit: int
) -> int:
    """How many H x W images one inference may take: 1 when an image is tiled, else as
    many as fit ``max_pixels`` (the budget of one inference) once padded to 16 and to
    the profile's minimum, at most ``limit`` and the engine profile's largest batch."""
    untiled = tile is None or (
        tile == 0 and choose_tile(h, w, getattr(backend, "max_hw", None), max_pixels) is None
    )
    if not untiled:
        return 1
    min_hw = getattr(backend, "min_hw", (1, 1))
    padded = _ceil16(max(h, min_hw[0])) * _ceil16(max(w, min_hw[1]))
    n = min(limit, max_pixels // padded, profile_batch(backend) or limit)
    return max(1, n)


def profile_batch(backend: Backend) -> int | None:
    """The largest batch an engine's profile takes (None: the backend has no limit)."""
    profile = getattr(backend, "profile", None)
    return int(profile.max[0]) if profile is not None else None


def _ceil16(v: int) -> int:
    return -(-v // PAD_MULTIPLE) * PAD_MULTIPLE


def plan_tile(
    backend: Backend,
    h: int,
    w: int,
    tile: int | None = 0,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    itemsize: int = 1,
) -> int | tuple[int, int] | None:
    """The tile :func:`deblur` uses for an H x W image (None: untiled); see there."""
    max_hw = getattr(backend, "max_hw", None)
    if tile == 0:
        budget = pixel_budget(backend, h, w, overlap, memory_budget_mb, itemsize)
        chosen = choose_tile(h, w, max_hw, budget)
        if chosen is not None:
            log.info(
                "tiling %dx%d in tiles of %dx%d (memory budget %.0f MB)",
                h,
                w,
                *chosen,
                memory_budget_mb,
            )
        return chosen
    if tile is not None and max_hw is not None:
        return (min(tile, max_hw[0]), min(tile, max_hw[1]))  # never beyond the profile
    return tile


def pixel_budget(
    backend: Backend,
    h: int,
    w: int,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    itemsize: int = 1,
) -> int:
    """The most pixels one inference of ``backend`` may take while an H x W image (or
    frame, or request) stays within ``memory_budget_mb``: what :func:`plan_tile`
    tiles by, and what video and serving batches are filled up to."""
    min_tile = max(MIN_TILE, _ceil16(2 * overlap + 1))
    return max_tile_pixels(peak_model(backend), memory_budget_mb, h, w, itemsize, min_tile)


def _checked(backend: Backend) -> Callable[[np.ndarray], np.ndarray]:
    """``backend.infer`` that raises instead of returning NaN/Inf (which would be
    written as a black image); the message names the likely cause."""

    def infer(batch: np.ndarray) -> np.ndarray:
        out = backend.infer(batch)
        if not np.isfinite(out).all():
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            if backend.precision == "fp16":
                cause = (
                    "FP16 overflowed (or the model's weights hold NaN/Inf); "
                    "run an FP32 model or --precision fp32"
                )
            else:
                cause = (
                    "likely causes: weights that hold NaN/Inf, or finite weights so large "
                    "that activations overflow (a diverged, damaged or untrained checkpoint); "
                    "re-export from good weights"
                )
            raise NonFiniteError(
                f"the network's activations became non-finite: {bad} NaN/Inf output values "
                f"from a finite input; {cause}; nothing written"
            )
        return out

    return infer
