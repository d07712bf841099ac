"""The demo pipeline behind ``saphnet demo``: every step timed, every result compared.

Steps: load the network (shipped weights; before they exist, a random network of the
shipped checkpoint's size, with a warning), export it with the custom PDF op, compare
ONNX Runtime with the PyTorch FP32 reference (Polygraphy, :mod:`.compare`), deblur the
sample with ONNX Runtime, and with TensorRT present build FP32 and FP16 engines and
compare them too. Results are data (:class:`DemoResult`); the report files are
rendered from it.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import SaphnetError
from ..files import atomic_output, check_writable
from ..images import read_image, to_float, write_image

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "saphnet" / "assets"
SAMPLE_BLUR = ASSETS / "sample_blur.png"
SAMPLE_SHARP = ASSETS / "sample_sharp.png"
ONNX_NAME = "saphnet.onnx"
IMAGE_NAME = "deblurred.png"
REPORTS = ("report.md", "report.json")


@dataclass
class DemoResult:
    """What the demo did and measured; ``parity`` rows are compare.ModelReport dicts."""

    weights: str
    config: dict[str, object]
    image: str
    steps: dict[str, float] = field(default_factory=dict)
    """Wall time of each step in seconds."""
    parity: list[dict[str, object]] = field(default_factory=list)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    """PSNR/SSIM against the sharp sample, of the input and of each output."""
    tensorrt: str = "not installed"
    files: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(p["passed"] for p in self.parity)

    def summary(self) -> str:
        lines = [f"saphnet demo ({self.weights}) on {self.image}"]
        for p in self.parity:
            w = p["worst"]
            lines.append(
                f"  {p['backend']:<24} max abs {w['max_abs']:.2e}  PSNR {w['psnr']:.1f} dB  "
                f"SSIM {w['ssim']:.5f}  {'pass' if p['passed'] else 'FAIL'}"
            )
        for name, q in self.quality.items():
            lines.append(f"  vs sharp: {name:<16} PSNR {q['psnr']:.2f} dB  SSIM {q['ssim']:.4f}")
        lines.append(f"  TensorRT: {self.tensorrt}")
        lines.append(f"  total {sum(self.steps.values()):.1f} s; wrote {', '.join(self.files)}")
        return "\n".join(lines)


def _load_network(weights: Path | None) -> tuple[object, str, str | None]:
    """The network, a label for the report and the weights' SHA-256 (None: random)."""
    import torch

    from ..files import sha256_file
    from ..model import SAPHNet
    from ..weights import default_weights

    path = weights or default_weights()
    if path is not None:
        return SAPHNet.load(path), str(path.name), sha256_file(path)
    from ..train.presets import SMALL_CONFIG

    log.warning(
        "no trained weights shipped yet: the demo runs a random network of the shipped size "
        "(the pipeline and parity are real, the image is not deblurred)"
    )
    torch.manual_seed(0)
    return SAPHNet(SMALL_CONFIG).eval(), "random-init (no checkpoint shipped)", None


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "saphnet": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def quality(sharp: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of an (H, W, 3) uint8 image against the sharp one."""
    from skimage.metrics import structural_similarity

    a, b = sharp.astype(np.float64) / 255.0, image.astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    return {
        "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
        "ssim": float(structural_similarity(a, b, data_range=1.0, channel_axis=2)),
    }


def _engine_report(
    reference: np.ndarray,
    output: np.ndarray,
    engine: Path,
    precision: str,
    trt_version: str,
    pdf_layers: str | None,
):
    """A compare.ModelReport for a TensorRT output, judged by the same thresholds; its
    providers name the TensorRT and what ran the PDF layers (from the sidecar)."""
    from .compare import DEFAULT_THRESHOLDS, ImageResult, ModelReport, ssim

    limit = DEFAULT_THRESHOLDS[precision]
    diff = np.abs(output.astype(np.float64) - reference)
    nonfinite = int(np.count_nonzero(~np.isfinite(output)))
    mse = float(np.mean(diff**2))
    metrics = {
        "max_abs": float(np.nanmax(diff)),
        "mean_abs": float(np.nanmean(diff)),
        "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
        "ssim": ssim(reference[0], output[0]),
    }
    failures = []
    if nonfinite:
        failures.append(f"{nonfinite} NaN/Inf")
    if not metrics["max_abs"] <= limit.max_abs:
        failures.append(f"max abs {metrics['max_abs']:.3g} > {limit.max_abs:g}")
    if not metrics["psnr"] >= limit.min_psnr:
        failures.append(f"PSNR {metrics['psnr']:.1f} < {limit.min_psnr:g} dB")
    if not metrics["ssim"] >= limit.min_ssim:
        failures.append(f"SSIM {metrics['ssim']:.4f} < {limit.min_ssim:g}")
    providers = [f"TensorRT {trt_version}", f"PDF layers: {pdf_layers or 'not recorded'}"]
    report = ModelReport(str(engine), "custom", precision, providers, limit)
    h, w = output.shape[2:]
    report.images.append(
        ImageResult(
            SAMPLE_BLUR.name, h, w, **metrics, nonfinite=nonfinite, failures=tuple(failures)
        )
    )
    return report


def _as_row(report, backend: str) -> dict[str, object]:
    return {"backend": backend, **asdict(report), "passed": report.passed, "worst": report.worst()}


def _tensorrt_available() -> str | None:
    """TensorRT's version when TensorRT, pycuda and a GPU are all usable, else None."""
    from .trt_env import TensorRTMissingError, import_cuda_memory, import_tensorrt

    try:
        trt = import_tensorrt()
        import_cuda_memory().gpu_info()
    except TensorRTMissingError as exc:
        log.info("TensorRT part skipped: %s", exc)
        return None
    return trt.__version__


class _Timer:
    def __init__(self, steps: dict[str, float], name: str) -> None:
        self.steps, self.name = steps, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        log.info("demo: %s", self.name)

    def __exit__(self, *exc: object) -> None:
        self.steps[self.name] = round(time.perf_counter() - self.start, 2)


def run_demo(folder: Path, weights: Path | None = None, force: bool = False) -> DemoResult:
    """Run the demo into ``folder`` and return what it measured."""
    from ..export import export_onnx
    from .api import deblur
    from .compare import compare_models
    from .onnxruntime_backend import OnnxRuntimeBackend

    if not SAMPLE_BLUR.is_file():
        raise SaphnetError(f"the bundled sample {SAMPLE_BLUR} is missing; reinstall saphnet")
    trt_version = _tensorrt_available()
    names = [ONNX_NAME, IMAGE_NAME, *REPORTS]
    if trt_version:
        names += ["saphnet-fp32.engine", "saphnet-fp16.engine"]
        if int(trt_version.split(".")[0]) >= 11:  # FP16 comes from an FP16 export there
            names.append("saphnet-fp16.onnx")
    for name in names:  # fail before any work, not after a minute of it
        check_writable(folder / name, force)
        if name.endswith(".engine"):
            check_writable(folder / (name + ".json"), force)

    steps: dict[str, float] = {}
    with _Timer(steps, "load network"):
        model, label, weights_tag = _load_network(weights)
    image = read_image(SAMPLE_BLUR)
    result = DemoResult(
        label,
        json.loads(model.config.to_json()),
        f"{SAMPLE_BLUR.name} {image.rgb.shape[1]}x{image.rgb.shape[0]}",
    )
    result.environment = _versions()
    onnx_path = folder / ONNX_NAME
    with _Timer(steps, "export ONNX (custom op)"):
        export_onnx(
            model,
            onnx_path,
            pdf_op="custom",
            precision="fp32",
            force=force,
            weights_sha256=weights_tag,
        )
    batch = to_float(image.rgb)
    with _Timer(steps, "compare ONNX Runtime vs PyTorch"):
        (onnx_report,) = compare_models(model, [onnx_path], [(SAMPLE_BLUR.name, batch[0])])
    result.parity.append(_as_row(onnx_report, "onnxruntime " + "+".join(onnx_report.providers[:1])))
    with _Timer(steps, "deblur with ONNX Runtime"):
        ort = OnnxRuntimeBackend(onnx_path)
        deblurred = deblur(ort, image.rgb, tile=None)
        ort.close()
    outputs = {"onnxruntime": deblurred}
    if trt_version:
        result.tensorrt = trt_version
        outputs.update(
            _tensorrt_steps(
                model, folder, onnx_path, image.rgb, batch, force, steps, result, weights_tag
            )
        )
    else:
        result.tensorrt = (
            "not available here (pip install 'saphnet[tensorrt]' on an NVIDIA GPU machine)"
        )
    if SAMPLE_SHARP.is_file():
        sharp = read_image(SAMPLE_SHARP).rgb
        if sharp.shape == image.rgb.shape:
            result.quality["blurred input"] = quality(sharp, image.rgb)
            for name, out in outputs.items():
                result.quality[name] = quality(sharp, out)
    final = outputs.get("tensorrt-fp16", deblurred)
    write_image(folder / IMAGE_NAME, image.with_rgb(final), force=force)
    result.steps = steps
    result.files = names
    _write_reports(folder, result, force)
    return result


def _tensorrt_steps(
    model, folder, onnx_path, rgb, batch, force, steps, result, weights_tag
) -> dict[str, np.ndarray]:
    """Build FP32 and FP16 engines, run and compare them; the deblurred images."""
    from ..export import export_onnx
    from ..images import from_float
    from .engine_build import BuildOptions, build_engine
    from .sidecar import read_sidecar
    from .tensorrt_backend import TensorRTBackend
    from .tiling import run_padded
    from .torch_backend import TorchBackend
    from .trt_env import has_fp16_flag, import_tensorrt

    trt = import_tensorrt()
    h, w = rgb.shape[:2]
    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
    shapes = f"1x3x{ph}x{pw}:1x3x{ph}x{pw}:1x3x{ph}x{pw}"
    reference = TorchBackend(model=model, device="cpu").infer(batch).astype(np.float64)
    fp16_onnx = onnx_path
    if not has_fp16_flag(trt):  # TensorRT 11: FP16 comes from an FP16 ONNX file
        fp16_onnx = folder / "saphnet-fp16.onnx"
        with _Timer(steps, "export ONNX FP16"):
            export_onnx(
                model,
                fp16_onnx,
                pdf_op="custom",
                precision="fp16",
                force=force,
                weights_sha256=weights_tag,
            )
    outputs = {}
    for precision, source in (("fp32", onnx_path), ("fp16", fp16_onnx)):
        engine = folder / f"saphnet-{precision}.engine"
        with _Timer(steps, f"build TensorRT {precision}"):
            build_engine(
                source, engine, BuildOptions(precision=precision, shapes=shapes, force=force)
            )
        with _Timer(steps, f"run TensorRT {precision}"):
            backend = TensorRTBackend(engine)
            out = run_padded(backend.infer, batch)
            backend.close()
        outputs[f"tensorrt-{precision}"] = from_float(out, rgb.dtype)
        result.parity.append(
            _as_row(
                _engine_report(
                    reference,
                    out,
                    engine,
                    precision,
                    trt.__version__,
                    read_sidecar(engine).pdf_implementation,
                ),
                f"tensorrt {precision}",
            )
        )
    return outputs


def to_markdown(result: DemoResult) -> str:
    lines = [
        "# saphnet demo",
        "",
        f"Network: {result.weights}. Image: {result.image}. TensorRT: {result.tensorrt}.",
        "",
    ]
    lines += [
        "## Parity with the PyTorch FP32 reference",
        "",
        "| backend | max abs | mean abs | PSNR dB | SSIM | NaN/Inf | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result.parity:
        wst = p["worst"]
        verdict = (
            "pass"
            if p["passed"]
            else "FAIL: " + "; ".join(f for i in p["images"] for f in i["failures"])
        )
        lines.append(
            f"| {p['backend']} | {wst['max_abs']:.2e} | {wst['mean_abs']:.2e} | {wst['psnr']:.1f} | "
            f"{wst['ssim']:.5f} | {wst['nonfinite']} | {verdict} |"
        )
    if result.quality:
        lines += [
            "",
            "## Against the sharp sample",
            "",
            "| image | PSNR dB | SSIM |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} |" for k, v in result.quality.items()]
    lines += ["", "## Wall time", "", "| step | s |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result.steps.items()]
    lines += [f"| **total** | **{sum(result.steps.values()):.1f}** |", ""]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in result.environment.items()), ""]
    return "\n".join(lines)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _write_reports(folder: Path, result: DemoResult, force: bool) -> None:
    data = {
        **asdict(result),
        "passed": result.passed,
        "total_seconds": round(sum(result.steps.values()), 2),
    }
    texts = {
        "report.md": to_markdown(result),
        "report.json": json.dumps(_json_safe(data), indent=2, allow_nan=False),
    }
    for name, text in texts.items():
        with atomic_output(folder / name, force=force) as tmp:
            tmp.write_text(text + "\n")
