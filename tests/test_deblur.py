"""``saphnet deblur``: inputs of every kind, outputs kept faithful, bad inputs reported
one line each while the batch goes on, exit status = number of failures."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saphnet.cli import main

RNG = np.random.default_rng(0)


@pytest.fixture
def weights(tiny_weights: Path) -> Path:
    """The tiny network shared by the suite (tests/conftest.py)."""
    return tiny_weights


def _deblur(weights: Path, *args: str) -> int:
    return main(["-q", "deblur", "--backend", "torch", "--weights", str(weights), *args])


def _rgb(h: int = 24, w: int = 32) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_of_mixed_images_keeps_mode_alpha_and_depth(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_rgb()).save(src / "rgb.png")
    Image.fromarray(_rgb()[..., 0], "L").save(src / "gray.png")
    rgba = np.concatenate([_rgb(), RNG.integers(0, 256, (24, 32, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")
    Image.fromarray(_rgb()).save(src / "photo.jpg", quality=95)
    import tifffile

    tifffile.imwrite(
        src / "deep.tif", RNG.integers(0, 65536, (20, 20, 3)).astype(np.uint16), photometric="rgb"
    )
    (src / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    assert _deblur(weights, str(src), "-o", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "alpha.png",
        "deep.tif",
        "gray.png",
        "photo.jpg",
        "rgb.png",
    ]
    assert Image.open(out / "gray.png").mode == "L"
    back = np.asarray(Image.open(out / "alpha.png"))
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    assert tifffile.imread(out / "deep.tif").dtype == np.uint16


def test_bad_inputs_get_one_line_each_and_the_batch_goes_on(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_rgb()).save(src / "good.png")
    (src / "text.png").write_text("not an image")
    Image.fromarray(_rgb(64, 64)).save(src / "cut.png")
    data = (src / "cut.png").read_bytes()
    (src / "cut.png").write_bytes(data[: len(data) // 3])
    Image.fromarray(_rgb(8, 8)).save(src / "tiny.png")
    out = tmp_path / "out"
    code = _deblur(weights, str(src / "*.png"), str(tmp_path / "missing.png"), "-o", str(out))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 4
    assert len(err) == 4 and all(line.startswith("saphnet deblur: ") for line in err)
    assert any("text.png" in line and "not an image" in line for line in err)
    assert any("cut.png" in line and "truncated" in line for line in err)
    assert any("tiny.png" in line and "too small" in line for line in err)
    assert any("missing.png" in line and "no such file" in line for line in err)
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_existing_output_needs_force(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    target = tmp_path / "result.png"
    assert _deblur(weights, str(tmp_path / "a.png"), "-o", str(target)) == 0
    first = target.read_bytes()
    target.write_bytes(b"keep me")
    assert _deblur(weights, str(tmp_path / "a.png"), "-o", str(target)) == 1
    assert "--force" in capsys.readouterr().err and target.read_bytes() == b"keep me"
    assert _deblur(weights, str(tmp_path / "a.png"), "-o", str(target), "--force") == 0
    assert target.read_bytes() == first


def test_glob_without_match_and_tiling_options(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(_rgb(70, 90)).save(tmp_path / "a.png")
    assert (
        _deblur(
            weights,
            str(tmp_path / "*.webp"),
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "o"),
            "--tile",
            "32",
            "--tile-overlap",
            "8",
        )
        == 1
    )
    assert "no file matches" in capsys.readouterr().err
    assert Image.open(tmp_path / "o" / "a.png").size == (90, 70)


def test_same_name_from_two_folders_is_refused(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_rgb()).save(tmp_path / folder / "same.png")
    code = _deblur(weights, str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(tmp_path / "o"))
    assert code == 1 and "same name" in capsys.readouterr().err


# --- options are checked before any model loads (issue 15, item 3) ---


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--memory-budget", "0", "--memory-budget"),
        ("--memory-budget", "-1", "--memory-budget"),
        ("--memory-budget", "lots", "--memory-budget"),
        ("--tile", "500", "try 496 or 512"),
        ("--tile", "16", "--tile"),
        ("--tile-overlap", "-8", "--tile-overlap"),
    ],
)
def test_numeric_options_fail_in_argparse_before_the_model_loads(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
    says: str,
) -> None:
    import saphnet.runtime.api as api

    monkeypatch.setattr(api, "open_backend", _no_model_may_load)
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exc:
        main(["deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), option, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and option in err and says in err
    assert "math domain" not in err and not (tmp_path / "o").exists()


def _no_model_may_load(*args: object, **kwargs: object) -> None:
    raise AssertionError("a model was loaded before the options were checked")


def test_overlap_not_smaller_than_tile_fails_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import saphnet.runtime.api as api

    monkeypatch.setattr(api, "open_backend", _no_model_may_load)
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    argv = ["deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]
    assert main([*argv, "--tile", "64", "--tile-overlap", "64"]) == 2
    err = capsys.readouterr().err
    assert "--tile-overlap 64 must be smaller than --tile 64" in err


def test_a_tiny_budget_still_runs_without_blaming_the_overlap(
    tmp_path: Path, weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The smallest budget argparse allows runs (in the smallest tiles, with a
    warning), instead of failing on an --tile-overlap the user never set."""
    Image.fromarray(_rgb(300, 200)).save(tmp_path / "a.png")
    code = _deblur(
        weights, str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--memory-budget", "128"
    )
    assert code == 0 and (tmp_path / "o" / "a.png").is_file()
    assert any("memory budget 128 MB is below" in r.getMessage() for r in caplog.records)


# --- -o is a file only for one input (issue 15, item 4) ---


def test_several_inputs_refuse_an_image_file_name_as_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(_rgb()).save(tmp_path / name)
    out = tmp_path / "out" / "x.png"
    code = main(["deblur", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "names one file but 2 inputs" in err[0] and "give a folder" in err[0]
    assert not (tmp_path / "out").exists()


def test_unknown_output_extension_is_refused_not_made_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    out = tmp_path / "result.xyz"
    assert main(["deblur", str(tmp_path / "a.png"), "-o", str(out)]) == 2
    assert "'.xyz' is not a known extension" in capsys.readouterr().err
    assert not out.exists()


def test_output_paths_rules(tmp_path: Path) -> None:
    from saphnet.commands.deblur import output_paths
    from saphnet.errors import SaphnetError

    a, b = Path("in/a.png"), Path("in/b.jpg")
    assert output_paths([a], tmp_path / "x.png") == ([(a, tmp_path / "x.png")], [])
    assert output_paths([a, b], tmp_path / "o") == (
        [(a, tmp_path / "o" / "a.png"), (b, tmp_path / "o" / "b.jpg")],
        [],
    )
    (tmp_path / "photos.v2").mkdir()  # an existing folder may have a dot in its name
    assert output_paths([a, b], tmp_path / "photos.v2")[0][1] == (
        b,
        tmp_path / "photos.v2" / "b.jpg",
    )
    assert output_paths([a], tmp_path / "clip.mp4", suffixes=(".mp4",)) == (
        [(a, tmp_path / "clip.mp4")],
        [],
    )
    with pytest.raises(SaphnetError, match="not a known extension"):
        output_paths([a, b], tmp_path / "photos.v3")


# --- non-finite weights or outputs are errors, nothing is written (issue 15, item 1) ---


def _nan_weights(source: Path, target: Path, name: str | None = None) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    name = name or next(k for k in tensors if k.endswith("weight"))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(target), metadata=meta)
    return name


def test_nan_weights_are_refused_at_load_naming_the_tensor(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "nan.safetensors"
    name = _nan_weights(weights, bad)
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    assert _deblur(bad, str(tmp_path / "a.png"), "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and name in err[0] and "NaN/Inf" in err[0]
    assert not (tmp_path / "o").exists()


def test_nan_output_is_an_error_naming_the_weights_and_writes_nothing(
    tmp_path: Path, tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ONNX file with a NaN weight (no load check sees inside it) used to write an
    all-black image and exit 0."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tiny_onnx))
    init = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(model, str(bad))
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    argv = ["-q", "deblur", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(bad)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.png" in err[0] and "NaN/Inf" in err[0] and "weights" in err[0]
    assert not (tmp_path / "o" / "a.png").exists()


# --- a wrong-shape tensor or a config that disagrees: one line (issue 15, item 2) ---


def _rewrite(source: Path, target: Path, edit_tensors=None, edit_config=None) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    if edit_tensors:
        edit_tensors(tensors)
    if edit_config:
        config = json.loads(meta["config"])
        edit_config(config)
        meta["config"] = json.dumps(config)
    save_file(tensors, str(target), metadata=meta)


def test_wrong_shape_tensor_gets_one_line_naming_file_and_tensor(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    bad = tmp_path / "shape.safetensors"
    victim = {}

    def shrink(tensors: dict) -> None:
        name = next(k for k, v in tensors.items() if v.ndim == 4)
        victim["name"] = name
        tensors[name] = torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:])

    _rewrite(weights, bad, edit_tensors=shrink)
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    assert _deblur(bad, str(tmp_path / "a.png"), "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and victim["name"] in err[0] and "shape" in err[0]
    assert "Traceback" not in err[0]


def test_config_disagreeing_with_tensors_gets_one_line(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.safetensors"

    def wider(config: dict) -> None:
        config["widths"] = [w * 2 for w in config["widths"]]

    _rewrite(weights, bad, edit_config=wider)
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    assert _deblur(bad, str(tmp_path / "a.png"), "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "tensor " in err[0]
    assert "disagree" in err[0]


# --- progress: tiles of one image and files of a batch, only on a terminal (item 7) ---


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tile_and_file_progress_on_a_terminal_quiet_when_piped(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(_rgb(90, 120)).save(tmp_path / "a.png")
    Image.fromarray(_rgb()).save(tmp_path / "b.png")
    argv = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--tile", "32", "--tile-overlap", "8"]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _deblur(weights, *argv, "-o", str(tmp_path / "t")) == 0
    shown = terminal.getvalue()
    from saphnet.runtime.tiling import plan_tiles

    tiles = plan_tiles(90, 120, 32, 8).count
    # drawn when made, counting the image's tiles (later redraws depend on tqdm's timing)
    assert f"a.png:   0%|          | 0/{tiles} " in shown and "tile/s" in shown
    assert "image" in shown and "2/2" in shown  # the file bar
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    assert _deblur(weights, *argv, "-o", str(tmp_path / "p")) == 0
    assert piped.getvalue() == ""


def test_parser_defaults_are_the_runtimes() -> None:
    """The parser restates the memory budget and overlap (so it imports no numpy);
    they must stay the values the runtime uses by default."""
    from saphnet.commands import deblur
    from saphnet.runtime.memory import DEFAULT_MEMORY_BUDGET_MB
    from saphnet.runtime.tiling import DEFAULT_OVERLAP

    assert deblur.MEMORY_BUDGET_MB == DEFAULT_MEMORY_BUDGET_MB
    assert deblur.OVERLAP == DEFAULT_OVERLAP
