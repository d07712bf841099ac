"""Deblur a video frame by frame with PyAV, resumably, in bounded memory.

Frames are decoded one at a time and deblurred a few at a time by a callable (the CLI
passes :func:`saphnet.runtime.api.deblur_batch`: the backend and tiling of images, with frames batched
into one inference where they need no tiles and fit the memory budget); they go back
to the source's YUV layout, bit depth (8, or 10 for deeper sources) and colour tags
and are encoded with the source's own timestamps (pts and time base), so the frame
count, size, frame rate and a variable frame rate all survive. Memory does not grow
with the clip: one batch of frames and the encoder's look-ahead are alive at a time.

Resume: the encoded video goes into segment files (NUT, which keeps any time base
exactly) in ``OUT.partial/``, each a closed, independently decodable run of frames
starting at a keyframe. After each segment ``state.json`` (written atomically) lists
the finished segments; an exception or Ctrl-C closes the open segment first, so an
interrupted run loses nothing and a killed one at most the segment in progress.
``resume=True`` decodes the source again, skips the frames the segments hold and
goes on. At the end the segments' packets and the source's audio packets (copied,
never re-encoded) are interleaved by time into a temporary file that is renamed
over the output; the segments are then deleted.

Segments are joined by copying packets, so they must agree on codec parameters:
every segment is encoded with the same settings, without B-frames (so each
packet's dts equals its pts and timestamps stay monotonic across the joins), and
the join checks that their codec headers are identical.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import SaphnetError, first_line
from ..files import atomic_output, check_writable

log = logging.getLogger(__name__)

FrameFn = Callable[[np.ndarray], np.ndarray]
"""Deblurs (N, H, W, 3) RGB frames, uint8 (uint16 for 10-bit video), N at most
:attr:`EncodeOptions.batch`, into the same shape and dtype (the CLI's: :func:`saphnet.runtime.api.deblur_batch`)."""

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".mts", ".flv", ".wmv", ".3gp", ".ogv", ".mxf", ".nut", ".y4m",
)  # fmt: skip
"""Inputs treated as video: any of these that PyAV can read is accepted."""

OUTPUT_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".mp4": ("mp4", ("libx264", "mpeg4")),
    ".m4v": ("mp4", ("libx264", "mpeg4")),
    ".mov": ("mov", ("libx264", "mpeg4")),
    ".mkv": ("matroska", ("libx264", "libvpx-vp9", "mpeg4")),
    ".webm": ("webm", ("libvpx-vp9", "libvpx")),
}
"""Output extension -> (FFmpeg muxer, video encoders in order of preference). AVI is read
but not written: it has one fixed frame rate, so it cannot keep a source's timestamps."""

DEFAULT_CRF = 18
"""x264's "visually lossless" end: a deblurred video should not lose its new detail."""

STATE_VERSION = 1


def import_av() -> ModuleType:
    """PyAV, or one line saying how to install it."""
    try:
        import av
    except ImportError:
        raise SaphnetError(
            "video needs PyAV, which is not installed: pip install 'saphnet[video]'"
        ) from None
    return av


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (a file or a glob pattern) names a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def partial_dir(output: Path) -> Path:
    """Where an unfinished run of ``output`` keeps its segments and state."""
    return output.with_name(output.name + ".partial")


@dataclass(frozen=True)
class EncodeOptions:
    """How the deblurred video is encoded and how often a resumable segment closes."""

    crf: int = DEFAULT_CRF
    codec: str = "auto"
    batch: int = 1
    """Frames handed to the frame function at once."""
    segment_frames: int = 250
    """At most this many frames per segment (x264's default keyframe interval)."""
    segment_seconds: float = 60.0
    """...and at most this much work per segment, so a kill loses at most this."""


@dataclass
class VideoResult:
    """What a run did: frames in the output, frames deblurred now, frames resumed."""

    output: Path
    frames: int
    computed: int
    resumed: int
    codec: str
    audio_streams: int
    seconds: float = 0.0
    segments: list[str] = field(default_factory=list)


def _error(src: Path, exc: Exception, what: str) -> SaphnetError:
    return SaphnetError(f"{src}: {what}: {first_line(exc)}")


@dataclass
class _Source:
    """An opened input: its container, video stream and audio streams."""

    path: Path
    container: Any
    video: Any
    audio: list[Any]

    @property
    def time_base(self) -> Fraction:
        return self.video.time_base

    @property
    def rate(self) -> Fraction:
        return self.video.average_rate or self.video.guessed_rate or Fraction(25)

    def declared_frames(self) -> int | None:
        """Frames the stream header counts, else those its duration holds at its rate
        (Matroska declares no count), rounded down: what a complete file decodes at
        least. The container's duration counts only where the video is its one stream
        (audio may run longer than the video)."""
        if self.video.frames:
            return int(self.video.frames)
        if self.video.duration and self.video.time_base:
            return int(self.video.duration * self.video.time_base * self.rate)
        if self.container.duration and len(self.container.streams) == 1:
            return int(self.container.duration / 1e6 * float(self.rate))
        return None

    def close(self) -> None:
        self.container.close()


def open_source(path: str | os.PathLike[str]) -> _Source:
    """Open a video for decoding; one line when it is missing, unreadable or has no
    video stream."""
    av = import_av()
    src = Path(path)
    if not src.is_file():
        raise SaphnetError(f"{src}: no such file")
    try:
        container = av.open(str(src))
    except av.error.FFmpegError as exc:
        raise _error(src, exc, "not a readable video") from None
    if not container.streams.video:
        container.close()
        raise SaphnetError(f"{src}: holds no video stream; give a video file")
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    return _Source(src, container, video, list(container.streams.audio))


def _choose_codec(av: ModuleType, output: Path, requested: str) -> tuple[str, str]:
    """(muxer, encoder) for ``output``'s extension."""
    ext = output.suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise SaphnetError(
            f"{output}: cannot write video as {ext or 'a file without extension'}; "
            f"use one of {', '.join(OUTPUT_FORMATS)}"
        )
    muxer, preferred = OUTPUT_FORMATS[ext]
    if requested != "auto":
        if requested not in av.codecs_available:
            raise SaphnetError(f"video codec {requested} is not in this PyAV build; use auto")
        return muxer, requested
    for name in preferred:
        if name in av.codecs_available:
            return muxer, name
    raise SaphnetError(
        f"{output}: this PyAV build has none of {', '.join(preferred)}; choose another container"
    )


def _pix_fmt(av: ModuleType, codec: str, source_fmt: str, width: int, height: int) -> str:
    """The source's YUV layout (4:2:0, 4:2:2, 4:4:4) and, for sources deeper than 8 bits,
    10 bits, where the encoder takes them; else yuv420p. Odd sizes need 4:4:4."""
    formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    match = re.fullmatch(r"yuvj?(4[24][024])p(\d*)(le|be)?", source_fmt)
    layout = match.group(1) if match else "420"
    if width % 2 or height % 2:
        layout = "444"
    deep = bool(match and match.group(2) and int(match.group(2)) > 8)
    candidates = ([f"yuv{layout}p10le"] if deep else []) + [f"yuv{layout}p", "yuv420p"]
    for name in candidates:
        if not formats or name in formats:
            if deep and not name.endswith("10le"):
                log.warning("%s has no 10-bit %s; writing 8 bits", codec, layout)
            return name
    return formats[0]


def _bits(pix_fmt: str) -> int:
    return 16 if pix_fmt.endswith("10le") else 8


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    if codec == "libx264":
        return {"crf": str(crf), "bf": "0"}
    if codec.startswith("libvpx"):
        return {"crf": str(crf), "b": "0"}
    # mpeg4 and others without a CRF mode: a fixed quantiser of about crf / 6
    return {"flags": "+qscale", "global_quality": str(max(1, min(31, round(crf / 6))) * 118)}


@dataclass
class _Plan:
    """Everything a segment encoder and the final mux need to agree on."""

    muxer: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    """The source's average frame rate (what the output declares)."""
    crf: int
    colour: dict[str, int]
    """colorspace, color_range, color_primaries, color_trc of the source."""

    def settings(self) -> dict[str, object]:
        return {
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "size": [self.width, self.height],
            "time_base": str(self.time_base),
            "crf": self.crf,
            "colour": self.colour,
        }


def _plan(av: ModuleType, source: _Source, output: Path, options: EncodeOptions) -> _Plan:
    muxer, codec = _choose_codec(av, output, options.codec)
    if codec == "libx264" and options.crf > 51:
        raise SaphnetError(f"--crf {options.crf}: libx264 takes 0-51")
    cc = source.video.codec_context
    width, height = cc.width, cc.height
    if not width or not height:
        raise SaphnetError(f"{source.path}: video stream has no frame size; is the file complete?")
    colour = {
        "colorspace": int(cc.colorspace),
        "color_range": int(cc.color_range),
        "color_primaries": int(cc.color_primaries),
        "color_trc": int(cc.color_trc),
    }
    fmt = cc.format.name if cc.format is not None else "yuv420p"
    return _Plan(
        muxer,
        codec,
        _pix_fmt(av, codec, fmt, width, height),
        width,
        height,
        source.time_base,
        source.rate,
        options.crf,
        colour,
    )


def _check_container(av: ModuleType, source: _Source, plan: _Plan, output: Path) -> None:
    """Refuse before any work when the output container cannot hold the encoder's video
    or the source's audio."""
    probe = av.open(os.devnull, "w", format=plan.muxer)
    try:
        supported = probe.supported_codecs
    finally:
        probe.close()
    if av.codec.Codec(plan.codec, "w").canonical_name not in supported:
        raise SaphnetError(
            f"{output}: {output.suffix} cannot hold {plan.codec} video; "
            "use --video-codec auto or another container"
        )
    for stream in source.audio:
        name = stream.codec_context.name
        if name not in supported:
            raise SaphnetError(
                f"{source.path}: its {name} audio cannot be copied into {output.suffix}; "
                "write .mkv instead"
            )


# --- resumable state --------------------------------------------------------------


def _source_id(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    with atomic_output(folder / "state.json", force=True) as tmp:
        tmp.write_text(json.dumps(state, indent=1))


def _load_state(folder: Path, expected: dict[str, Any], output: Path) -> dict[str, Any]:
    """The state of an interrupted run, checked against this run's source and settings."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        raise SaphnetError(
            f"{folder} holds no readable state.json; pass --force without --resume to start over"
        ) from None
    for key in ("version", "source", "settings"):
        if state.get(key) != expected[key]:
            raise SaphnetError(
                f"{output}: the interrupted run used another {key} ({state.get(key)} vs "
                f"{expected[key]}); pass --force without --resume to start over"
            )
    for seg in state.get("segments", []):
        if not (folder / seg["file"]).is_file():
            raise SaphnetError(
                f"{folder}: segment {seg['file']} is missing; pass --force without --resume"
            )
    return state


# --- encoding ----------------------------------------------------------------------


class _Segment:
    """One NUT file of consecutive frames, encoded from a keyframe to a flushed end."""

    def __init__(self, av: ModuleType, path: Path, plan: _Plan) -> None:
        self.path = path
        self.frames = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.last_duration = 0
        self.container = av.open(str(path), "w", format="nut")
        stream = self.container.add_stream(
            plan.codec, rate=plan.rate, options=_encoder_options(plan.codec, plan.crf)
        )
        stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, plan.pix_fmt
        stream.time_base = plan.time_base
        cc = stream.codec_context
        cc.time_base = plan.time_base
        cc.max_b_frames = 0
        for name, value in plan.colour.items():
            setattr(cc, name, value)
        self.stream = stream

    def add(self, frame: Any, duration: int) -> None:
        """Encode ``frame``; ``duration`` (time-base units) is kept for the last frame only:
        NUT stores no durations, the join derives the others from the next frame's pts."""
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        if self.first_pts is None:
            self.first_pts = frame.pts
        self.last_pts, self.last_duration = frame.pts, duration

    def record(self) -> dict[str, object]:
        return {
            "file": self.path.name,
            "frames": self.frames,
            "first_pts": self.first_pts,
            "last_pts": self.last_pts,
            "last_duration": self.last_duration,
        }

    def close(self) -> None:
        """Flush the encoder and close the file: afterwards it is a complete video."""
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        finally:
            self.container.close()


def _rgb(frame: Any, plan: _Plan) -> np.ndarray:
    """A decoded frame as (H, W, 3) RGB, uint8 or (for 10-bit output) uint16, with the
    source's YUV matrix and range."""
    colour = plan.colour
    return frame.to_ndarray(
        format="rgb48le" if _bits(plan.pix_fmt) > 8 else "rgb24",
        src_colorspace=_matrix(colour["colorspace"]),
        src_color_range=colour["color_range"] or None,
    )


def _matrix(colorspace: int) -> int | None:
    """The swscale matrix for an AVColorSpace (None: swscale's default, BT.601)."""
    return {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}.get(colorspace)


def _to_frame(av: ModuleType, rgb: np.ndarray, plan: _Plan, pts: int) -> Any:
    rgb_format = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=rgb_format)
    frame = frame.reformat(
        format=plan.pix_fmt,
        dst_colorspace=_matrix(plan.colour["colorspace"]),
        dst_color_range=plan.colour["color_range"] or None,
    )
    frame.pts = pts
    frame.time_base = plan.time_base
    return frame


def _frames(source: _Source) -> Iterator[tuple[int, int, Any]]:
    """(pts, duration, frame) in presentation order with strictly increasing pts: a
    missing pts or one that does not increase (broken files) becomes the previous one
    plus one; a missing duration becomes one frame at the stream's rate."""
    av = import_av()
    previous: int | None = None
    default_duration = max(1, round(1 / (source.rate * source.time_base)))
    try:
        for frame in source.container.decode(source.video):
            pts = frame.pts
            if pts is None or (previous is not None and pts <= previous):
                fixed = 0 if previous is None else previous + 1
                log.warning("%s: frame pts %s is out of order; using %d", source.path, pts, fixed)
                pts = fixed
            previous = pts
            yield pts, frame.duration or default_duration, frame
    except av.error.FFmpegError as exc:
        raise _error(source.path, exc, "cannot decode") from None


# --- joining -----------------------------------------------------------------------


def _packets(container: Any, streams: list[Any]) -> Iterator[Any]:
    """Packets with data and a time (NUT leaves dts unset on some; demux's flush
    packets have neither)."""
    for packet in container.demux(streams):
        if packet.size and (packet.dts is not None or packet.pts is not None):
            yield packet


def _video_packets(
    av: ModuleType, folder: Path, segments: list[dict[str, Any]], time_base: Fraction
) -> Iterator[Any]:
    """The segments' packets in order, with the source's pts (NUT may rebase and shift
    them; the recorded first pts undoes that) and durations: each packet lasts until the
    next one, the last as long as the source's last frame."""
    extradata: bytes | None = None
    pending: Any = None
    for k, seg in enumerate(segments):
        path = folder / seg["file"]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if k == 0:
                extradata = stream.codec_context.extradata
            elif stream.codec_context.extradata != extradata:
                raise SaphnetError(
                    f"{path}: encoded with other codec headers than the first segment; "
                    "pass --force without --resume to start over"
                )
            offset: Fraction | None = None
            for packet in _packets(container, [stream]):
                t = packet.pts * packet.time_base
                if offset is None:
                    offset = seg["first_pts"] * time_base - t
                pts = (t + offset) / time_base
                if pts.denominator != 1:
                    raise SaphnetError(f"{path}: timestamps do not fit the source's time base")
                packet.time_base = time_base
                packet.pts = packet.dts = int(pts)
                if pending is not None:
                    pending.duration = packet.pts - pending.pts
                    yield pending
                pending = packet
    if pending is not None:
        pending.duration = segments[-1]["last_duration"]
        yield pending


def _join(
    av: ModuleType, source_path: Path, folder: Path, segments: list[dict[str, Any]],
    output: Path, plan: _Plan, force: bool,
) -> int:  # fmt: skip
    """Interleave the segments' video packets and the source's audio packets by time into
    ``output`` (atomically). Returns the number of audio streams copied."""
    first_segment = folder / segments[0]["file"]
    with (
        av.open(str(source_path)) as source,
        av.open(str(first_segment)) as first,
        atomic_output(output, force) as tmp,
        av.open(str(tmp), "w", format=plan.muxer) as out,
    ):
        video_out = out.add_stream_from_template(first.streams.video[0])
        video_out.time_base = plan.time_base
        video_out.codec_context.framerate = plan.rate  # the muxer's average frame rate
        for name, value in plan.colour.items():  # NUT keeps no colour tags; the source's
            setattr(video_out.codec_context, name, value)
        audio_in = list(source.streams.audio)
        others = len(source.streams) - len(source.streams.video) - len(audio_in)
        if others or len(source.streams.video) > 1:
            log.warning(
                "%s: only the first video stream and the audio are kept (%d other stream(s) "
                "dropped: subtitles, data, further video)",
                source_path, others + len(source.streams.video) - 1,
            )  # fmt: skip
        audio_out = {}
        for stream in audio_in:
            audio_out[stream.index] = out.add_stream_from_template(stream)
            audio_out[stream.index].time_base = stream.time_base

        def timed(
            packets: Iterator[Any], target: Any = None
        ) -> Iterator[tuple[Fraction, Any, Any]]:
            for packet in packets:
                yield (
                    (packet.dts if packet.dts is not None else packet.pts) * packet.time_base,
                    target or audio_out[packet.stream.index],
                    packet,
                )

        merged = heapq.merge(  # stable: at equal times video goes first
            timed(_video_packets(av, folder, segments, plan.time_base), video_out),
            timed(_packets(source, audio_in)) if audio_in else iter(()),
            key=lambda item: item[0],
        )
        for _, target, packet in merged:
            packet.stream = target
            out.mux(packet)
    return len(audio_in)


# --- the run -----------------------------------------------------------------------


def _prepare(
    av: ModuleType, source: _Source, output: Path, options: EncodeOptions, resume: bool,
    force: bool,
) -> _Plan:  # fmt: skip
    """Every check that can fail before a frame is deblurred."""
    plan = _plan(av, source, output, options)
    _check_container(av, source, plan, output)
    check_writable(output, force)
    folder = partial_dir(output)
    if folder.exists() and not (resume or force):
        raise SaphnetError(
            f"{folder} holds an interrupted run; pass --resume to continue it "
            "or --force to start over"
        )
    return plan


def check_video_job(
    src: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: EncodeOptions | None = None,
    resume: bool = False,
    force: bool = False,
) -> None:
    """Raise the one-line error :func:`deblur_video` would raise before its first frame
    (unreadable input, no video stream, output container, audio, existing output), so a
    caller can check every job before it loads a model."""
    source = open_source(src)
    try:
        _prepare(import_av(), source, Path(output), options or EncodeOptions(), resume, force)
    finally:
        source.close()


def deblur_video(
    src: str | os.PathLike[str],
    output: str | os.PathLike[str],
    frame_fn: FrameFn,
    *,
    options: EncodeOptions | None = None,
    resume: bool = False,
    force: bool = False,
    fingerprint: dict[str, object] | None = None,
    progress: bool = True,
    allow_truncated: bool = False,
) -> VideoResult:
    """Deblur ``src`` into ``output`` frame by frame (see the module docstring).

    ``fingerprint`` names what computes the frames (backend, model, tiling); a resumed
    run must match it and the source file, so frames from two setups never mix.
    ``resume`` continues the run left in ``OUTPUT.partial/``; without it an existing
    partial run or output is refused unless ``force`` starts over.

    When fewer frames decode than the container declares (a file cut off or damaged),
    nothing is written and a one-line error gives both counts, unless
    ``allow_truncated``; the deblurred frames stay in ``OUTPUT.partial/``, so a rerun
    with ``resume`` and ``allow_truncated`` only joins them.
    """
    from tqdm import tqdm

    av = import_av()
    options = options or EncodeOptions()
    output = Path(output)
    started = time.perf_counter()
    source = open_source(src)
    try:
        plan = _prepare(av, source, output, options, resume, force)
        folder = partial_dir(output)
        expected = {
            "version": STATE_VERSION,
            "source": _source_id(source.path),
            "settings": {**plan.settings(), **(fingerprint or {})},
        }
        if folder.exists() and not resume:
            shutil.rmtree(folder)  # _prepare allowed it: --force starts over
        if folder.exists():
            state = _load_state(folder, expected, output)
        else:
            if resume:
                log.info("%s: nothing to resume; starting from the first frame", output)
            folder.mkdir(parents=True)
            state = {**expected, "segments": []}
            _write_state(folder, state)
        done = sum(seg["frames"] for seg in state["segments"])
        if done:
            log.info("%s: resuming after %d finished frames", output, done)
        computed = _encode(av, source, plan, options, folder, state, frame_fn, progress, tqdm)
        declared = source.declared_frames()
    finally:
        source.close()
    segments = state["segments"]
    total = done + computed
    if total == 0:
        shutil.rmtree(folder)
        raise SaphnetError(f"{source.path}: holds no decodable video frames")
    if declared is not None and total < declared:
        message = (
            f"{source.path}: the container declares {declared} frames but {total} decoded "
            "(the file is cut off or damaged)"
        )
        if not allow_truncated:
            raise SaphnetError(
                f"{message}; nothing written: pass --allow-truncated to write the {total} "
                "frames (with --resume, the deblurred ones are reused)"
            )
        log.warning("%s; writing the %d frames (--allow-truncated)", message, total)
    audio = _join(av, source.path, folder, segments, output, plan, force)
    shutil.rmtree(folder)
    result = VideoResult(
        output,
        total,
        computed,
        done,
        plan.codec,
        audio,
        time.perf_counter() - started,
        [seg["file"] for seg in segments],
    )
    log.info(
        "%s: %d frames (%d deblurred now, %d resumed), %s, %d audio stream(s) copied, %.1f s",
        output, total, computed, done, plan.codec, audio, result.seconds,
    )  # fmt: skip
    return result


def _encode(
    av: ModuleType,
    source: _Source,
    plan: _Plan,
    options: EncodeOptions,
    folder: Path,
    state: dict[str, Any],
    frame_fn: FrameFn,
    progress: bool,
    tqdm: Any,
) -> int:
    """Deblur and encode the frames after those the state's segments hold; returns how
    many were deblurred. Each closed segment is recorded in the state at once."""
    done = sum(seg["frames"] for seg in state["segments"])
    last_pts = state["segments"][-1]["last_pts"] if state["segments"] else None
    segment: _Segment | None = None
    segment_started = 0.0
    computed = 0

    def close_segment() -> None:
        """Close the open segment and record it; a segment that cannot be closed is dropped."""
        nonlocal segment
        assert segment is not None
        current, segment = segment, None
        try:
            current.close()
        except BaseException:
            current.path.unlink(missing_ok=True)
            raise
        if current.frames:
            state["segments"].append(current.record())
            _write_state(folder, state)
        else:
            current.path.unlink(missing_ok=True)

    pending: list[tuple[int, int, np.ndarray]] = []

    def deblur_pending() -> None:
        """Deblur the pending frames in one call and encode them, closing full segments."""
        nonlocal segment, segment_started, computed
        frames = np.stack([rgb for _, _, rgb in pending])
        out = frame_fn(frames)
        if out.shape != frames.shape or out.dtype != frames.dtype:
            raise SaphnetError(
                f"the deblurred frames are {out.shape} {out.dtype}, "
                f"expected {frames.shape} {frames.dtype}"
            )
        for (pts, duration, _), rgb in zip(pending, out, strict=True):
            if segment is None:
                name = f"segment-{len(state['segments']):05d}.nut"
                segment = _Segment(av, folder / name, plan)
                segment_started = time.perf_counter()
            segment.add(_to_frame(av, rgb, plan, pts), duration)
            computed += 1
            bar.update()
            if (
                segment.frames >= options.segment_frames
                or time.perf_counter() - segment_started >= options.segment_seconds
            ):
                close_segment()
        pending.clear()

    bar = tqdm(
        total=source.declared_frames(),
        unit="frame",
        desc=source.path.name,
        disable=None if progress else True,
    )
    try:
        for index, (pts, duration, frame) in enumerate(_frames(source)):
            if index < done:
                if index == done - 1 and pts != last_pts:
                    raise SaphnetError(
                        f"{source.path}: frame {index} has pts {pts}, the interrupted run "
                        f"recorded {last_pts}; pass --force without --resume to start over"
                    )
                bar.update()
                continue
            pending.append((pts, duration, _rgb(frame, plan)))
            if len(pending) >= options.batch:
                deblur_pending()
        if pending:
            deblur_pending()
        if segment is not None:
            close_segment()
    except BaseException:
        # Keep what is done: the frames already handed to the encoder become a segment.
        if segment is not None:
            try:
                close_segment()
            except Exception:
                log.debug("could not close the open segment", exc_info=True)
        log.warning(
            "interrupted after %d frames; run again with --resume to continue",
            sum(seg["frames"] for seg in state["segments"]),
        )
        raise
    finally:
        bar.close()
    return computed
