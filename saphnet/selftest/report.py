"""Stage results of ``saphnet selftest`` as data, and the JSON, markdown and PNG made of them.

A stage is passed, failed or skipped (with the reason). Only correctness stages decide the
exit status: a slow machine is reported, never failed. Every figure in the files comes
from the stage rows of this run; nothing is filled in from elsewhere.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import check_writable, write_report_files

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
FILES = ("selftest.json", "selftest.md", "selftest.png")


class StageSkipped(Exception):
    """Raised inside a stage that cannot run here; the message is the reason."""


@dataclass
class Stage:
    """One stage: what it checked, against which tolerances, and every figure it measured."""

    name: str
    title: str
    correctness: bool
    """A failure of a correctness stage makes the exit status non-zero."""
    status: str = SKIPPED
    reason: str = ""
    seconds: float = 0.0
    tolerances: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, object]] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


@dataclass
class Report:
    header: dict[str, object]
    stages: list[Stage] = field(default_factory=list)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def exit_status(self) -> int:
        """1 when a correctness stage failed, else 0 (skips and slowness never fail)."""
        return int(any(s.correctness and s.status == FAILED for s in self.stages))


def run_stage(stage: Stage, body: Callable[[Stage], None], log) -> Stage:
    """Run ``body(stage)``; a :class:`StageSkipped` skips, any other exception fails the
    stage with its one-line reason, so one broken stage never loses the others' figures.
    ``body`` sets ``stage.status`` to FAILED itself when a check misses its tolerance."""
    start = time.perf_counter()
    log.info("selftest: %s", stage.title)
    stage.status = PASSED
    try:
        body(stage)
    except StageSkipped as exc:
        stage.status, stage.reason = SKIPPED, str(exc)
    except Exception as exc:  # the report must say what broke, and go on
        text = str(exc).strip().splitlines()
        stage.status = FAILED
        stage.reason = f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
        log.exception("selftest: %s failed", stage.title)
    stage.seconds = round(time.perf_counter() - start, 2)
    log.info(
        "selftest: %s %s%s", stage.title, stage.status, f" ({stage.reason})" if stage.reason else ""
    )
    return stage


def json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_json(report: Report) -> str:
    data = {
        "header": report.header,
        "exit_status": report.exit_status,
        "stages": [asdict(s) for s in report.stages],
    }
    return json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return (
            f"{value:.3g}"
            if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5)
            else (f"{value:.3f}".rstrip("0").rstrip("."))
        )
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return str(value).replace("|", "/")


def table(rows: list[dict[str, object]]) -> list[str]:
    """A markdown table over the union of the rows' keys, in first-seen order."""
    if not rows:
        return []
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    return lines


def to_markdown(report: Report) -> str:
    verdict = "FAILED" if report.exit_status else "passed"
    lines = [f"# saphnet selftest: {verdict}", ""]
    lines += [f"- {k}: {_cell(v)}" for k, v in report.header.items()]
    lines += ["", "| stage | status | seconds | reason |", "|---|---|---:|---|"]
    lines += [
        f"| {s.title} | {s.status} | {s.seconds:.1f} | {_cell(s.reason) if s.reason else ''} |"
        for s in report.stages
    ]
    for s in report.stages:
        lines += ["", f"## {s.title}: {s.status}", ""]
        if s.reason:
            lines += [f"Reason: {s.reason}", ""]
        if s.tolerances:
            lines += ["Tolerances:", ""]
            lines += [f"- {k}: {v}" for k, v in s.tolerances.items()]
            lines.append("")
        if s.info:
            lines += [f"- {k}: {_cell(v)}" for k, v in s.info.items()]
            lines.append("")
        lines += table(s.rows)
    return "\n".join(lines).rstrip() + "\n"


def speedups(times_ms: dict[str, float], baseline: str) -> dict[str, float | None]:
    """``baseline``'s time over each time, from one run (None when either is missing)."""
    base = times_ms.get(baseline)
    return {
        name: (base / ms if base is not None and ms and ms > 0 else None)
        for name, ms in times_ms.items()
    }


def _panels(report: Report) -> list[tuple[str, str, list[tuple[str, float, str]], float | None]]:
    """(title, x label, [(bar label, value, text on the bar)], limit line) for every stage
    with figures."""
    panels = []
    for s in report.stages:
        if s.name.startswith("kernels") and s.rows:
            worst: dict[str, float] = {}
            for r in s.rows:
                ratio = r.get("error/tolerance")
                if isinstance(ratio, float) and math.isfinite(ratio):
                    key = str(r["variant"])
                    worst[key] = max(worst.get(key, 0.0), ratio)
            bars = [(k, v, f"{v:.2f}") for k, v in worst.items()]
            panels.append((s.title, "worst max error / tolerance (pass <= 1)", bars, 1.0))
        if s.name in ("op-speed", "network", "tensorrt"):
            for group, rows in _groups(s.rows).items():
                bars = [
                    (str(r["impl"]), float(r["ms"]), _ratio_text(r.get("speedup")))
                    for r in rows
                    if isinstance(r.get("ms"), float)
                ]
                if bars:
                    title = f"{s.title}: {group}"
                    panels.append(
                        (title, "ms (median, lower is faster); speedup on the bars", bars, None)
                    )
    return panels


def _groups(rows: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    groups: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("group", "")), []).append(r)
    return groups


def _ratio_text(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, float) and math.isfinite(value) else ""


def plot(report: Report, path: Path) -> None:
    """Horizontal bars, linear axes from zero, the ratio written on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import labelled_bars

    panels = _panels(report)
    heights = [0.9 + 0.32 * max(1, len(bars)) for _, _, bars, _ in panels] or [1.5]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(10, sum(heights) + 0.6), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    if not panels:
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no figures: every measuring stage was skipped", ha="center")
    for ax, (title, xlabel, bars, limit) in zip(axes[:, 0], panels, strict=False):
        labels, values, texts = ([b[i] for b in bars] for i in range(3))
        labelled_bars(ax, labels, values, texts, xlabel, limit=limit)
        ax.set_title(title, fontsize=9)
        ax.xaxis.label.set_fontsize(8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"saphnet selftest: {report.header.get('device', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def check_outputs(folder: Path, force: bool) -> None:
    """Fail before any work when a report would be overwritten without ``force``."""
    for name in FILES:
        check_writable(folder / name, force)


def write_report(report: Report, folder: Path, force: bool) -> list[Path]:
    """selftest.json, selftest.md and selftest.png, each written atomically."""
    return write_report_files(
        folder, "selftest", to_json(report), to_markdown(report), lambda p: plot(report, p), force
    )
