"""What does it cost the whole network when the PDFConv plugin takes FP16 offsets or masks?

A weakly typed TensorRT 10 ``--fp16`` build of the FP32 export may hand the plugin FP16
``offset`` and ``mask`` tensors (``supportsFormatCombination`` decides whether it can). This
runs the shipped SAPHNet on the CPU with every PDF convolution executed by the plugin's host
build (``pdfconv_forward_host``, the kernels' maths through the C API), feeding it each
combination of FP32 / FP16 for ``X, W, B``, ``offset`` and ``mask``; every other layer stays
FP32, so each row isolates the PDF layers' input precision. Every output is compared with the
PyTorch FP32 reference (max / mean abs error, PSNR over the [0, 1] image). Writes
``fp16_offsets.json`` and ``fp16_offsets.md`` to ``--output-dir``.

    python benchmarks/fp16_offsets.py -o benchmarks/results [--size 256] [--force]

Needs ``make plugins`` (the host build; no GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.files import atomic_output, check_writable
from saphnet.images import read_image, to_float
from saphnet.ops import forced_backend, register_backend
from saphnet.runtime.torch_backend import load_model
from saphnet.train.metrics import psnr

log = logging.getLogger("benchmarks.fp16_offsets")

SAMPLE = Path(__file__).resolve().parents[1] / "saphnet" / "assets" / "sample_blur.png"

# (row name, dtype of X / W / B, of offset, of mask) for the plugin's host build.
VARIANTS = [
    ("FP32 everywhere", np.float32, np.float32, np.float32),
    ("FP16 offset only", np.float32, np.float16, np.float32),
    ("FP16 mask only", np.float32, np.float32, np.float16),
    (
        "FP16 X/W/B, FP32 offset and mask (strongly typed FP16 export)",
        np.float16,
        np.float32,
        np.float32,
    ),
    (
        "FP16 X/W/B and mask, FP32 offset (offset restricted to FP32)",
        np.float16,
        np.float32,
        np.float16,
    ),
    (
        "FP16 X/W/B, offset and mask (weakly typed --fp16, unrestricted)",
        np.float16,
        np.float16,
        np.float16,
    ),
]


class HostPDF:
    """A ``saphnet.ops.pdf_conv`` backend that runs the host build at chosen dtypes and
    records the largest |offset| it saw."""

    def __init__(self) -> None:
        self.dtypes = (np.float32, np.float32, np.float32)
        self.max_offset = 0.0
        self.calls = 0

    def __call__(self, x, offset, mask, weight, bias, stride, padding, dilation) -> torch.Tensor:
        x_dt, off_dt, mask_dt = self.dtypes
        self.max_offset = max(self.max_offset, float(offset.detach().abs().max()))
        self.calls += 1
        y = plugins.host_forward(
            x.detach().numpy().astype(x_dt),
            offset.detach().numpy().astype(off_dt),
            mask.detach().numpy().astype(mask_dt),
            weight.detach().numpy().astype(x_dt),
            None if bias is None else bias.detach().numpy().astype(x_dt),
            stride,
            padding,
            dilation,
        )
        return torch.from_numpy(y.astype(np.float32))


def errors(reference: np.ndarray, output: np.ndarray) -> dict:
    diff = np.abs(output.astype(np.float64) - reference.astype(np.float64))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "psnr_db": psnr(np.clip(output, 0, 1), np.clip(reference, 0, 1)),
    }


def markdown(report: dict) -> str:
    lines = [
        "# FP16 offsets and masks in the PDFConv plugin: cost on the whole network",
        "",
        f"Shipped SAPHNet weights, `{report['image']}` cropped to {report['size']}x{report['size']}, "
        f"CPU ({report['machine']}); {report['pdf_layers']} PDF convolutions run by the plugin's "
        "host build (`pdfconv_forward_host`) at the dtypes of each row, every other layer FP32. "
        "Errors of the output image against the PyTorch FP32 reference (pixel range [0, 1]); "
        f"largest |offset| seen: {report['max_offset_px']:.2f} px.",
        "",
        "| PDF inputs | max abs | mean abs | PSNR (dB) |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['variant']} | {row['max_abs']:.2e} | {row['mean_abs']:.2e} | "
            f"{row['psnr_db']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=Path("benchmarks/results"),
        help="folder for fp16_offsets.json and fp16_offsets.md (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--size", type=int, default=256, help="square crop side (default: %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        plugins.load_library()
        json_path = check_writable(args.output_dir / "fp16_offsets.json", args.force)
        md_path = check_writable(args.output_dir / "fp16_offsets.md", args.force)
        image = to_float(read_image(SAMPLE).rgb)
    except SaphnetError as exc:
        parser.exit(2, f"fp16_offsets.py: error: {exc}\n")
    h, w = image.shape[2:]
    size = min(args.size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    x = torch.from_numpy(image[:, :, top : top + size, left : left + size].copy())

    torch.manual_seed(0)
    model = load_model()
    with torch.no_grad(), forced_backend("reference"):
        reference = model(x).numpy()
    host = HostPDF()
    register_backend("host-dtypes", host, lambda *_: True, priority=-1)
    rows = []
    for name, x_dt, off_dt, mask_dt in VARIANTS:
        host.dtypes = (x_dt, off_dt, mask_dt)
        host.calls = 0
        start = time.perf_counter()
        with torch.no_grad(), forced_backend("host-dtypes"):
            output = model(x).numpy()
        row = {"variant": name, **errors(reference, output)}
        log.info("%-66s PSNR %.1f dB (%.0f s)", name, row["psnr_db"], time.perf_counter() - start)
        rows.append(row)
    report = {
        "image": SAMPLE.name,
        "size": size,
        "pdf_layers": host.calls,
        "max_offset_px": host.max_offset,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "plugin_version": plugins.version(),
        "rows": rows,
    }
    with atomic_output(json_path, force=args.force) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_output(md_path, force=args.force) as tmp:
        tmp.write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
