"""``saphnet quantize``: an FP32 ONNX file -> INT8 with explicit Q/DQ, calibrated on your images."""

from __future__ import annotations

import argparse
import logging

from ._args import float_at_least, int_at_least

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8 ONNX file with Q/DQ nodes (TensorRT or ONNX Runtime CPU), calibrated on images",
        description="Quantize an FP32 export to INT8 by explicit quantization (Q/DQ nodes in the "
        "file), calibrated on tiles of your own blurred images. The PDFConv nodes stay floating "
        "point. Layers that cost most accuracy are kept float until the file meets --min-psnr "
        "against FP32 on the calibration tiles. The result runs on deblur, compare, eval and "
        "bench (ONNX Runtime CPU) and builds with saphnet build --precision int8.",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an FP32 file made by saphnet export")
    p.add_argument("-o", "--output", required=True, help="the INT8 .onnx file to write")
    p.add_argument(
        "--calibration",
        metavar="DIR",
        help="folder of blurred images like those you will deblur (default: the shipped "
        "sample and the held-out photos, blurred)",
    )
    p.add_argument(
        "--images",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="at most this many calibration tiles (256x256, non-overlapping, round-robin over "
        "the images; default: 8; the default set holds 4)",
    )
    p.add_argument(
        "--target",
        choices=("tensorrt", "cpu"),
        default="tensorrt",
        help="tensorrt: symmetric INT8 on Conv/ConvTranspose/MatMul for saphnet build; cpu: "
        "U8S8 on Conv, fastest on ONNX Runtime CPU (default: %(default)s)",
    )
    p.add_argument(
        "--keep-fp",
        nargs="+",
        default=[],
        metavar="LAYER",
        help="layers never quantized: ONNX node names or module names, wildcards allowed "
        "(e.g. 'levels.0.decoder.*'; default: none, the sensitivity search picks)",
    )
    p.add_argument(
        "--min-psnr",
        type=float_at_least(0),
        default=None,
        metavar="DB",
        help="keep the costliest layers float until the file meets this PSNR against FP32 on "
        "the calibration tiles; 0 quantizes every layer (default: 40)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..export.calibration import (
        DEFAULT_IMAGES,
        calibration_tiles,
        default_calibration_images,
        folder_images,
    )
    from ..export.quantize import DEFAULT_MIN_PSNR, quantize_onnx
    from ..files import check_writable

    check_writable(args.output, args.force)
    images = folder_images(args.calibration) if args.calibration else default_calibration_images()
    tiles = calibration_tiles(images, args.images or DEFAULT_IMAGES)
    min_psnr = DEFAULT_MIN_PSNR if args.min_psnr is None else (args.min_psnr or None)
    bars: list[tqdm] = []

    def progress(stage: str, total: int):
        bars.append(tqdm(total=total, desc=stage, unit="tile" if stage == "calibrate" else "layer"))
        return lambda: bars[-1].update()

    try:
        report = quantize_onnx(
            args.model,
            args.output,
            tiles,
            target=args.target,
            keep_fp=args.keep_fp,
            min_psnr=min_psnr,
            calibration=args.calibration or "default",
            force=args.force,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    kept = f", {len(report.kept_float)} kept float" if report.kept_float else ""
    log.info(
        "%s: %d layers INT8 (%s)%s; %.1f dB, max abs %.3g against FP32 on %d tiles",
        args.output,
        report.quantized_layers,
        args.target,
        kept,
        report.psnr,
        report.max_abs,
        report.tiles,
    )
    print(args.output)
    return 0
