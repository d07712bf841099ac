"""saphnet compare: Polygraphy-based accuracy gate, reports, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saphnet.cli import main
from saphnet.model import SAPHNet, SAPHNetConfig
from saphnet.runtime.compare import DEFAULT_THRESHOLDS, Thresholds, compare_models


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real-looking image: a gradient with a hard edge (saturated and flat parts)."""
    y, x = np.mgrid[0:48, 0:72]
    rgb = np.stack([x * 255 // 71, y * 255 // 47, np.where(x > 36, 255, 0)], axis=-1)
    path = tmp_path_factory.mktemp("images") / "edge.png"
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def test_compare_models_measures_every_image(tiny_onnx: Path, tiny_weights: Path) -> None:
    images = [
        ("flat", np.full((3, 32, 48), 0.5, np.float32)),
        ("noise", np.random.rand(3, 40, 40).astype(np.float32)),
    ]
    (report,) = compare_models(SAPHNet.load(tiny_weights), [tiny_onnx], images)
    assert report.passed and report.precision == "fp32" and report.pdf_op == "custom"
    assert report.thresholds == DEFAULT_THRESHOLDS["fp32"]
    assert [r.image for r in report.images] == ["flat", "noise"]
    for result in report.images:
        assert result.max_abs <= 1e-4 and result.mean_abs <= result.max_abs
        assert result.psnr >= 60 and result.ssim >= 0.999 and result.nonfinite == 0


def test_compare_fails_a_broken_threshold(tiny_onnx: Path, tiny_weights: Path) -> None:
    images = [("noise", np.random.rand(3, 32, 32).astype(np.float32))]
    strict = {"fp32": Thresholds(max_abs=0.0, min_psnr=1e9, min_ssim=1.0)}
    (report,) = compare_models(SAPHNet.load(tiny_weights), [tiny_onnx], images, strict)
    assert not report.passed
    assert any("PSNR" in f for f in report.images[0].failures)


def test_cli_writes_reports_and_exits_0(
    tiny_onnx: Path,
    tiny_weights: Path,
    image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "reports"
    args = [
        "compare",
        str(tiny_onnx),
        "--weights",
        str(tiny_weights),
        "--images",
        str(image),
        "-o",
        str(out),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "tiny_custom_fp32.onnx" in table and "pass" in table
    data = json.loads((out / "compare.json").read_text())
    assert data["passed"] is True
    assert data["models"][0]["worst"]["max_abs"] <= 1e-4
    assert "| tiny_custom_fp32.onnx |" in (out / "compare.md").read_text()
    assert main(args) == 2  # reports exist: kept without --force
    assert main([*args, "--force"]) == 0


def test_cli_exits_1_on_a_broken_threshold(
    tiny_onnx: Path, tiny_weights: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare",
            str(tiny_onnx),
            "--weights",
            str(tiny_weights),
            "--images",
            str(image),
            "--min-psnr",
            "1000",
        ]
    )
    assert code == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_refuses_a_file_from_other_weights(
    tiny_onnx: Path,
    tiny_config: SAPHNetConfig,
    tmp_path: Path,
    image: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "other.safetensors"
    SAPHNet(tiny_config).save(other)  # same config, other weights
    code = main(["compare", str(tiny_onnx), "--weights", str(other), "--images", str(image)])
    err = capsys.readouterr().err
    assert code == 2
    assert "pass the --weights it came from" in err and "\n" not in err.strip()
