"""``saphnet eval``: PSNR and SSIM over blurred/sharp pairs, per image and mean."""

from __future__ import annotations

import argparse
import logging

from ._args import int_at_least

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM of a network on paired images (GoPro layout) or the held-out set",
        description="Deblur every <seq>/blur/<f> under DIR and score it against <seq>/sharp/<f> "
        "(GoPro layout), or score the builtin held-out synthetic set (--heldout). Prints a "
        "table; --json also writes the numbers.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--data",
        help="GoPro-layout folder of blur/sharp pairs (default: none, give it or --heldout)",
    )
    src.add_argument(
        "--heldout",
        action="store_true",
        help="photos never trained on (scikit-image chelsea, coffee) with fixed synthetic blurs",
    )
    p.add_argument(
        "--count",
        type=int_at_least(1),
        default=16,
        help="--heldout: number of blurred images (default: %(default)s)",
    )
    p.add_argument("--weights", help="SAPHNet .safetensors file (default: the shipped weights)")
    p.add_argument(
        "--model",
        help=".onnx or .engine file to score instead of the weights (default: none, the weights)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "tensorrt"),
        help="runner (default: torch for weights, auto for --model)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="for weights run by torch (default: %(default)s)",
    )
    p.add_argument("--plugins", help="saphnet plugin library (default: the installed one)")
    p.add_argument(
        "--json", help="also write the scores as JSON to this file (default: print only)"
    )
    p.add_argument("--force", action="store_true", help="overwrite the JSON file")
    p.add_argument(
        "--limit", type=int_at_least(1), help="score only the first N pairs (default: all)"
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where torch and ONNX Runtime run (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.datasets import PairedFolderDataset, heldout_dataset
    from ..errors import SaphnetError
    from ..files import atomic_output, check_writable
    from ..runtime.api import deblur, open_backend
    from ..train.evaluate import evaluate
    from ..weights import default_weights

    weights = args.weights or (None if args.model else default_weights())
    if weights is None and not args.model:
        raise SaphnetError("no shipped weights in this install; pass --weights FILE")
    if args.json:
        check_writable(args.json, args.force)
    if args.heldout:
        data = heldout_dataset(crop=None, count=args.count)
        names = [f"heldout/{i:02d}" for i in range(len(data))]
    else:
        data = PairedFolderDataset(args.data, crop=None)
        names = [pair.name for pair in data.pairs]
    count = min(len(data), args.limit) if args.limit else len(data)
    kind = args.backend or ("auto" if args.model else "torch")
    backend = open_backend(kind, args.model, weights, args.precision, args.device, args.plugins)
    label = f"{args.model or weights} ({backend.name}, {backend.precision})"
    pairs = ((names[i], *data[i]) for i in range(count))
    try:
        report = evaluate(
            lambda blurred: deblur(backend, blurred),
            tqdm(pairs, total=count, desc="eval", unit="img"),
            label,
        )
    finally:
        backend.close()
    print(report.table())
    if args.json:
        with atomic_output(args.json, force=args.force) as tmp:
            tmp.write_text(report.to_json() + "\n", encoding="utf-8")
        log.info("wrote %s", args.json)
    return 0
