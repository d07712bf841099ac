"""benchmarks/fp16_offsets.py, the measurement behind the plugin README's FP16 offset
decision, on a small crop: it runs the whole network with the PDF layers in the host build at
each input precision and reports errors against the FP32 reference."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from saphnet import plugins
from saphnet.errors import SaphnetError

try:
    plugins.load_library()
except SaphnetError as exc:  # CI runs `make plugins` first, so there this never skips
    pytest.skip(f"plugin library not built: {exc}", allow_module_level=True)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fp16_offsets.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("fp16_offsets_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fp16_offsets_benchmark(tmp_path: Path):
    bench = _benchmark()
    assert bench.main(["-o", str(tmp_path), "--size", "32"]) == 0
    report = json.loads((tmp_path / "fp16_offsets.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert list(rows) == [name for name, *_ in bench.VARIANTS]
    assert report["pdf_layers"] > 0 and report["max_offset_px"] > 0
    # The host build in FP32 is the reference maths; every FP16 input changes the output,
    # measurably and slightly.
    assert rows["FP32 everywhere"]["max_abs"] < 1e-5
    for name, row in rows.items():
        if name != "FP32 everywhere":
            assert math.isfinite(row["psnr_db"]) and 60 < row["psnr_db"] < 140, row
            assert row["max_abs"] > rows["FP32 everywhere"]["max_abs"], row
    assert "| FP16 offset only |" in (tmp_path / "fp16_offsets.md").read_text()
    # Results are never overwritten without --force.
    with pytest.raises(SystemExit) as refused:
        bench.main(["-o", str(tmp_path), "--size", "32"])
    assert refused.value.code == 2
