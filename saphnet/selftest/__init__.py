"""``saphnet selftest``: does this install work here, and how fast?

The stages run in order; each is passed, failed or skipped with its reason (no CUDA GPU,
no TensorRT, no compute-sanitizer, ...), so the same command answers on a CPU-only CI
machine, a Jetson or a datacentre GPU. Only correctness stages set the exit status.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .report import FAILED, Report, Stage, StageSkipped, run_stage

log = logging.getLogger(__name__)


# (name, title, correctness): the order they run in.
STAGES = (
    ("environment", "Environment", True),
    ("kernels-host", "Host build vs float64 reference (CPU)", True),
    ("onnxruntime", "ONNX Runtime vs PyTorch (CPU)", True),
    ("kernels-cuda", "CUDA kernels vs float64 reference", True),
    ("sanitizer", "compute-sanitizer", True),
    ("op-speed", "Operator speed", False),
    ("network", "Whole network at 720x1280", True),
    ("tensorrt", "TensorRT engines", True),
)
GPU_STAGES = ("kernels-cuda", "sanitizer", "op-speed", "network", "tensorrt")


@dataclass(frozen=True)
class Options:
    quick: bool = False
    engine_dir: Path | None = None
    build_dir: Path | None = None
    """Where a plugin library for this GPU is built when none holds its code."""

    @property
    def op_timing(self) -> tuple[int, int]:
        """(warm-up, timed runs) of one operator case."""
        return (3, 10) if self.quick else (5, 20)

    @property
    def net_timing(self) -> tuple[int, int]:
        return (2, 5) if self.quick else (3, 10)


def _cuda_reason() -> str | None:
    """Why the GPU stages cannot run here, or None when they can."""
    import torch

    from .. import plugins
    from ..errors import SaphnetError

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        if not plugins.has_cuda():
            return "the plugin library was built without nvcc (no CUDA kernels); run make plugins"
    except SaphnetError as exc:
        return f"no plugin library: {exc}"
    return None


def _environment(stage: Stage, options: Options, report: Report) -> None:
    from ..runtime.api import cache_dir
    from . import environment

    gpu = environment.gpu_info()
    stage.info.update(environment.versions())
    if gpu is not None:
        stage.info.update(gpu)
        report.header["device"] = gpu["gpu"]
    capability = None
    if gpu is not None:
        major, minor = str(gpu["compute capability"]).split(".")
        capability = (int(major), int(minor))
    stage.info.update(environment.plugin_library(capability, options.build_dir or cache_dir()))


def _host_kernels(stage: Stage, options: Options) -> None:
    from .. import plugins
    from ..errors import SaphnetError
    from . import kernel_check, shapes

    try:
        plugins.load_library()
    except SaphnetError as exc:
        raise StageSkipped(f"no plugin library: {exc}") from None
    kernel_check.check(stage, shapes.host_grid(), shapes.host_variants(), "cpu")


def _cuda_kernels(stage: Stage, options: Options) -> None:
    from . import kernel_check, shapes

    _need_cuda()
    kernel_check.check(stage, shapes.cuda_grid(options.quick), shapes.cuda_variants(), "cuda")


def _need_cuda() -> None:
    reason = _cuda_reason()
    if reason is not None:
        raise StageSkipped(reason)


def _sanitizer(stage: Stage, options: Options) -> None:
    from . import environment, sanitizer

    _need_cuda()
    tool = environment.cuda_tool("compute-sanitizer")
    if tool is None:
        raise StageSkipped("no compute-sanitizer (it comes with the CUDA toolkit)")
    stage.tolerances["errors"] = (
        "0 errors from each tool; the driver's results match the host build (FP32 <= 2e-5, "
        "FP16 <= 2^-8 of the output's scale)"
    )
    stage.rows = [sanitizer.run_tool(tool, name) for name in sanitizer.TOOLS]
    stage.status, stage.reason = sanitizer.combine(stage.rows)


def _op_speed(stage: Stage, options: Options) -> None:
    import torch

    from . import op_speed, shapes

    _need_cuda()
    name = torch.cuda.get_device_name()
    peak = op_speed.fp16_peak(name)
    stage.info["dense FP16 tensor peak TFLOP/s"] = peak if peak is not None else "unknown"
    warmup, repeats = options.op_timing
    stage.info["timing"] = (
        f"CUDA-event median of {repeats} runs after {warmup} warm-up runs; TFLOP/s = "
        "2 C_out C_in K^2 Ho Wo N / time; speedup = torchvision ms / ms at the same dtype; TF32 off"
    )
    grid = list(shapes.model_shapes((shapes.SPEED_SIZE,)))
    if options.quick:
        grid = [s for s in grid if s.label.startswith("paper")]
    stage.rows = op_speed.measure(grid, warmup, repeats, peak)


def _network(stage: Stage, options: Options) -> None:
    from . import network_speed

    _need_cuda()
    warmup, repeats = options.net_timing
    network_speed.check(stage, warmup, repeats, options.quick)


def _onnxruntime(stage: Stage, options: Options) -> None:
    from . import onnx_parity

    onnx_parity.check(stage, options.quick)


def _tensorrt(stage: Stage, options: Options) -> None:
    from . import tensorrt_stage

    _need_cuda()
    warmup, repeats = options.net_timing
    tensorrt_stage.check(stage, options.engine_dir, warmup, repeats, options.quick)


def run_selftest(options: Options, progress=None) -> Report:
    """Every stage in order; the report holds every figure and every skip's reason."""
    import platform

    report = Report(
        {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "mode": "quick" if options.quick else "full",
            "device": f"CPU only ({platform.machine()})",
        }
    )
    bodies = {
        "environment": lambda s: _environment(s, options, report),
        "kernels-host": lambda s: _host_kernels(s, options),
        "onnxruntime": lambda s: _onnxruntime(s, options),
        "kernels-cuda": lambda s: _cuda_kernels(s, options),
        "sanitizer": lambda s: _sanitizer(s, options),
        "op-speed": lambda s: _op_speed(s, options),
        "network": lambda s: _network(s, options),
        "tensorrt": lambda s: _tensorrt(s, options),
    }
    start = time.perf_counter()
    for name, title, correctness in STAGES:
        stage = Stage(name, title, correctness)
        report.stages.append(stage)
        if name in GPU_STAGES and report.stage("environment").status == FAILED:
            stage.reason = "the environment stage failed (see its reason)"
        else:
            run_stage(stage, bodies[name], log)
        if progress is not None:
            progress(1)
    report.header["seconds"] = round(time.perf_counter() - start, 1)
    report.header["result"] = "FAILED" if report.exit_status else "passed"
    return report
