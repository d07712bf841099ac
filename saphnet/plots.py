"""Bar charts for benchmark reports, drawn one honest way everywhere.

Linear axes that start at zero, so bar lengths compare like the numbers do (a log
axis made a 2x gap look like 20x), and the ratio to a reference bar written on each
bar, so nobody has to measure bars to read the result. Every bar chart of the project
(``saphnet bench``, ``benchmarks/``) goes through :func:`ratio_bars`.
"""

from __future__ import annotations

from collections.abc import Sequence


def ratio_bars(
    ax,
    labels: Sequence[str],
    values: Sequence[float],
    xlabel: str,
    reference: int = 0,
    unit: str = "",
    whiskers: Sequence[float] | None = None,
) -> None:
    """Horizontal bars of ``values`` on a linear axis from zero; each bar is labelled
    ``value unit, ratio x`` where ratio is value / values[reference] (the reference
    bar reads ``1.00x (ref)``). ``whiskers``: optional one-sided error bars (e.g. p90 - p50)."""
    ref = values[reference]
    xerr = None if whiskers is None else [[0.0] * len(values), list(whiskers)]
    bars = ax.barh(list(labels), list(values), xerr=xerr, color="tab:blue", capsize=2)
    ax.set_xscale("linear")
    top = (
        max((v + (whiskers[i] if whiskers else 0.0)) for i, v in enumerate(values)) if values else 1
    )
    ax.set_xlim(0, top * 1.45 if top > 0 else 1)
    for i, (bar, value) in enumerate(zip(bars, values, strict=True)):
        ratio = value / ref if ref else float("nan")
        tag = "1.00× (ref)" if i == reference else f"{ratio:.2f}×"
        ax.text(
            bar.get_width() + (whiskers[i] if whiskers else 0.0) + top * 0.02,
            bar.get_y() + bar.get_height() / 2,
            f"{value:.3g} {unit}, {tag}".replace(" ,", ","),
            va="center",
            fontsize=8,
        )
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
