"""Latency, throughput and peak memory per backend x precision x op form x size.

Each case opens its backend (exporting the ONNX file or building the engine it needs,
once, into a work folder), warms up, then times ``infer`` on one random image:
``infer`` returns host memory, so every timed call ends with the device work done
(GPU-synchronized, copies included: the latency an application sees). PyTorch eager
and ``torch.compile`` are the baselines. Peak memory is what the case added: host
peak RSS of a process that runs only that case on CPU (each case runs in a fresh
process), CUDA allocator peak for torch on GPU, activation + IO memory for TensorRT;
ONNX Runtime's CUDA memory has no API and is left out. Results are data; the report functions
render JSON, markdown and a PNG.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import first_line
from ..files import write_report_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    backend: str
    precision: str
    pdf_op: str
    """``-`` for PyTorch (one form: the model itself)."""
    height: int
    width: int
    device: str
    model: str | None = None
    """A given ONNX file (``bench --model``, e.g. a ``saphnet quantize`` output) run
    instead of an export made here."""

    @property
    def label(self) -> str:
        op = "" if self.pdf_op == "-" else f" {self.pdf_op}"
        given = f" ({Path(self.model).name})" if self.model else ""
        return f"{self.backend}{op} {self.precision} {self.device}{given}"


@dataclass
class Result:
    case: Case
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    throughput: float = math.nan
    """Images per second at batch 1 (1000 / mean latency)."""
    peak_mb: float | None = None
    memory: str = ""
    """What ``peak_mb`` measures."""
    iterations: int = 0
    error: str | None = None


@dataclass
class BenchReport:
    header: dict[str, str]
    results: list[Result] = field(default_factory=list)


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the current image;
    ``ru_maxrss`` would also count the parent's pages from before ``exec``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def header() -> dict[str, str]:
    """Device and versions, the context every number needs."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu
            )
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "saphnet": __version__,
        "python": platform.python_version(),
    }
    for module in ("torch", "onnxruntime", "tensorrt"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = "not installed"
    try:
        import torch

        info["torch threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def percentiles(
    times_ms: Sequence[float], points: Sequence[int] = (50, 90, 99)
) -> dict[str, float]:
    """``p{q}_ms`` for each of ``points``, ``mean_ms`` and ``throughput`` (calls per
    second one after another: 1000 / mean); benchmarks and load tests share it."""
    a = np.asarray(times_ms, np.float64)
    stats = {f"p{q}_ms": float(np.percentile(a, q)) for q in points}
    return {**stats, "mean_ms": float(a.mean()), "throughput": float(1000.0 / a.mean())}


def time_backend(
    infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray, warmup: int, iters: int
) -> list[float]:
    """Milliseconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        infer(x)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        infer(x)
        times.append((time.perf_counter() - start) * 1000)
    return times


class Artifacts:
    """Exports and engines made once per (op form, precision[, size]) in ``folder``."""

    def __init__(self, model, folder: Path, plugin_library: Path | None) -> None:
        self.model, self.folder, self.plugin_library = model, folder, plugin_library
        folder.mkdir(parents=True, exist_ok=True)

    def onnx(self, pdf_op: str, precision: str) -> Path:
        from ..export import export_onnx

        path = self.folder / f"saphnet-{pdf_op}-{precision}.onnx"
        if not path.is_file():
            export_onnx(self.model, path, pdf_op=pdf_op, precision=precision, force=True)
        return path

    def engine(self, pdf_op: str, precision: str, h: int, w: int) -> Path:
        from .engine_build import BuildOptions, build_engine
        from .trt_env import has_fp16_flag, import_tensorrt

        path = self.folder / f"saphnet-{pdf_op}-{precision}-{h}x{w}.engine"
        if not path.is_file():
            onnx_precision = (
                "fp16" if precision == "fp16" and not has_fp16_flag(import_tensorrt()) else "fp32"
            )
            ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
            shape = f"1x3x{ph}x{pw}"
            options = BuildOptions(
                precision,
                f"{shape}:{shape}:{shape}",
                self.folder / "timing.cache",
                self.plugin_library,
                force=True,
            )
            build_engine(self.onnx(pdf_op, onnx_precision), path, options)
        return path


def prepare(case: Case, artifacts: Artifacts) -> Path | None:
    """Export or build what the case runs (in this process, outside its measurement)."""
    if case.model is not None:
        return Path(case.model)
    if case.backend == "onnxruntime":
        return artifacts.onnx(case.pdf_op, case.precision)
    if case.backend == "tensorrt":
        return artifacts.engine(case.pdf_op, case.precision, case.height, case.width)
    return None


def _open(case: Case, artifact: Path | None, model, plugin_library: Path | None):
    """The backend of a case, and what its peak memory figure measures."""
    if case.backend.startswith("torch"):
        from .torch_backend import TorchBackend

        backend = TorchBackend(
            model=model,
            precision=case.precision,
            device=case.device,
            compile=case.backend == "torch-compile",
        )
        return backend, ("CUDA allocator peak" if case.device == "cuda" else "process peak RSS")
    if case.backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        providers = "cuda" if case.device == "cuda" else "cpu"
        return OnnxRuntimeBackend(artifact, providers=providers), (
            "not measured (CUDA)" if case.device == "cuda" else "process peak RSS"
        )
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(artifact, plugin_library), "TensorRT device memory"


def measure(
    case: Case, artifact: Path | None, model, plugin_library: Path | None, warmup: int, iters: int
) -> Result:
    """Time one case in this process; a failure is recorded in the result, not raised."""
    result = Result(case)
    x = np.random.default_rng(0).random(
        (1, 3, -(-case.height // 16) * 16, -(-case.width // 16) * 16), dtype=np.float32
    )
    cuda_torch = case.backend.startswith("torch") and case.device == "cuda"
    backend = None
    try:
        if cuda_torch:
            import torch

            torch.cuda.reset_peak_memory_stats()
        backend, result.memory = _open(case, artifact, model, plugin_library)
        times = time_backend(backend.infer, x, warmup, iters)
        for key, value in percentiles(times).items():
            setattr(result, key, value)
        result.iterations = iters
        if cuda_torch:
            result.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif case.backend == "tensorrt":
            result.peak_mb = backend.device_memory_bytes() / 2**20
        elif result.memory == "process peak RSS":
            result.peak_mb = peak_rss_mb()
    except Exception as exc:  # one broken case must not lose the others' numbers
        result.error = f"{type(exc).__name__}: {first_line(exc)}"[:200]
        log.warning("%s at %dx%d failed: %s", case.label, case.height, case.width, result.error)
    finally:
        if backend is not None:
            backend.close()
    return result


def _child(queue, *args) -> None:
    queue.put(measure(*args))


def run_isolated(
    case: Case, artifact: Path | None, model, plugin_library: Path | None, warmup: int, iters: int
) -> Result:
    """:func:`measure` in a fresh process, so its peak RSS is this backend's alone
    (an ONNX Runtime or TensorRT process never imports torch) and no thread pool or
    allocator cache of an earlier case is left over."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child_model = model if case.backend.startswith("torch") else None
    proc = ctx.Process(
        target=_child, args=(queue, case, artifact, child_model, plugin_library, warmup, iters)
    )
    proc.start()
    try:
        result = queue.get()
    except (EOFError, OSError) as exc:
        result = Result(case, error=f"benchmark process failed: {exc}")
    proc.join()
    if proc.exitcode not in (0, None) and result.error is None:
        result.error = f"benchmark process exited with {proc.exitcode}"
    return result


def to_markdown(report: BenchReport) -> str:
    lines = ["# saphnet bench", ""]
    lines += [f"- {k}: {v}" for k, v in report.header.items()]
    lines += ["", "Latency of one image, end to end (host in, host out, GPU-synchronized).", ""]
    lines += [
        "| size | backend | op | precision | device | p50 ms | p90 ms | p99 ms | img/s | peak MB | memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        c = r.case
        given = f" ({Path(c.model).name})" if c.model else ""
        head = f"| {c.height}x{c.width} | {c.backend}{given} | {c.pdf_op} | {c.precision} | {c.device} |"
        if r.error:
            lines.append(f"{head} failed: {r.error} | | | | | |")
            continue
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "-"
        lines.append(
            f"{head} {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} | {r.throughput:.2f} | {peak} | {r.memory} |"
        )
    return "\n".join(lines) + "\n"


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def to_json(report: BenchReport) -> str:
    data = {"header": report.header, "results": [asdict(r) for r in report.results]}
    return json.dumps(_json_safe(data), indent=2, allow_nan=False)


def reference_index(rows: Sequence[Result]) -> int:
    """The bar the others are compared with: PyTorch eager FP32 (the reference every
    backend is measured against), else the first row."""
    for i, r in enumerate(rows):
        if r.case.backend == "torch" and r.case.precision == "fp32":
            return i
    return 0


def figure(report: BenchReport):
    """One panel per size: p50 latency bars with p90 whiskers on a linear axis from
    zero, each bar labelled with its ratio to PyTorch FP32 (:func:`saphnet.plots.ratio_bars`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import ratio_bars

    sizes = sorted({(r.case.height, r.case.width) for r in report.results})
    fig, axes = plt.subplots(
        len(sizes), 1, figsize=(9, 1.2 + 0.45 * len(report.results)), squeeze=False
    )
    for ax, (h, w) in zip(axes[:, 0], sizes, strict=True):
        rows = [
            r for r in report.results if (r.case.height, r.case.width) == (h, w) and not r.error
        ]
        if not rows:
            ax.set_title(f"{h}x{w}: every case failed")
            continue
        ratio_bars(
            ax,
            [r.case.label for r in rows],
            [r.p50_ms for r in rows],
            "latency ms (p50, whisker p90); ratio to PyTorch FP32",
            reference_index(rows),
            "ms",
            [max(0.0, r.p90_ms - r.p50_ms) for r in rows],
        )
        ax.set_title(f"{h}x{w}")
    fig.suptitle(f"saphnet bench: {report.header.get('gpu', report.header['cpu'])}", fontsize=9)
    fig.tight_layout()
    return fig


def plot(report: BenchReport, path: Path) -> None:
    """:func:`figure` written as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def write_report(report: BenchReport, folder: Path, force: bool) -> list[Path]:
    """bench.json, bench.md and bench.png, each written atomically."""
    return write_report_files(
        folder, "bench", to_json(report), to_markdown(report), lambda p: plot(report, p), force
    )


def plan_cases(
    backends: Sequence[str],
    precisions: Sequence[str],
    pdf_ops: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    device: str,
) -> list[Case]:
    """Every combination that makes sense: PyTorch has one op form; FP16 needs CUDA
    for PyTorch; TensorRT runs on CUDA only."""
    cases = []
    for h, w in sizes:
        for backend in backends:
            for precision in precisions:
                if backend.startswith("torch"):
                    if precision == "fp16" and device != "cuda":
                        continue
                    cases.append(Case(backend, precision, "-", h, w, device))
                    continue
                if backend == "tensorrt" and device != "cuda":
                    continue
                cases += [Case(backend, precision, op, h, w, device) for op in pdf_ops]
    return cases


def model_cases(
    paths: Sequence[str | os.PathLike[str]], sizes: Sequence[tuple[int, int]], device: str
) -> list[Case]:
    """One ONNX Runtime case per given file and size, its precision and op form read
    from the file's metadata (a file not made by saphnet is a one-line error)."""
    from ..errors import SaphnetError
    from ..export.metadata import read_metadata

    cases = []
    for path in paths:
        if Path(path).suffix != ".onnx" or not Path(path).is_file():
            raise SaphnetError(f"bench --model takes existing .onnx files; {path} is not one")
        try:
            meta = read_metadata(path)
        except KeyError as exc:
            raise SaphnetError(
                f"{path} has no saphnet metadata ({exc.args[0]}); export it with saphnet export"
            ) from None
        cases += [
            Case("onnxruntime", meta.precision, meta.pdf_op, h, w, device, str(path))
            for h, w in sizes
        ]
    return cases


def run_bench(
    model,
    cases: Sequence[Case],
    folder: Path,
    warmup: int,
    iters: int,
    plugin_library: Path | None = None,
    progress=None,
) -> BenchReport:
    """Run ``cases`` (artifacts go to ``folder/artifacts``) and return the report."""
    artifacts = Artifacts(model, folder / "artifacts", plugin_library)
    report = BenchReport(header())
    report.header.update(
        {
            "warm-up": str(warmup),
            "iterations": str(iters),
            "network": json.dumps(json.loads(model.config.to_json())),
        }
    )
    for case in cases:
        log.info("bench: %s at %dx%d", case.label, case.height, case.width)
        try:
            artifact = prepare(case, artifacts)
        except Exception as exc:  # an export or build failure is that case's result
            report.results.append(
                Result(case, error=f"{type(exc).__name__}: {str(exc).strip()[:160]}")
            )
            continue
        report.results.append(run_isolated(case, artifact, model, plugin_library, warmup, iters))
        if progress is not None:
            progress()
    return report
