"""Bar charts for benchmark reports, drawn one honest way everywhere.

Linear axes that start at zero, so bar lengths compare like the numbers do (a log
axis made a 2x gap look like 20x), and the ratio to a reference bar written on each
bar, so nobody has to measure bars to read the result. Every bar chart of the project
(``saphnet bench``, the self-test, ``benchmarks/``) goes through this module.
"""

from __future__ import annotations

from collections.abc import Sequence


def labelled_bars(
    ax,
    labels: Sequence[str],
    values: Sequence[float],
    texts: Sequence[str],
    xlabel: str,
    limit: float | None = None,
    whiskers: Sequence[float] | None = None,
) -> None:
    """Horizontal bars of ``values`` on a linear axis from zero, ``texts[i]`` written
    after bar i; ``limit``: a dashed red line (a tolerance); ``whiskers``: optional
    one-sided error bars (e.g. p90 - p50)."""
    xerr = None if whiskers is None else [[0.0] * len(values), list(whiskers)]
    bars = ax.barh(list(labels), list(values), xerr=xerr, color="tab:blue", capsize=2)
    ax.set_xscale("linear")
    ends = [v + (whiskers[i] if whiskers else 0.0) for i, v in enumerate(values)]
    top = max([*ends, limit or 0.0, 0.0])
    ax.set_xlim(0, top * 1.45 if top > 0 else 1)
    if limit is not None:
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1)
    for bar, end, text in zip(bars, ends, texts, strict=True):
        if text:
            ax.text(
                end + top * 0.02,
                bar.get_y() + bar.get_height() / 2,
                text,
                va="center",
                fontsize=8,
            )
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()


def ratio_bars(
    ax,
    labels: Sequence[str],
    values: Sequence[float],
    xlabel: str,
    reference: int = 0,
    unit: str = "",
    whiskers: Sequence[float] | None = None,
) -> None:
    """:func:`labelled_bars` with each bar labelled ``value unit, ratio x`` where ratio
    is value / values[reference] (the reference bar reads ``1.00x (ref)``)."""
    ref = values[reference]
    texts = []
    for i, value in enumerate(values):
        tag = "1.00× (ref)" if i == reference else f"{value / ref if ref else float('nan'):.2f}×"
        shown = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"  # not 1e+03
        texts.append(f"{shown} {unit}, {tag}".replace(" ,", ","))
    labelled_bars(ax, labels, values, texts, xlabel, whiskers=whiskers)


def grouped_bars(
    ax,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    reference: float,
    reference_label: str,
) -> None:
    """Vertical bars of several series per group on a linear axis from zero, with a
    dashed line at ``reference`` and each bar's ratio to it written on the bar."""
    width = 0.8 / max(1, len(series))
    top = max([reference, *(v for values in series.values() for v in values)])
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, list(values), width, label=name)
        for bar, value in zip(bars, values, strict=True):
            ratio = value / reference if reference else float("nan")
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                value + top * 0.01,
                f"{ratio:.2f}×",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )
    ax.axhline(reference, color="k", ls="--", label=f"{reference_label} (1.00×)")
    ax.set_yscale("linear")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.45 * top if top > 0 else 1)
