"""``saphnet deblur``: deblur image files, folders and globs with any backend."""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from pathlib import Path

from ._args import int_at_least
from ._video import add_video_arguments, run_videos, video_inputs

log = logging.getLogger(__name__)

MAX_EXIT = 125
"""Exit statuses above 125 mean "killed by a signal" to shells."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deblur",
        help="deblur images (files, folders, globs) and videos",
        description="Deblur images. Outputs keep the input's name, bit depth, gray/colour and alpha; "
        "the exit status is the number of inputs that failed.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="output folder (or file, for one input)",
    )
    p.add_argument(
        "--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default="auto"
    )
    p.add_argument(
        "--model", type=Path, metavar="FILE", help=".onnx or .engine file (default: run --weights)"
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="SAPHNet .safetensors (default: the shipped weights)",
    )
    p.add_argument(
        "--precision", choices=("fp32", "fp16"), default="fp32", help="for torch and exports"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--plugins",
        type=Path,
        metavar="LIB",
        help="saphnet plugin library (default: the installed one)",
    )
    p.add_argument(
        "--tile",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="tile size in pixels, a multiple of 16 (0: only when needed)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int_at_least(0),
        default=64,
        metavar="N",
        help="overlap of neighbouring tiles (default 64)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=2.1,
        metavar="MP",
        help="largest untiled image (memory budget, default 2.1)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_video_arguments(p)
    p.set_defaults(func=run)


def expand_inputs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Files named by ``patterns`` (files, folders' images, globs), and one problem
    line per pattern that names nothing."""
    from ..images import EXTENSIONS

    files: list[Path] = []
    problems: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
            )
            if not found:
                problems.append(f"{path}: folder holds no images ({', '.join(EXTENSIONS)})")
            files += found
        elif path.exists() or not glob.has_magic(pattern):
            files.append(path)
        else:
            found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                problems.append(f"{pattern}: no file matches")
            files += found
    return files, problems


def output_paths(files: list[Path], out: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs: ``out`` itself for one input when it names an image
    file, else ``out/<input name>``; inputs whose names collide are problems."""
    from ..images import EXTENSIONS

    if len(files) == 1 and out.suffix.lower() in EXTENSIONS and not out.is_dir():
        return [(files[0], out)], []
    pairs, problems, seen = [], [], {}
    for f in files:
        target = out / f.name
        if target in seen:
            problems.append(f"{f}: same name as {seen[target]}; both would write {target}")
            continue
        seen[target] = f
        pairs.append((f, target))
    return pairs, problems


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import SaphnetError
    from ..files import check_writable
    from ..images import read_image, write_image
    from ..runtime.api import deblur, open_backend

    if video_inputs(args.inputs):
        return run_videos(args)
    files, problems = expand_inputs(args.inputs)
    pairs, collisions = output_paths(files, args.output)
    problems += collisions
    for line in problems:
        print(f"saphnet deblur: {line}", file=sys.stderr)
    if not pairs:
        return min(len(problems), MAX_EXIT) or 2
    backend = open_backend(
        args.backend, args.model, args.weights, args.precision, args.device, args.plugins
    )
    failures = len(problems)
    try:
        for src, dst in tqdm(pairs, unit="image", desc="deblur", disable=None):
            try:
                check_writable(dst, args.force)
                image = read_image(src)
                rgb = deblur(
                    backend,
                    image.rgb,
                    args.tile or 0,
                    args.tile_overlap,
                    int(args.max_megapixels * 1e6),
                )
                write_image(dst, image.with_rgb(rgb), force=args.force)
            except SaphnetError as exc:
                failures += 1
                tqdm.write(f"saphnet deblur: {exc}", file=sys.stderr)
            except (MemoryError, RuntimeError, ValueError) as exc:  # backend failures on one image
                failures += 1
                log.debug("%s failed", src, exc_info=True)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                tqdm.write(f"saphnet deblur: {src}: {first}; try a smaller --tile", file=sys.stderr)
    finally:
        backend.close()
    done = len(pairs) - (failures - len(problems))
    log.info("deblurred %d of %d images into %s", done, len(pairs) + len(problems), args.output)
    return min(failures, MAX_EXIT)
