"""How much faster is our fused PDFConv kernel than im2col + GEMM?

Times one PDF convolution at the paper network's 720x1280 PDF layer shapes (C = 128,
K = 5, each patch level at its batch) with our CUDA kernels (fused tensor-core implicit
GEMM and the direct kernel), torchvision's ``deform_conv2d`` (im2col + GEMM, what
TensorRT's built-in ModulatedDeformConv2d plugin also does) and the pure-PyTorch
reference, in FP32 and FP16; then the whole SAPHNet at 720x1280 (eager FP32/FP16 with each
PDF implementation, CUDA graphs). The measuring code is ``saphnet selftest``'s
(:mod:`saphnet.selftest.op_speed`, :mod:`saphnet.selftest.network_speed`): CUDA-event
medians after warm-up, every ratio from the same run. Writes ``pdf_conv.json`` and
``pdf_conv.md`` to ``--output-dir``.

    python benchmarks/pdf_conv.py -o benchmarks/results [--force]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path

import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.files import atomic_output, check_writable
from saphnet.selftest import network_speed, op_speed, shapes
from saphnet.selftest.report import Stage, json_safe, table

log = logging.getLogger("benchmarks.pdf_conv")


def markdown(report: dict) -> str:
    lines = [
        f"# PDFConv benchmark on {report['gpu']}",
        "",
        f"CUDA-event median of {report['repeats']} runs after {report['warmup']} warm-up runs; "
        f"dense FP16 tensor peak {report['fp16_peak_tflops']} TFLOP/s; speedup = torchvision "
        "ms / ms at the same dtype (operator), eager FP32 reference ms / ms (network).",
        "",
        *table(report["op"]),
    ]
    if report["model"]:
        lines += ["", *table(report["model"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=Path("benchmarks/results"),
        help="folder for pdf_conv.json and pdf_conv.md (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs (default: %(default)s)")
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
    peak = op_speed.fp16_peak(gpu)
    if peak is None:
        log.warning("no FP16 tensor peak known for %s: percent of peak left out", gpu)
    grid = [s for s in shapes.model_shapes((shapes.SPEED_SIZE,)) if s.label.startswith("paper")]
    model_rows: list[dict] = []
    if not args.skip_model:
        stage = Stage("network", "network", True)
        network_speed.check(stage, args.warmup, args.repeats, quick=False)
        model_rows = stage.rows
    report = {
        "gpu": gpu,
        "fp16_peak_tflops": peak,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "plugin_version": plugins.version(),
        "python": platform.python_version(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "op": op_speed.measure(grid, args.warmup, args.repeats, peak),
        "model": model_rows,
    }
    with atomic_output(json_path, force=args.force) as tmp:
        tmp.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    with atomic_output(md_path, force=args.force) as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
