"""``saphnet deblur``: deblur image files, folders and globs with any backend."""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from collections.abc import Collection
from pathlib import Path

from ..errors import SaphnetError, first_line
from ._args import MIN_TILE, add_memory_budget, int_at_least, tile_size
from ._video import add_video_arguments, run_videos, video_inputs

log = logging.getLogger(__name__)

MEMORY_BUDGET_MB = 1024
OVERLAP = 64
"""= saphnet.runtime.memory.DEFAULT_MEMORY_BUDGET_MB and runtime.tiling.DEFAULT_OVERLAP
(a test checks), restated so that building the parser imports no numpy."""

MAX_EXIT = 125
"""Exit statuses above 125 mean "killed by a signal" to shells."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deblur",
        help="deblur images (files, folders, globs) and videos",
        description="Deblur images. Outputs keep the input's name, bit depth, gray/colour and alpha; "
        "the exit status is the number of inputs that failed. Large images run in tiles chosen "
        "so the process stays within --memory-budget.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders or glob patterns, or videos",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="output folder, or a file name (image or video) when there is one input (required)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "tensorrt"),
        default="auto",
        help="inference backend; auto takes the fastest available (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help=".onnx or .engine file (default: none, run --weights)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="SAPHNet .safetensors (default: the shipped weights)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="precision of torch and of exports made from --weights (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where torch and ONNX Runtime run; auto: CUDA when available (default: %(default)s)",
    )
    p.add_argument(
        "--plugins",
        type=Path,
        metavar="LIB",
        help="saphnet plugin library (default: the installed one)",
    )
    p.add_argument(
        "--tile",
        type=tile_size,
        default=0,
        metavar="N",
        help=f"tile side in pixels, a multiple of 16 of at least {MIN_TILE}; 0 picks tiles "
        "from --memory-budget (default: %(default)s)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int_at_least(0),
        default=OVERLAP,
        metavar="N",
        help="overlap of neighbouring tiles in pixels, smaller than the tile (default: %(default)s)",
    )
    add_memory_budget(
        p, MEMORY_BUDGET_MB, "peak memory to stay under when picking tiles, estimated per backend"
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite existing outputs (default: never)"
    )
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


def output_paths(
    files: list[Path], out: Path, suffixes: Collection[str] | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs, and a problem line per input whose name collides.

    ``out`` is the output file when it ends in one of ``suffixes`` (default: the image
    extensions) and there is one input; an existing folder or a name without an
    extension is a folder that gets ``out/<input name>``. Raises a one-line
    SaphnetError for what cannot be meant: a file name for several inputs, or an
    extension that is not in ``suffixes`` (a folder named so must exist first).
    """
    from ..images import EXTENSIONS

    suffixes = EXTENSIONS if suffixes is None else suffixes
    suffix = out.suffix.lower()
    if suffix and not out.is_dir():
        if suffix not in suffixes:
            raise SaphnetError(
                f"-o {out}: {suffix!r} is not a known extension ({', '.join(suffixes)}); "
                "name a file with one of them, or a folder (create it first if its name has a dot)"
            )
        if len(files) > 1:
            raise SaphnetError(
                f"-o {out} names one file but {len(files)} inputs were given; "
                f"give a folder, e.g. -o {out.with_suffix('')}"
            )
        if files:
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


def check_options(args: argparse.Namespace) -> None:
    """What argparse cannot check one option at a time, before any model loads."""
    if args.tile and args.tile_overlap >= args.tile:
        raise SaphnetError(
            f"--tile-overlap {args.tile_overlap} must be smaller than --tile {args.tile}"
        )


class TileProgress:
    """A tile bar for one image on a terminal (tqdm stays quiet when piped), made on
    the first tile, when the count is known, and only for images of several tiles."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if total < 2:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit="tile", desc=self.name, leave=False, disable=None)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    check_options(args)
    if video_inputs(args.inputs):
        return run_videos(args)
    files, problems = expand_inputs(args.inputs)
    pairs, collisions = output_paths(files, args.output)
    problems += collisions
    for line in problems:
        print(f"saphnet deblur: {line}", file=sys.stderr)
    if not pairs:
        return min(len(problems), MAX_EXIT) or 2
    from ..runtime.api import open_backend

    backend = open_backend(
        args.backend, args.model, args.weights, args.precision, args.device, args.plugins
    )
    try:
        failures = deblur_files(backend, pairs, args) + len(problems)
    finally:
        backend.close()
    done = len(pairs) + len(problems) - failures
    log.info("deblurred %d of %d images into %s", done, len(pairs) + len(problems), args.output)
    return min(failures, MAX_EXIT)


def deblur_files(backend, pairs: list[tuple[Path, Path]], args: argparse.Namespace) -> int:
    """Deblur each (input, output) pair with a file bar and, per image, a tile bar;
    one line per failed image, the batch goes on. Returns the number of failures."""
    from tqdm import tqdm

    from ..files import check_writable
    from ..images import read_image, write_image
    from ..runtime.api import NonFiniteError, deblur

    failures = 0
    for src, dst in tqdm(pairs, unit="image", desc="deblur", disable=None):
        tiles = TileProgress(src.name)
        try:
            check_writable(dst, args.force, create=False)  # write_image makes it
            image = read_image(src)
            rgb = deblur(
                backend, image.rgb, args.tile, args.tile_overlap, args.memory_budget, tiles
            )
            write_image(dst, image.with_rgb(rgb), force=args.force)
        except NonFiniteError as exc:
            failures += 1
            tqdm.write(f"saphnet deblur: {src}: {exc}", file=sys.stderr)
        except SaphnetError as exc:
            failures += 1
            tqdm.write(f"saphnet deblur: {exc}", file=sys.stderr)
        except (MemoryError, RuntimeError, ValueError) as exc:  # backend failures on one image
            failures += 1
            log.debug("%s failed", src, exc_info=True)
            tqdm.write(
                f"saphnet deblur: {src}: {first_line(exc)}; try a smaller --memory-budget or --tile",
                file=sys.stderr,
            )
        finally:
            tiles.close()
    return failures
