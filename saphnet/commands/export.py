"""``saphnet export``: a SAPHNet weights file -> an ONNX file with the PDF op."""

from __future__ import annotations

import argparse
import logging

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
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
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


def run(args: argparse.Namespace) -> int:
    import onnx

    from ..export import export_onnx
    from ..export.op_forms import check_opset
    from ..export.reference_weights import random_model, weights_tag
    from ..files import check_writable
    from ..model import SAPHNet
    from ..weights import default_weights

    # the options and the output first: a bad --opset is named before the weights load
    check_opset(args.pdf_op, args.opset, onnx.defs.onnx_opset_version())
    check_writable(args.output, args.force)
    weights = args.weights or default_weights()
    if weights is None:
        log.warning("no weights given and none shipped: exporting a randomly initialised network")
        model = random_model()
    else:
        model = SAPHNet.load(weights)
    path = export_onnx(
        model,
        args.output,
        pdf_op=args.pdf_op,
        precision=args.precision,
        opset=args.opset,
        static_shape=args.static,
        force=args.force,
        weights_sha256=weights_tag(weights),
    )
    print(path)
    return 0
