"""TensorRT engines of the shipped network, with our plugin and with TensorRT's own.

Builds FP32 and FP16 engines of the ``custom`` export (our ``saphnet::PDFConv`` plugin)
and of the ``deformconv`` export (TensorRT's built-in ModulatedDeformConv2d plugin)
through :func:`saphnet.runtime.engine_build.build_engine`, reads from each sidecar which
implementation its PDF layers got, checks parity on the bundled sample against the
PyTorch FP32 reference with ``saphnet compare``'s thresholds, and times both forms at
720x1280 side by side. Skips, saying why, without TensorRT, pycuda or a GPU.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from .report import FAILED, Stage, StageSkipped, speedups
from .shapes import SPEED_SIZE

log = logging.getLogger(__name__)


# What a sidecar's ``pdf_implementation`` must say for each ONNX form (the vocabulary of
# saphnet.runtime.sidecar.PDF_IMPLEMENTATIONS).
EXPECTED = {"custom": "plugin", "deformconv": "tensorrt-deformconv"}


def pdf_layers(sidecar: dict[str, object]) -> tuple[str | None, object, object]:
    """(implementation, PDF ops in the ONNX file, our plugin's layers in the engine) as
    the engine's sidecar records them; None where an older build did not record them."""
    return (
        sidecar.get("pdf_implementation"),  # type: ignore[return-value]
        sidecar.get("pdf_ops"),
        sidecar.get("pdf_plugin_layers"),
    )


def implementation_verdict(
    form: str, implementation: str | None, ops: object = None, plugin_layers: object = None
) -> str:
    """passed / FAILED / not recorded: a custom-form engine runs every PDF op as our
    plugin, a deformconv-form one as TensorRT's DeformConv plugin."""
    if implementation is None:
        return "not recorded"
    if implementation != EXPECTED[form]:
        return "FAILED"
    if form == "custom" and None not in (ops, plugin_layers) and ops != plugin_layers:
        return "FAILED"
    return "passed"


def _require_tensorrt():
    from ..runtime.trt_env import TensorRTMissingError, import_cuda_memory, import_tensorrt

    try:
        trt = import_tensorrt()
        import_cuda_memory().gpu_info()
    except TensorRTMissingError as exc:
        raise StageSkipped(str(exc)) from None
    return trt


def check(stage: Stage, engine_dir: Path | None, warmup: int, repeats: int, quick: bool) -> None:
    trt = _require_tensorrt()
    from .. import plugins

    if not plugins.has_tensorrt():
        raise StageSkipped(
            "the plugin library was built without TensorRT's headers; rebuild it with "
            "make plugins CMAKE_ARGS=-DTENSORRT_ROOT=<TensorRT>"
        )
    from ..runtime.compare import DEFAULT_THRESHOLDS

    stage.tolerances = {
        p: f"max abs <= {t.max_abs:g}, PSNR >= {t.min_psnr:g} dB, SSIM >= {t.min_ssim:g} on the "
        "bundled sample vs PyTorch FP32 (saphnet compare's thresholds)"
        for p, t in DEFAULT_THRESHOLDS.items()
    }
    stage.tolerances["plugin"] = "every PDF layer of a custom-form engine is our plugin (sidecar)"
    stage.info["tensorrt"] = trt.__version__
    if engine_dir is not None:
        engine_dir.mkdir(parents=True, exist_ok=True)
        _run(stage, trt, engine_dir, warmup, repeats, quick)
        return
    with tempfile.TemporaryDirectory(prefix="saphnet-engines-") as folder:
        _run(stage, trt, Path(folder), warmup, repeats, quick)


def _run(stage: Stage, trt, folder: Path, warmup: int, repeats: int, quick: bool) -> None:
    from ..export import export_onnx
    from ..images import read_image, to_float
    from ..runtime.bench import percentiles, time_backend
    from ..runtime.demo import SAMPLE_BLUR, _engine_report
    from ..runtime.engine_build import BuildOptions, build_engine
    from ..runtime.sidecar import sidecar_path
    from ..runtime.tensorrt_backend import TensorRTBackend
    from ..runtime.tiling import run_padded
    from ..runtime.torch_backend import TorchBackend, load_model
    from ..runtime.trt_env import has_fp16_flag

    model = load_model()
    sample = to_float(read_image(SAMPLE_BLUR).rgb)
    reference = TorchBackend(model=model, device="cpu").infer(sample).astype(np.float64)
    h, w = SPEED_SIZE
    shapes = f"1x3x64x64:1x3x{h}x{w}:1x3x{h}x{w}"
    speed_input = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    times: dict[str, float] = {}
    rows = []
    forms = ("custom",) if quick else ("custom", "deformconv")
    for form in forms:
        for precision in ("fp32", "fp16"):
            onnx_precision = "fp16" if precision == "fp16" and not has_fp16_flag(trt) else "fp32"
            onnx_path = folder / f"saphnet-{form}-{onnx_precision}.onnx"
            if not onnx_path.is_file():
                export_onnx(model, onnx_path, pdf_op=form, precision=onnx_precision, force=True)
            engine = folder / f"saphnet-{form}-{precision}.engine"
            build_engine(onnx_path, engine, BuildOptions(precision, shapes, force=True))
            implementation, ops, layers = pdf_layers(json.loads(sidecar_path(engine).read_text()))
            label = f"{form} {precision}"
            backend = TensorRTBackend(engine)
            try:
                out = run_padded(backend.infer, sample)
                ms = percentiles(time_backend(backend.infer, speed_input, warmup, repeats))[
                    "p50_ms"
                ]
            finally:
                backend.close()
            report = _engine_report(reference, out, engine, precision, trt.__version__)
            worst = report.worst()
            plugin_check = implementation_verdict(form, implementation, ops, layers)
            times[label] = ms
            rows.append(
                {
                    "group": f"TensorRT {h}x{w}",
                    "impl": label,
                    "PDF layers": f"{implementation} ({layers} of {ops} ops as our plugin)"
                    if implementation
                    else "not recorded by this engine build",
                    "plugin check": plugin_check,
                    "max_abs": worst["max_abs"],
                    "PSNR dB": worst["psnr"],
                    "SSIM": worst["ssim"],
                    "nonfinite": worst["nonfinite"],
                    "ms": ms,
                    "images/s": 1000.0 / ms,
                    "status": "passed" if report.passed and plugin_check != "FAILED" else "FAILED",
                }
            )
    for row in rows:
        precision = str(row["impl"]).split()[1]
        row["speedup"] = speedups(times, f"deformconv {precision}").get(str(row["impl"]))
    stage.rows += rows
    stage.info["timing"] = (
        f"p50 of {repeats} calls after {warmup} warm-up, host in and out (saphnet bench's "
        "measure); speedup = TensorRT's own DeformConv plugin ms / ms at the same precision"
    )
    failed = [str(r["impl"]) for r in rows if r["status"] == "FAILED"]
    if failed:
        stage.status = FAILED
        stage.reason = "failed: " + ", ".join(failed)
