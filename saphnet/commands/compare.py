"""``saphnet compare``: PyTorch FP32 reference vs ONNX files on real images; exit 1 on a
broken threshold, so it can gate a release."""

from __future__ import annotations

import argparse
import logging

from ._args import float_at_least, int_at_least

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="accuracy of ONNX files against the PyTorch FP32 reference (exit 1 on failure)",
        description="Run each ONNX file and the PyTorch FP32 reference on real images and "
        "compare them (Polygraphy): max/mean abs error, PSNR, SSIM, NaN/Inf. Prints a table, "
        "optionally writes compare.json and compare.md, and exits 1 when a threshold is broken.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL.onnx", help="files made by saphnet export")
    p.add_argument("--weights", help="weights the files came from (default: the shipped weights)")
    p.add_argument(
        "--images",
        nargs="+",
        metavar="IMAGE",
        help="images to test on (default: the bundled blurred sample and scikit-image's "
        "astronaut, chelsea, coffee)",
    )
    p.add_argument(
        "--max-side",
        type=int_at_least(0),
        default=384,
        help="centre-crop images to at most this side, 0 for full size (default: %(default)s)",
    )
    p.add_argument(
        "--providers",
        choices=("cpu", "cuda", "tensorrt"),
        default="cpu",
        help="ONNX Runtime execution provider for the files (default: %(default)s)",
    )
    for option, default, what in (
        ("--max-abs", 1e-3, "FP32 files: max abs error"),
        ("--max-abs-fp16", 5e-2, "FP16 files: max abs error"),
        ("--min-psnr", 60.0, "FP32 files: min PSNR dB"),
        ("--min-psnr-fp16", 45.0, "FP16 files: min PSNR dB"),
        ("--min-ssim", 0.999, "FP32 files: min SSIM"),
        ("--min-ssim-fp16", 0.99, "FP16 files: min SSIM"),
        ("--max-abs-int8", 0.25, "INT8 files (saphnet quantize): max abs error"),
        ("--min-psnr-int8", 35.0, "INT8 files: min PSNR dB"),
        ("--min-ssim-int8", 0.98, "INT8 files: min SSIM"),
    ):
        p.add_argument(
            option, type=float_at_least(0), default=default, help=what + " (default: %(default)s)"
        )
    p.add_argument(
        "-o", "--output", help="folder for compare.json and compare.md (default: print only)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing reports")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.reference_weights import RANDOM_WEIGHTS, random_model, weights_tag
    from ..files import check_writable
    from ..model import SAPHNet
    from ..runtime.compare import (
        Thresholds,
        check_same_network,
        compare_models,
        default_images,
        load_image,
    )
    from ..runtime.compare_report import format_table, write_reports
    from ..weights import default_weights

    if args.output:
        for name in ("compare.json", "compare.md"):
            check_writable(f"{args.output}/{name}", args.force)
    weights = args.weights or default_weights()
    # the weights whole first: NaN or misshapen tensors are their problem, not the files'
    reference = random_model() if weights is None else SAPHNet.load(weights)
    tag = RANDOM_WEIGHTS if weights is None else weights_tag(weights)
    check_same_network(reference.config.to_json(), tag, args.models)
    if args.images:
        images = [(str(p), load_image(p, args.max_side)) for p in args.images]
    else:
        images = default_images(args.max_side)
    thresholds = {
        "fp32": Thresholds(args.max_abs, args.min_psnr, args.min_ssim),
        "fp16": Thresholds(args.max_abs_fp16, args.min_psnr_fp16, args.min_ssim_fp16),
        "int8": Thresholds(args.max_abs_int8, args.min_psnr_int8, args.min_ssim_int8),
    }
    reports = compare_models(reference, args.models, images, thresholds, args.providers)
    print(format_table(reports))
    if args.output:
        for path in write_reports(reports, args.output, args.force):
            log.info("wrote %s", path)
    failed = [r.path for r in reports if not r.passed]
    if failed:
        log.error("threshold broken by %s", ", ".join(failed))
        return 1
    return 0
