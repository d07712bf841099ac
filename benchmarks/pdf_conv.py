"""How much faster is our fused PDFConv kernel than im2col + GEMM?

Times one PDF convolution (C = 128, K = 5, the paper's 720p workload at feature
resolution: 1x128x180x320 and 1x128x360x640) with our CUDA kernels (fused tensor-core
implicit GEMM and the direct kernel), torchvision's ``deform_conv2d`` (im2col + GEMM, what
TensorRT's built-in ModulatedDeformConv2d plugin also does) and the pure-PyTorch reference,
in FP32 and FP16; then the whole SAPHNet at 720x1280 in FP16 with our kernel against
PyTorch eager FP32. Times are CUDA-event medians after warm-up; every ratio comes from the
same run. Writes ``pdf_conv.json`` and ``pdf_conv.md`` to ``--output-dir``.

    python benchmarks/pdf_conv.py -o benchmarks/results [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.files import atomic_output, check_writable
from saphnet.ops import pdf_conv_reference, register_backend

log = logging.getLogger("benchmarks.pdf_conv")

SHAPES = [(1, 128, 180, 320), (1, 128, 360, 640)]
KERNEL = 5
MODEL_SIZE = (720, 1280)

# Dense FP16 tensor-core peak (FP32 accumulation), TFLOP/s, from NVIDIA's data sheets;
# matched against torch.cuda.get_device_name() in order, first match wins.
FP16_TENSOR_PEAK = [
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("T4", 65.0),
]


def fp16_peak(device_name: str) -> float | None:
    """Dense FP16 tensor peak of the GPU, or None when it is not in the table."""
    for key, peak in FP16_TENSOR_PEAK:
        if key in device_name:
            return peak
    return None


def time_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``fn`` on the current stream, measured with CUDA events."""
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


def op_inputs(shape: tuple[int, int, int, int], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Inputs shaped like one SAPHNet PDF layer (offsets within ±3 px, sigmoid-like mask)."""
    n, c, h, w = shape
    g = torch.Generator(device="cuda").manual_seed(0)
    taps = KERNEL * KERNEL
    x = torch.randn(shape, device="cuda", generator=g).to(dtype)
    offset = (torch.rand((n, 2 * taps, h, w), device="cuda", generator=g) * 6 - 3).to(dtype)
    mask = torch.rand((n, taps, h, w), device="cuda", generator=g).to(dtype)
    weight = (
        torch.randn((c, c, KERNEL, KERNEL), device="cuda", generator=g) / (c * taps) ** 0.5
    ).to(dtype)
    bias = torch.randn(c, device="cuda", generator=g).to(dtype)
    return x, offset, mask, weight, bias


def implementations(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    pad: int,
    deform_conv2d: Callable[..., torch.Tensor] | None,
) -> dict[str, Callable[[], object]]:
    """The contenders on one set of inputs (the fused kernel takes float16 only)."""
    impls: dict[str, Callable[[], object]] = {
        "plugin-direct": lambda: plugins.cuda_forward(
            x, offset, mask, weight, bias, padding=pad, algo="direct"
        ),
        "reference": lambda: pdf_conv_reference(x, offset, mask, weight, bias, padding=pad),
    }
    if x.dtype == torch.float16:
        impls["plugin-fused"] = lambda: plugins.cuda_forward(
            x, offset, mask, weight, bias, padding=pad, algo="fused"
        )
    if deform_conv2d is not None:
        impls["torchvision"] = lambda: deform_conv2d(
            x, offset, weight, bias, padding=pad, mask=mask
        )
    return impls


def op_rows(warmup: int, repeats: int, peak: float | None) -> list[dict]:
    """One row per (shape, dtype, implementation)."""
    try:
        from torchvision.ops import deform_conv2d
    except ImportError:  # torchvision is optional
        deform_conv2d = None
        log.warning("torchvision not importable: its deform_conv2d is left out")
    pad = KERNEL // 2
    rows = []
    for shape in SHAPES:
        n, c, h, w = shape
        flop = 2.0 * n * c * h * w * c * KERNEL * KERNEL
        for dtype in (torch.float32, torch.float16):
            x, offset, mask, weight, bias = op_inputs(shape, dtype)
            impls = implementations(x, offset, mask, weight, bias, pad, deform_conv2d)
            times = {}
            with torch.no_grad():
                for name, fn in impls.items():
                    try:
                        times[name] = time_ms(fn, warmup, repeats)
                    except torch.cuda.OutOfMemoryError:
                        log.warning("%s out of memory at %s %s", name, shape, dtype)
                        torch.cuda.empty_cache()
            base = times.get("torchvision")
            for name, ms in times.items():
                tflops = flop / (ms * 1e-3) / 1e12
                rows.append(
                    {
                        "shape": list(shape),
                        "dtype": str(dtype).removeprefix("torch."),
                        "impl": name,
                        "ms": round(ms, 4),
                        "tflops": round(tflops, 2),
                        "percent_of_fp16_peak": None
                        if peak is None
                        else round(100 * tflops / peak, 1),
                        "speedup_vs_torchvision": None if base is None else round(base / ms, 2),
                    }
                )
                log.info("%s %s %-14s %8.3f ms %7.1f TFLOP/s", shape, dtype, name, ms, tflops)
            del x, offset, mask, weight, bias
            torch.cuda.empty_cache()
    return rows


@contextlib.contextmanager
def plugin_backend(enabled: bool) -> Iterator[None]:
    """Let ``pdf_conv(backend="auto")`` pick our kernel, or keep it out (PyTorch eager)."""
    accepts = plugins._torch_accepts if enabled else (lambda *_: False)
    register_backend("plugin", plugins.cuda_forward, accepts, priority=20)
    try:
        yield
    finally:
        plugins.register_torch_backend()


def model_rows(warmup: int, repeats: int) -> list[dict]:
    """SAPHNet (the paper's config) at 720x1280: FP16 with our kernel vs eager FP32."""
    from saphnet.model import SAPHNet, SAPHNetConfig

    torch.manual_seed(0)
    model = SAPHNet(SAPHNetConfig()).eval().cuda()
    image = torch.rand(1, 3, *MODEL_SIZE, device="cuda")
    rows = []
    with torch.no_grad():
        with plugin_backend(False):
            fp32_ms = time_ms(lambda: model(image), warmup, repeats)
        model_half = model.half()
        with plugin_backend(True):
            fp16_ms = time_ms(lambda: model_half(image.half()), warmup, repeats)
    for name, ms in (("pytorch-eager-fp32", fp32_ms), ("fp16-plugin", fp16_ms)):
        rows.append(
            {
                "size": list(MODEL_SIZE),
                "impl": name,
                "ms": round(ms, 3),
                "speedup_vs_fp32_eager": round(fp32_ms / ms, 2),
            }
        )
        log.info("model %s %-20s %9.2f ms", MODEL_SIZE, name, ms)
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"# PDFConv benchmark on {report['gpu']}",
        "",
        f"C = 128, K = 5, batch 1; CUDA-event median of {report['repeats']} runs after "
        f"{report['warmup']} warm-up runs; FP16 tensor peak {report['fp16_peak_tflops']} TFLOP/s.",
        "",
        "| shape | dtype | implementation | ms | TFLOP/s | % FP16 peak | x torchvision |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in report["op"]:
        shape = "x".join(str(v) for v in r["shape"])
        lines.append(
            f"| {shape} | {r['dtype']} | {r['impl']} | {r['ms']:.3f} | {r['tflops']:.1f} | "
            f"{r['percent_of_fp16_peak'] if r['percent_of_fp16_peak'] is not None else 'n/a'} | "
            f"{r['speedup_vs_torchvision'] if r['speedup_vs_torchvision'] is not None else 'n/a'} |"
        )
    if report["model"]:
        lines += [
            "",
            "| SAPHNet 720x1280 | ms | x eager FP32 |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {r['impl']} | {r['ms']:.2f} | {r['speedup_vs_fp32_eager']} |"
            for r in report["model"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-model", action="store_true", help="time the operator only")
    parser.add_argument("--force", action="store_true", help="overwrite existing results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if not torch.cuda.is_available():
        parser.exit(
            2, "pdf_conv.py: error: needs a CUDA GPU (torch.cuda.is_available() is False)\n"
        )
    try:
        if not plugins.has_cuda():
            parser.exit(2, "pdf_conv.py: error: libsaphnet_plugins.so has no CUDA kernels; "
                        "rebuild it with nvcc on PATH (make plugins)\n")  # fmt: skip
        json_path = check_writable(args.output_dir / "pdf_conv.json", args.force)
        md_path = check_writable(args.output_dir / "pdf_conv.md", args.force)
    except SaphnetError as exc:
        parser.exit(2, f"pdf_conv.py: error: {exc}\n")

    gpu = torch.cuda.get_device_name()
    peak = fp16_peak(gpu)
    if peak is None:
        log.warning("no FP16 tensor peak known for %s: percent of peak left out", gpu)
    report = {
        "gpu": gpu,
        "fp16_peak_tflops": peak,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "plugin_version": plugins.version(),
        "python": platform.python_version(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "op": op_rows(args.warmup, args.repeats, peak),
        "model": [] if args.skip_model else model_rows(args.warmup, args.repeats),
    }
    with atomic_output(json_path, force=args.force) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_output(md_path, force=args.force) as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
