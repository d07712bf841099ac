"""``saphnet bench`` writes its table, JSON and plot with one row per case."""

from __future__ import annotations

import json
from pathlib import Path

from saphnet.cli import main


def test_bench_reports_every_case(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["-q", "bench", "--sizes", "32x48", "--iters", "2", "--warmup", "1"]
    args += ["--backends", "torch,onnxruntime", "--pdf-ops", "custom,decomposed"]
    assert main([*args, "--weights", str(tiny_weights), "-o", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    text = json.dumps(report)
    assert "onnxruntime" in text and "torch" in text and "decomposed" in text
    assert (out / "bench.png").stat().st_size > 0
    table = (out / "bench.md").read_text()
    assert table.count("| 32x48 |") == 3  # torch, onnxruntime custom, onnxruntime decomposed
    assert main([*args, "--weights", str(tiny_weights), "-o", str(out)]) == 2  # no --force
