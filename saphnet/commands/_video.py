"""The video half of ``saphnet deblur``: its options and its run.

``deblur.py`` adds these options to its parser and hands a run whose inputs are videos
to :func:`run_videos`; the work itself is :func:`saphnet.runtime.video.deblur_video`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from ..errors import SaphnetError, first_line
from ._args import int_at_least

log = logging.getLogger(__name__)

CODECS = ("auto", "libx264", "libvpx-vp9", "mpeg4")
CRF = 18
"""= saphnet.runtime.video.DEFAULT_CRF (a test checks), restated so that building the
parser imports no numpy and ``saphnet --help`` stays fast."""


def _crf(text: str) -> int:
    value = int_at_least(0)(text)
    if value > 63:
        raise argparse.ArgumentTypeError(f"{text} must be <= 63 (x264 takes 0-51, VP9 0-63)")
    return value


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options that only videos use."""
    g = p.add_argument_group(
        "video",
        "Inputs .mp4, .mkv, .mov, .avi, .webm, ... (anything PyAV reads) are deblurred "
        "frame by frame into -o FILE (one video) or -o FOLDER, keeping frame count, "
        "size, timestamps and audio (copied).",
    )
    g.add_argument(
        "--crf",
        type=_crf,
        default=CRF,
        metavar="Q",
        help="video quality, lower is better: x264/VP9 CRF; mpeg4 uses qscale ~Q/6 "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--video-codec",
        choices=CODECS,
        default="auto",
        help="encoder; auto: libx264 (VP9 for .webm), mpeg4 where PyAV lacks it "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--batch",
        type=int_at_least(1),
        default=4,
        metavar="N",
        help="frames per inference, as many as fit --memory-budget and the engine's "
        "profile; tiled frames go one by one (default: %(default)s)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted video run from OUT.partial/ without redoing "
        "finished frames (default: off)",
    )
    g.add_argument(
        "--allow-truncated",
        action="store_true",
        help="write a video that decodes fewer frames than its container declares (cut "
        "off or damaged), with a warning; without it such a video is an error "
        "(default: off)",
    )


def video_inputs(inputs: list[str]) -> bool:
    """True when every input is a video, False when none is; a mix is refused, since
    images and videos take different outputs."""
    from ..runtime.video import is_video

    kinds = {is_video(name) for name in inputs}
    if len(kinds) > 1:
        raise SaphnetError("give videos and images in separate runs (they take different -o)")
    return kinds == {True}


def _pairs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(video, output): ``out`` itself for one input when it has a video extension,
    else ``out/<input name>``."""
    from ..runtime.video import OUTPUT_FORMATS

    if out.suffix.lower() in OUTPUT_FORMATS and not out.is_dir():
        if len(inputs) > 1:
            raise SaphnetError(f"-o {out} names one file for {len(inputs)} videos; give a folder")
        return [(inputs[0], out)]
    if out.suffix and not out.is_dir():
        raise SaphnetError(
            f"-o {out}: videos are written as {', '.join(OUTPUT_FORMATS)}; "
            "give such a file or a folder"
        )
    names = [f.name for f in inputs]
    if len(set(names)) < len(names):
        raise SaphnetError("two input videos have the same name; give them separate runs")
    return [(f, out / f.name) for f in inputs]


def run_videos(args: argparse.Namespace) -> int:
    """Deblur each video; the exit status is the number that failed."""
    from ..runtime.api import deblur_batch, open_backend
    from ..runtime.video import EncodeOptions, check_video_job, deblur_video
    from .deblur import MAX_EXIT, expand_inputs

    files, problems = expand_inputs(args.inputs)
    if problems:
        raise SaphnetError(problems[0])
    pairs = _pairs(files, args.output)
    options = EncodeOptions(crf=args.crf, codec=args.video_codec, batch=args.batch)
    for src, dst in pairs:  # bad inputs and outputs are reported before the model loads
        check_video_job(src, dst, options, args.resume, args.force)
    backend = open_backend(
        args.backend, args.model, args.weights, args.precision, args.device, args.plugins
    )

    def frame_fn(frames):
        return deblur_batch(backend, frames, args.tile, args.tile_overlap, args.memory_budget)

    fingerprint = {
        "backend": backend.name,
        "precision": backend.precision,
        "model": str(Path(args.model).resolve()) if args.model else None,
        "weights": str(Path(args.weights).resolve()) if args.weights else None,
        "tile": args.tile,
        "tile_overlap": args.tile_overlap,
        "memory_budget": args.memory_budget,  # it picks the tiles, so it shapes the frames
    }
    failures = 0
    # A scheduler's or `docker stop`'s SIGTERM ends the run like Ctrl-C: the open segment
    # is closed and recorded, so --resume loses nothing.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for src, dst in pairs:
            try:
                deblur_video(
                    src,
                    dst,
                    frame_fn,
                    options=options,
                    resume=args.resume,
                    force=args.force,
                    fingerprint=fingerprint,
                    allow_truncated=args.allow_truncated,
                )
            except SaphnetError as exc:
                failures += 1
                print(f"saphnet deblur: {exc}", file=sys.stderr)
            except (MemoryError, RuntimeError, ValueError) as exc:  # backend failures
                failures += 1
                log.debug("%s failed", src, exc_info=True)
                print(
                    f"saphnet deblur: {src}: {first_line(exc)}; finished frames are kept: fix it and "
                    "rerun with --resume (a smaller --tile if memory ran out)",
                    file=sys.stderr,
                )
    finally:
        signal.signal(signal.SIGTERM, previous)
        backend.close()
    return min(failures, MAX_EXIT)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
