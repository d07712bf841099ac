"""``saphnet deblur`` on videos: frames, timestamps and audio kept, resumable, bounded.

Clips are made here with PyAV: 48x64, 10-24 frames, with an AAC audio stream.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.runtime import api

av = pytest.importorskip("av", reason="video needs PyAV (pip install 'saphnet[video]')")

from saphnet.runtime.video import (  # noqa: E402
    EncodeOptions,
    deblur_video,
    partial_dir,
)

H, W = 48, 64


def _picture(i: int) -> np.ndarray:
    """A textured frame that moves with ``i`` (so codecs and the network have work)."""
    y, x = np.mgrid[0:H, 0:W]
    r = 128 + 90 * np.sin((x + 3 * i) / 5.0)
    g = 128 + 90 * np.cos((y - 2 * i) / 4.0)
    b = 128 + 90 * np.sin((x + y + 4 * i) / 7.0)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    pts: list[int] | None = None,
    frames: int = 12,
    time_base: Fraction = Fraction(1, 25),
    audio: bool = True,
) -> Path:
    """A clip with frames at ``pts`` (default 0..frames-1, i.e. constant rate) in
    ``time_base``, and 0.6 s of AAC audio."""
    pts = pts if pts is not None else list(range(frames))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=round(1 / time_base), options={"bf": "0"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        sound = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(_picture(i), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            for k in range(5):
                t = np.arange(k * 1024, (k + 1) * 1024) / 8000
                samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 8000, k * 1024
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def video_info(path: Path) -> dict:
    """What must survive: frame times, size, rates, and the audio packets."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "size": (v.codec_context.height, v.codec_context.width),
            "average_rate": v.average_rate,
            "guessed_rate": v.guessed_rate,
        }
        info["times"] = [f.pts * f.time_base for f in c.decode(v)]
    with av.open(str(path)) as c:
        info["audio"] = [
            (p.pts * p.time_base, p.duration * p.time_base, bytes(p))
            for p in c.demux(c.streams.audio)
            if p.size
        ]
    return info


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    assert len(a) == len(b)
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))


def invert(rgb: np.ndarray) -> np.ndarray:
    return 255 - rgb


def as_coded(rgb: np.ndarray, pix_fmt: str = "yuv420p", **colour: int) -> np.ndarray:
    """``rgb`` after the conversion to the codec's pixel format and back (4:2:0 halves
    the chroma resolution), which is all a lossless encode leaves of the difference;
    ``colour``: colorspace and color_range of the conversion."""
    fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    space, full = colour.get("colorspace"), colour.get("color_range")
    frame = av.VideoFrame.from_ndarray(rgb, format=fmt).reformat(
        format=pix_fmt, dst_colorspace=space, dst_color_range=full
    )
    return frame.to_ndarray(format=fmt, src_colorspace=space, src_color_range=full)


@pytest.mark.parametrize(
    ("src_ext", "dst_ext"),
    [("mp4", "mp4"), ("mkv", "mkv"), ("mov", "mp4"), ("mp4", "mov"), ("mp4", "mkv")],
)
def test_frames_timestamps_and_audio_survive(tmp_path: Path, src_ext: str, dst_ext: str) -> None:
    src = make_clip(tmp_path / f"in.{src_ext}")
    dst = tmp_path / f"out.{dst_ext}"
    result = deblur_video(src, dst, invert, options=EncodeOptions(crf=0, segment_frames=5))
    assert (result.frames, result.computed, result.resumed, result.audio_streams) == (12, 12, 0, 1)
    assert result.segments == ["segment-00000.nut", "segment-00001.nut", "segment-00002.nut"]
    before, after = video_info(src), video_info(dst)
    assert after["size"] == before["size"] == (H, W)
    assert len(after["times"]) == 12
    # Matroska holds no negative times: AAC's priming packet at -1024/8000 s in an mp4
    # shifts every stream by the same amount (FFmpeg's rule); all other pairs keep them.
    shift = Fraction(1024, 8000) if (src_ext, dst_ext) == ("mp4", "mkv") else 0
    assert after["times"] == [t + shift for t in before["times"]]
    assert after["guessed_rate"] == before["guessed_rate"] == 25
    assert after["average_rate"] == before["average_rate"]
    # audio: the same packets (bytes, durations, times): copied, not re-encoded
    assert after["audio"] == [(t + shift, d, data) for t, d, data in before["audio"]]
    # every frame went through the frame function once, and nothing else changed
    # (x264 at CRF 0 is lossless; RGB -> YUV 4:2:0 -> RGB costs a few levels)
    expected = [as_coded(invert(x)) for x in decoded(src)]
    assert _max_diff(decoded(dst), expected) <= 2
    assert not partial_dir(dst).exists()


def test_variable_frame_rate_is_kept(tmp_path: Path) -> None:
    pts = [0, 1, 3, 4, 8, 9, 10, 15, 16, 20]
    src = make_clip(tmp_path / "vfr.mkv", pts=pts, time_base=Fraction(1, 30))
    dst = tmp_path / "vfr.mp4"
    deblur_video(src, dst, invert, options=EncodeOptions(segment_frames=4))
    times = video_info(dst)["times"]
    assert times == video_info(src)["times"]
    assert np.diff([float(t) for t in times]).std() > 0.01  # still variable
    with av.open(str(dst)) as c:  # each frame lasts until the next one
        durations = [p.duration * p.time_base for p in c.demux(video=0) if p.size]
    assert durations[:-1] == [b - a for a, b in itertools.pairwise(times)]


def test_webm_refuses_aac_audio_before_work(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "a.mp4")
    calls = []
    with pytest.raises(SaphnetError, match=r"aac audio cannot be copied into \.webm; write \.mkv"):
        deblur_video(src, tmp_path / "a.webm", lambda x: calls.append(1) or x)
    assert not calls and not (tmp_path / "a.webm").exists()


def test_webm_without_audio_uses_vp9(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "a.mp4", frames=6, audio=False)
    result = deblur_video(src, tmp_path / "a.webm", invert, options=EncodeOptions(crf=10))
    assert result.codec == "libvpx-vp9" and result.audio_streams == 0
    assert (
        _max_diff(decoded(tmp_path / "a.webm"), [as_coded(invert(x)) for x in decoded(src)]) <= 40
    )
    assert video_info(tmp_path / "a.webm")["times"] == video_info(src)["times"]


def test_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    """Frames are streamed: a clip 8x longer peaks at about the same Python memory."""

    def peak(frames: int) -> int:
        src = make_clip(tmp_path / f"{frames}.mp4", frames=frames, audio=False)
        tracemalloc.start()
        deblur_video(src, tmp_path / f"out{frames}.mp4", invert, progress=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(12), peak(96)
    frame_bytes = H * W * 3
    assert long - short < 20 * frame_bytes, (short, long)


class CountingBackend:
    """Stands in for a model: inverts the frame, counts calls, fails on call ``fail_at``."""

    name, precision = "counting", "fp32"

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        return 1.0 - batch

    def close(self) -> None:
        pass


def _cli(monkeypatch: pytest.MonkeyPatch, backend: CountingBackend, *args: str) -> int:
    monkeypatch.setattr(api, "open_backend", lambda *a, **k: backend)
    return main(["-q", "deblur", *args])


def test_resume_after_interruption_skips_finished_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=20)
    dst = tmp_path / "out" / "clip.mp4"
    crashing = CountingBackend(fail_at=8)
    one = ("--batch", "1")
    assert _cli(monkeypatch, crashing, str(src), "-o", str(dst), "--crf", "0", *one) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"saphnet deblur: {src}: simulated crash; finished frames are kept: fix it and "
        "rerun with --resume (a smaller --tile if memory ran out)"
    ]
    assert not dst.exists()
    state = json.loads((partial_dir(dst) / "state.json").read_text())
    assert sum(s["frames"] for s in state["segments"]) == 7  # the open segment was closed

    # without --resume the partial run is neither lost nor silently continued
    assert _cli(monkeypatch, CountingBackend(), str(src), "-o", str(dst)) == 2
    assert "holds an interrupted run; pass --resume" in capsys.readouterr().err

    resumed = CountingBackend()
    assert _cli(monkeypatch, resumed, str(src), "-o", str(dst), "--crf", "0", "--resume", *one) == 0
    assert resumed.calls == 13  # frames 7..19 only
    assert video_info(dst)["times"] == video_info(src)["times"]
    assert video_info(dst)["audio"] == video_info(src)["audio"]
    assert _max_diff(decoded(dst), [as_coded(invert(x)) for x in decoded(src)]) <= 2
    assert not partial_dir(dst).exists()


def test_sigterm_keeps_finished_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=10)
    dst = tmp_path / "o.mp4"

    class Terminated(CountingBackend):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            if self.calls == 6:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().infer(batch)

    handler = signal.getsignal(signal.SIGTERM)
    assert _cli(monkeypatch, Terminated(), str(src), "-o", str(dst), "--batch", "1") == 130
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    assert "interrupted" in capsys.readouterr().err
    state = json.loads((partial_dir(dst) / "state.json").read_text())
    assert sum(s["frames"] for s in state["segments"]) == 6
    resumed = CountingBackend()
    assert _cli(monkeypatch, resumed, str(src), "-o", str(dst), "--batch", "1", "--resume") == 0
    assert resumed.calls == 4 and len(decoded(dst)) == 10


def test_killed_run_redoes_only_the_unrecorded_segment(tmp_path: Path) -> None:
    """A kill can land after a segment file is written but before state.json lists it:
    resume redoes that segment only, and ignores the stray file."""
    src = make_clip(tmp_path / "clip.mkv", frames=15)
    dst = tmp_path / "clip.mp4"
    options = EncodeOptions(crf=0, segment_frames=4)
    calls = []

    def failing(rgb: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return invert(rgb)

    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, dst, failing, options=options)
    state_file = partial_dir(dst) / "state.json"
    state = json.loads(state_file.read_text())
    assert [s["frames"] for s in state["segments"]] == [4, 4, 2]
    state["segments"] = state["segments"][:2]  # as if killed before recording segment 2
    state_file.write_text(json.dumps(state))

    counted = []
    result = deblur_video(
        src, dst, lambda x: counted.append(1) or invert(x), options=options, resume=True
    )
    assert (len(counted), result.computed, result.resumed, result.frames) == (7, 7, 8, 15)
    assert video_info(dst)["times"] == video_info(src)["times"]
    assert _max_diff(decoded(dst), [as_coded(invert(x)) for x in decoded(src)]) <= 2


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=6, audio=False)
    dst = tmp_path / "o.mp4"

    def crash(rgb: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        deblur_video(src, dst, crash, fingerprint={"model": "a"})
    with pytest.raises(SaphnetError, match=r"another settings .*pass --force without --resume"):
        deblur_video(src, dst, invert, resume=True, fingerprint={"model": "b"})
    deblur_video(src, dst, invert, force=True, fingerprint={"model": "b"})  # starts over
    assert len(decoded(dst)) == 6


def test_deblurred_frames_equal_the_backend_on_decoded_frames(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """End to end with a real (tiny) network: each output frame is the backend's
    deblur of the decoded input frame, within the codec's tolerance."""
    src = make_clip(tmp_path / "clip.mp4", frames=6)
    dst = tmp_path / "out.mov"
    code = main(
        [
            "-q",
            "deblur",
            "--backend",
            "torch",
            "--weights",
            str(tiny_weights),
            str(src),
            "-o",
            str(dst),
            "--crf",
            "0",
        ]
    )
    assert code == 0
    backend = api.open_backend("torch", weights=tiny_weights)
    expected = [as_coded(api.deblur(backend, frame)) for frame in decoded(src)]
    got = decoded(dst)
    assert _max_diff(got, expected) <= 2
    assert _max_diff(got, decoded(src)) > 20  # the network did change the frames
    assert video_info(dst)["times"] == video_info(src)["times"]


def test_unreadable_or_videoless_input_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_model(*a, **k):
        raise AssertionError("the model must not load for a bad input")

    monkeypatch.setattr(api, "open_backend", no_model)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    assert main(["deblur", str(bad), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"saphnet deblur: error: {bad}: not a readable video"
    )

    audio_only = tmp_path / "sound.mkv"
    with av.open(str(audio_only), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert main(["deblur", str(audio_only), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"saphnet deblur: error: {audio_only}: holds no video stream; give a video file"]

    assert main(["deblur", str(tmp_path / "missing.mov"), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "missing.mov: no such file" in capsys.readouterr().err


def test_existing_output_needs_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=4)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"keep me")
    backend = CountingBackend()
    assert _cli(monkeypatch, backend, str(src), "-o", str(dst)) == 2
    assert capsys.readouterr().err.strip() == (
        f"saphnet deblur: error: {dst} exists; pass --force to overwrite it"
    )
    assert dst.read_bytes() == b"keep me" and backend.calls == 0
    assert _cli(monkeypatch, backend, str(src), "-o", str(dst), "--force", "--batch", "1") == 0
    assert backend.calls == 4 and len(decoded(dst)) == 4


def test_cli_output_folder_and_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_clip(tmp_path / "a.mp4", frames=3, audio=False)
    b = make_clip(tmp_path / "b.mkv", frames=3, audio=False)
    out = tmp_path / "out"
    assert _cli(monkeypatch, CountingBackend(), str(a), str(b), "-o", str(out)) == 0
    assert [len(decoded(out / n)) for n in ("a.mp4", "b.mkv")] == [3, 3]

    image = tmp_path / "x.png"
    assert _cli(monkeypatch, CountingBackend(), str(a), str(image), "-o", str(out)) == 2
    assert "give videos and images in separate runs" in capsys.readouterr().err
    assert _cli(monkeypatch, CountingBackend(), str(a), "-o", str(tmp_path / "a.png")) == 2
    assert "videos are written as .mp4" in capsys.readouterr().err
    assert _cli(monkeypatch, CountingBackend(), str(a), str(b), "-o", str(tmp_path / "o.mp4")) == 2
    assert "names one file for 2 videos; give a folder" in capsys.readouterr().err


def test_mpeg4_where_pyav_lacks_libx264(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx264"})
    src = make_clip(tmp_path / "a.mp4", frames=5)
    result = deblur_video(src, tmp_path / "b.mp4", invert, options=EncodeOptions(crf=6))
    assert result.codec == "mpeg4"
    assert video_info(tmp_path / "b.mp4")["times"] == video_info(src)["times"]
    got, want = decoded(tmp_path / "b.mp4"), [as_coded(invert(x)) for x in decoded(src)]
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(got, want, strict=True)]) < 3
    with pytest.raises(SaphnetError, match=r"cannot write video as \.avi; use one of \.mp4"):
        deblur_video(src, tmp_path / "b.avi", invert)
    no_audio = make_clip(tmp_path / "c.mp4", frames=2, audio=False)
    with pytest.raises(SaphnetError, match=r"\.webm cannot hold mpeg4 video; use --video-codec"):
        deblur_video(no_audio, tmp_path / "c.webm", invert, options=EncodeOptions(codec="mpeg4"))


def test_frames_are_batched_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_clip(tmp_path / "a.mp4", frames=10)
    dst = tmp_path / "b.mp4"
    backend = CountingBackend()
    assert _cli(monkeypatch, backend, str(src), "-o", str(dst), "--crf", "0", "--batch", "4") == 0
    assert backend.calls == 3  # 4 + 4 + 2 frames
    assert _max_diff(decoded(dst), [as_coded(invert(x)) for x in decoded(src)]) <= 2
    # a budget of two padded 48x64 frames allows two per inference; tiled frames go alone
    pair = 2 * 48 * 64
    assert api.images_per_call(backend, H, W, 0, pair, limit=8) == 2
    assert api.images_per_call(backend, H, W, 32, pair, limit=8) == 1
    assert api.images_per_call(backend, H, W, 0, pair - 1, limit=8) == 1
    backend.profile = type("P", (), {"max": (3, 3, 64, 64)})()  # an engine's largest batch
    assert api.images_per_call(backend, H, W, 0, 10 * pair, limit=8) == 3


def _tagged_clip(path: Path, pix_fmt: str, frames: int = 4) -> Path:
    """A clip in ``pix_fmt``, tagged BT.709 full range, from 16-bit RGB pictures."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"bf": "0", "qp": "0"})
        video.width, video.height, video.pix_fmt = W, H, pix_fmt
        cc = video.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        cc.color_range = 2  # full
        for i in range(frames):
            rgb = _picture(i).astype(np.uint16) * 257
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le")
            out.mux(
                video.encode(frame.reformat(format=pix_fmt, dst_colorspace=1, dst_color_range=2))
            )
        out.mux(video.encode(None))
    return path


@pytest.mark.parametrize(("pix_fmt", "bits"), [("yuv422p", 8), ("yuv420p10le", 16)])
def test_pixel_format_depth_and_colour_tags_follow_the_source(
    tmp_path: Path, pix_fmt: str, bits: int
) -> None:
    src = _tagged_clip(tmp_path / "a.mkv", pix_fmt)
    dst = tmp_path / "b.mp4"
    seen = []
    deblur_video(src, dst, lambda x: seen.append(x.dtype) or x, options=EncodeOptions(crf=0))
    assert set(seen) == {np.dtype(f"uint{bits}")}  # 10-bit video is deblurred in 16 bits
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        ca, cb = a.streams.video[0].codec_context, b.streams.video[0].codec_context
        assert cb.format.name.replace("yuvj", "yuv") == pix_fmt
        tags = ("colorspace", "color_primaries", "color_trc", "color_range")
        assert [getattr(cb, t) for t in tags] == [getattr(ca, t) for t in tags] == [1, 1, 1, 2]
        rgb = "rgb48le" if bits == 16 else "rgb24"
        got = [f.to_ndarray(format=rgb).astype(int) for f in b.decode(video=0)]
        source = [f.to_ndarray(format=rgb) for f in a.decode(video=0)]
    if bits == 8:  # 4:2:2 8-bit: the lossless round trip is exact
        want = [as_coded(x, pix_fmt, colorspace=1, color_range=2).astype(int) for x in source]
        assert max(np.abs(x - y).max() for x, y in zip(got, want, strict=True)) <= 2
    else:
        # x264's CRF 0 is not lossless at 10 bits, and RGB <-> 4:2:0 loses chroma on this
        # saturated test pattern (forcing 8 bits here measured 34.1 dB, 10 bits 35.5 dB)
        errors = (np.stack(got) - np.stack(source)) / 65535
        assert 10 * np.log10(1 / np.mean(errors**2)) > 35


def test_cli_defaults_match_the_library_and_import_no_numpy() -> None:
    import subprocess
    import sys

    from saphnet.commands import _video
    from saphnet.runtime.video import DEFAULT_CRF

    assert _video.CRF == DEFAULT_CRF
    code = "import sys, saphnet.cli as c; c.build_parser(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _all_intra_mkv(path: Path, frames: int = 12) -> Path:
    """A video-only Matroska clip of keyframes only (every frame decodes on its own)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"bf": "0", "g": "1"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_picture(i), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def test_truncated_video_is_an_error_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clip cut off halfway used to give exit 0 and a shorter video, no warning
    (issue 20, item 8)."""
    src = _all_intra_mkv(tmp_path / "cut.mkv")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    decodable = len(decoded(src))
    assert 0 < decodable < 12
    dst = tmp_path / "out.mkv"
    assert _cli(monkeypatch, CountingBackend(), str(src), "-o", str(dst)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"saphnet deblur: {src}: the container declares 12 frames but {decodable} decoded "
        "(the file is cut off or damaged); nothing written: pass --allow-truncated to write "
        f"the {decodable} frames (with --resume, the deblurred ones are reused)"
    ]
    assert not dst.exists()
    resumed = CountingBackend()
    args = (str(src), "-o", str(dst), "--allow-truncated", "--resume")
    assert _cli(monkeypatch, resumed, *args) == 0
    assert resumed.calls == 0 and len(decoded(dst)) == decodable
    complete = _all_intra_mkv(tmp_path / "whole.mkv")  # a complete clip is no warning
    assert _cli(monkeypatch, CountingBackend(), str(complete), "-o", str(tmp_path / "w.mkv")) == 0
    assert len(decoded(tmp_path / "w.mkv")) == 12
