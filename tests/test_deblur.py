"""``saphnet deblur``: inputs of every kind, outputs kept faithful, bad inputs reported
one line each while the batch goes on, exit status = number of failures."""

from __future__ import annotations

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
    assert _deblur(weights, str(tmp_path / "a.png"), "-o", str(tmp_path / "p"), "--tile", "50") == 1
    assert "multiple of 16" in capsys.readouterr().err


def test_same_name_from_two_folders_is_refused(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_rgb()).save(tmp_path / folder / "same.png")
    code = _deblur(weights, str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(tmp_path / "o"))
    assert code == 1 and "same name" in capsys.readouterr().err
