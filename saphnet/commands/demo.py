"""``saphnet demo``: the whole pipeline on the bundled sample, with a report.

PyTorch reference -> ONNX export (custom op) -> ONNX Runtime, compared with the
reference by :mod:`saphnet.runtime.compare` (Polygraphy); where TensorRT and a GPU are
present, FP32 and FP16 engines are built, run and compared too. The deblurred image
and report.md / report.json land in the output folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="sample image -> export -> ONNX Runtime (-> TensorRT) -> compare, with a report",
        description="Run the whole pipeline on the bundled blurred sample and write the deblurred "
        "image and a report (markdown + JSON) into a folder.",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("demo-out"),
        metavar="DIR",
        help="default demo-out",
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="SAPHNet .safetensors (default: the shipped weights)",
    )
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier demo")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.demo import run_demo

    result = run_demo(args.output, args.weights, args.force)
    print(result.summary())
    return 0 if result.passed else 1
