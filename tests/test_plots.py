"""Bar charts: linear axes from zero with the ratio written on each bar, one helper for
all of them (issue 15, item 11)."""

from __future__ import annotations

import re
from pathlib import Path

from saphnet.runtime.bench import BenchReport, Case, Result, figure

ROOT = Path(__file__).resolve().parent.parent


def _result(backend: str, op: str, p50: float) -> Result:
    return Result(Case(backend, "fp32", op, 256, 256, "cpu"), p50_ms=p50, p90_ms=p50 * 1.1)


def test_bench_png_is_linear_from_zero_with_ratios_on_the_bars() -> None:
    import matplotlib.pyplot as plt

    report = BenchReport(
        {"cpu": "test cpu"},
        [_result("onnxruntime", "custom", 85.0), _result("torch", "-", 170.0)],
    )
    fig = figure(report)
    try:
        (ax,) = fig.axes
        assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
        texts = [t.get_text() for t in ax.texts]
        assert any("0.50×" in t and "85" in t for t in texts)  # ORT at half PyTorch's time
        assert any("1.00× (ref)" in t and "170" in t for t in texts)  # PyTorch FP32 is the ref
        widths = sorted(p.get_width() for p in ax.patches)
        assert widths == [85.0, 170.0]  # bar lengths are the numbers, not their logs
    finally:
        plt.close(fig)


def test_every_bar_chart_goes_through_the_shared_helper() -> None:
    """No plotting code draws bars or log axes itself (so a new chart cannot slip back
    to log-scale bars)."""
    offenders = []
    for path in [
        *ROOT.glob("saphnet/**/*.py"),
        *ROOT.glob("runtime/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("export/**/*.py"),
    ]:
        if path.name == "plots.py":
            continue
        text = path.read_text()
        if re.search(r"\.bar[h]?\(|set_[xy]scale\(\s*[\"']log|loglog\(|semilog[xy]\(", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"draw bar charts with saphnet.plots.ratio_bars: {offenders}"
