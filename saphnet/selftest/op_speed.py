"""How fast is one PDF convolution: our kernels against im2col + GEMM and the reference.

Times our fused FP16 kernel and our direct kernel, torchvision's ``deform_conv2d``
(im2col + GEMM, what TensorRT's built-in ModulatedDeformConv2d plugin also does) and the
pure-PyTorch reference, in FP16 and FP32, side by side in one process. Times are
CUDA-event medians after warm-up; TFLOP/s count the op as the GEMM it is; every ratio
is between two times of the same run. ``benchmarks/pdf_conv.py`` is a CLI over this.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from collections.abc import Callable

from .report import speedups
from .shapes import OpShape

log = logging.getLogger(__name__)

# Dense FP16 tensor-core peak with FP32 accumulation, TFLOP/s, from NVIDIA's data sheets;
# matched against the device name in order, first match wins (so "H100 NVL" before "H100").
FP16_TENSOR_PEAK = [
    ("GH200", 989.4),
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 6000 Ada", 364.2),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
    ("T4", 65.0),
]


def fp16_peak(device_name: str) -> float | None:
    """Dense FP16 tensor peak of the GPU, or None when it is not in the table."""
    for key, peak in FP16_TENSOR_PEAK:
        if key in device_name:
            return peak
    return None


@contextlib.contextmanager
def no_tf32():
    """FP32 means FP32 here, as in our FP32 engines: cuDNN's convolutions would otherwise
    run in TF32 on Ampere and later."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def time_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``fn`` on the current stream, measured with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def op_inputs(shape: OpShape, dtype):
    """CUDA inputs shaped like one SAPHNet PDF layer (offsets within +-3 px, mask in [0, 1])."""
    import torch

    g = torch.Generator(device="cuda").manual_seed(0)
    kh, kw = shape.kernel
    ho, wo = shape.out_size
    taps = kh * kw
    n = shape.batch
    x = torch.randn(n, shape.c_in, shape.height, shape.width, device="cuda", generator=g)
    offset = torch.rand((n, 2 * taps, ho, wo), device="cuda", generator=g) * 6 - 3
    mask = torch.rand((n, taps, ho, wo), device="cuda", generator=g)
    weight = torch.randn((shape.c_out, shape.c_in, kh, kw), device="cuda", generator=g)
    weight = weight / (shape.c_in * taps) ** 0.5
    bias = torch.randn(shape.c_out, device="cuda", generator=g)
    return tuple(t.to(dtype) for t in (x, offset, mask, weight, bias))


def implementations(shape: OpShape, tensors, deform_conv2d) -> dict[str, Callable[[], object]]:
    """The contenders on one set of inputs (the fused kernel takes float16 only)."""
    import torch

    from .. import plugins
    from ..ops import pdf_conv_reference

    x, offset, mask, weight, bias = tensors
    geometry = {"stride": shape.stride, "padding": shape.pads, "dilation": shape.dilation}
    symmetric = {"stride": shape.stride, "padding": shape.pads[:2], "dilation": shape.dilation}
    impls: dict[str, Callable[[], object]] = {}
    if x.dtype == torch.float16:
        impls["ours fused"] = lambda: plugins.cuda_forward(*tensors, **geometry, algo="fused")
    impls["ours direct"] = lambda: plugins.cuda_forward(*tensors, **geometry, algo="direct")
    if deform_conv2d is not None:
        impls["torchvision"] = lambda: deform_conv2d(
            x, offset, weight, bias, mask=mask, **symmetric
        )
    impls["reference"] = lambda: pdf_conv_reference(*tensors, **symmetric)
    return impls


def torchvision_deform_conv():
    """torchvision's ``deform_conv2d``, or None (its rows are left out, and said so)."""
    try:
        from torchvision.ops import deform_conv2d
    except Exception:  # not installed, or built for another torch
        log.warning("torchvision not importable: its deform_conv2d is left out")
        return None
    return deform_conv2d


def measure(
    shapes: list[OpShape], warmup: int, repeats: int, peak: float | None, progress=None
) -> list[dict[str, object]]:
    """One row per (shape, dtype, implementation); the pads must be symmetric."""

    with no_tf32():
        return _measure(shapes, warmup, repeats, peak, progress)


def _measure(shapes, warmup, repeats, peak, progress) -> list[dict[str, object]]:
    import torch

    deform_conv2d = torchvision_deform_conv()
    rows = []
    for shape in shapes:
        for dtype in (torch.float16, torch.float32):
            name = str(dtype).removeprefix("torch.")
            tensors = op_inputs(shape, dtype)
            times: dict[str, float] = {}
            with torch.no_grad():
                for impl, fn in implementations(shape, tensors, deform_conv2d).items():
                    try:
                        times[impl] = time_ms(fn, warmup, repeats)
                    except torch.cuda.OutOfMemoryError:
                        log.warning("%s out of memory at %s %s", impl, shape.label, name)
                        torch.cuda.empty_cache()
            for impl, ratio in speedups(times, "torchvision").items():
                ms = times[impl]
                tflops = shape.flop / (ms * 1e-3) / 1e12
                rows.append(
                    {
                        "group": shape.label,
                        "impl": f"{impl} {name}",
                        "ms": ms,
                        "TFLOP/s": tflops,
                        "% FP16 peak": None if peak is None else 100 * tflops / peak,
                        "speedup": ratio,
                    }
                )
                log.info("%s %-22s %8.3f ms %7.1f TFLOP/s", shape.label, impl, ms, tflops)
            del tensors
            torch.cuda.empty_cache()
        if progress is not None:
            progress(1)
    return rows
