"""``saphnet demo``: the pipeline end to end on the bundled sample (a tiny network
keeps it fast; the real demo uses the shipped weights)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from saphnet.cli import main
from saphnet.runtime.demo import SAMPLE_BLUR

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def weights(tiny_weights: Path) -> Path:
    """The tiny network shared by the suite (tests/conftest.py)."""
    return tiny_weights


@pytest.mark.slow
def test_demo_writes_image_and_reports(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--weights", str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "pass" in printed
    assert Image.open(out / "deblurred.png").size == Image.open(SAMPLE_BLUR).size
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True
    rows = {row["backend"].split()[0]: row for row in report["parity"]}
    assert rows["onnxruntime"]["worst"]["max_abs"] < 1e-3
    assert set(report["steps"]) >= {"export ONNX (custom op)", "compare ONNX Runtime vs PyTorch"}
    if HAS_TRT:
        assert {"tensorrt"} <= set(rows)
    else:
        assert "not available" in report["tensorrt"]
    md = (out / "report.md").read_text()
    assert "| onnxruntime" in md and "Wall time" in md

    before = (out / "report.json").read_bytes()
    assert main(["-q", "demo", "-o", str(out), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert (out / "report.json").read_bytes() == before
