"""``saphnet export``: a SAPHNet weights file -> an ONNX file with the PDF op."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ._args import int_at_least, parse_size

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export SAPHNet to ONNX (saphnet::PDFConv custom op, DeformConv or decomposed)",
        description="Export SAPHNet weights to one ONNX file (dynamic batch, H and W) that "
        "passes onnx.checker and carries its config, weights checksum, op form and precision "
        "in its metadata. FP16 files are strongly typed with FP32 islands.",
    )
    p.add_argument("--weights", help="SAPHNet .safetensors file (default: the shipped weights)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the .onnx file to write, or a folder (a trailing / or an existing folder) "
        "to write saphnet_<pdf-op>_<precision>[_<HxW>].onnx into",
    )
    p.add_argument(
        "--pdf-op",
        choices=("custom", "deformconv", "decomposed"),
        default="custom",
        help="PDF op form: custom saphnet::PDFConv node + function (default), ONNX "
        "DeformConv (opset >= 19), or GridSample + 1x1 Conv",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="weights precision in the file (default: %(default)s)",
    )
    p.add_argument(
        "--opset",
        type=int_at_least(18),
        default=19,
        help="ONNX opset, 18 or newer; 19 or newer for deformconv (default: %(default)s)",
    )
    p.add_argument(
        "--static",
        type=parse_size,
        metavar="HxW",
        help="fix the image size (default: dynamic H and W; the batch is always dynamic)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def output_file(output: str, pdf_op: str, precision: str, static: tuple[int, int] | None) -> Path:
    """The file ``-o`` names: inside it when it is a folder (a trailing slash, as in
    ``-o out/``, or an existing folder), named for what the file holds; else ``-o``
    itself, which must end in .onnx (every other command tells a model by its suffix)."""
    from ..errors import SaphnetError
    from ..runtime.artefacts import ONNX_SUFFIXES

    path = Path(output)
    if output.endswith(("/", os.sep)) or path.is_dir():
        shape = f"_{static[0]}x{static[1]}" if static else ""
        return path / f"saphnet_{pdf_op}_{precision}{shape}.onnx"
    if path.suffix.lower() not in ONNX_SUFFIXES:
        raise SaphnetError(
            f"-o {output}: an ONNX file's name ends in .onnx (the other commands tell a model "
            f"by it); give {path.with_suffix('.onnx')}, or {output}/ for a folder"
        )
    return path


def run(args: argparse.Namespace) -> int:
    import onnx

    from ..export import export_onnx
    from ..export.op_forms import check_opset
    from ..export.reference_weights import random_model, weights_tag
    from ..files import check_writable
    from ..model import SAPHNet
    from ..sizes import check_static_shape
    from ..weights import default_weights

    # the options and the output first: a bad --opset is named before the weights load
    check_opset(args.pdf_op, args.opset, onnx.defs.onnx_opset_version())
    if args.static is not None:
        check_static_shape(*args.static)
    output = output_file(args.output, args.pdf_op, args.precision, args.static)
    check_writable(output, args.force)
    weights = args.weights or default_weights()
    if weights is None:
        log.warning("no weights given and none shipped: exporting a randomly initialised network")
        model = random_model()
    else:
        model = SAPHNet.load(weights)
    path = export_onnx(
        model,
        output,
        pdf_op=args.pdf_op,
        precision=args.precision,
        opset=args.opset,
        static_shape=args.static,
        force=args.force,
        weights_sha256=weights_tag(weights),
    )
    print(path)
    return 0
