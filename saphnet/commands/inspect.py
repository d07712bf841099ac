"""``saphnet inspect``: the paper's visual diagnostics as PNGs, plus the offset-direction check."""

from __future__ import annotations

import argparse
import logging

from ._args import float_at_least, int_at_least

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="attention maps, PDF offsets, kernel variance and fusion masks as PNGs",
        description="Deblur IMAGE and write, per level and content-aware module, PNGs of the "
        "spatial attention mask M1 and the first Q maps, the PDF sampling orientation "
        "(hue: direction, brightness: anisotropy), the kernel variance over taps and the "
        "fusion mask Mf. Then blur a sharp photo linearly at 0/45/90/135 degrees and "
        "print the dominant offset orientation per level.",
    )
    p.add_argument("image", help="image to deblur and inspect")
    p.add_argument("-o", "--out", required=True, help="folder for the PNGs")
    p.add_argument("--weights", help="SAPHNet .safetensors file (default: the shipped weights)")
    p.add_argument("--force", action="store_true", help="write into a folder that has files")
    p.add_argument(
        "--q-maps",
        type=int_at_least(0),
        default=3,
        help="how many Q attention maps to draw per module (default: %(default)s)",
    )
    p.add_argument(
        "--sharp",
        help="sharp photo for the direction check (default: the bundled sample_sharp.png)",
    )
    p.add_argument(
        "--length",
        type=float_at_least(1.0),
        default=15.0,
        help="direction check: linear blur length in pixels (default: %(default)s)",
    )
    p.add_argument("--no-direction-check", action="store_true", help="only write the PNGs")
    p.set_defaults(func=run)


def _write_png(path, array, force: bool) -> None:
    from PIL import Image

    from ..files import atomic_output

    with atomic_output(path, force=force) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from ..data.datasets import read_rgb
    from ..data.sample import SAMPLE_SHARP, to_uint8
    from ..errors import SaphnetError
    from ..files import atomic_output
    from ..model import SAPHNet
    from ..sizes import check_min_side
    from ..train.inspect import direction_check, direction_table, map_images, run_and_record
    from ..weights import default_weights

    weights = args.weights or default_weights()
    if weights is None:
        raise SaphnetError("no shipped weights in this install; pass --weights FILE")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SaphnetError(f"{out} is a file; give a folder for the PNGs")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise SaphnetError(f"{out} already holds files; pass --force to overwrite them")
    image = read_rgb(args.image)
    check_min_side(args.image, *image.shape[:2])  # before the folder is made
    out.mkdir(parents=True, exist_ok=True)
    model = SAPHNet.load(weights)
    output, records = run_and_record(model, image, args.q_maps)
    h, w = image.shape[:2]
    _write_png(out / "input.png", to_uint8(image), args.force)
    _write_png(out / "deblurred.png", to_uint8(output), args.force)
    written = 2
    for rec in records:
        for kind, png in map_images(rec).items():
            full = _upsample(png, h, w)
            _write_png(out / f"{rec.name}_{kind}.png", full, args.force)
            written += 1
    log.info("wrote %d PNGs to %s", written, out)
    if args.no_direction_check:
        return 0
    sharp = read_rgb(args.sharp or SAMPLE_SHARP)
    rows = direction_check(model, sharp, length=args.length)
    print(direction_table(rows))
    with atomic_output(out / "direction_check.json", force=args.force) as tmp:
        data = [{**asdict(r), "error": r.error} for r in rows]
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


def _upsample(png, h: int, w: int):
    """Feature maps (1/4 resolution of the padded input) -> the input's size."""
    import numpy as np

    factor = 4
    big = np.repeat(np.repeat(png, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(big[:h, :w])
