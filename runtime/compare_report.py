"""Printing and writing compare results: a stdout table, JSON and markdown files."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from ..files import atomic_output
from .compare import ModelReport

COLUMNS = (
    "model",
    "op",
    "prec",
    "image",
    "HxW",
    "max abs",
    "mean abs",
    "PSNR dB",
    "SSIM",
    "NaN/Inf",
    "result",
)


def _rows(reports: list[ModelReport]) -> list[tuple[str, ...]]:
    rows = []
    for report in reports:
        for r in report.images:
            rows.append(
                (
                    Path(report.path).name,
                    report.pdf_op,
                    report.precision,
                    r.image,
                    f"{r.height}x{r.width}",
                    f"{r.max_abs:.2e}",
                    f"{r.mean_abs:.2e}",
                    f"{r.psnr:.1f}",
                    f"{r.ssim:.5f}",
                    str(r.nonfinite),
                    "pass" if r.passed else "FAIL: " + "; ".join(r.failures),
                )
            )
    return rows


def format_table(reports: list[ModelReport]) -> str:
    """Fixed-width table, one line per (file, image)."""
    rows = [COLUMNS, *_rows(reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_markdown(reports: list[ModelReport]) -> str:
    """The table plus each file's thresholds, for a release note."""
    out = ["# saphnet compare: PyTorch FP32 reference vs ONNX", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    out += ["| " + " | ".join(row) + " |" for row in _rows(reports)]
    out += ["", "## Thresholds", ""]
    for report in reports:
        t = report.thresholds
        out.append(
            f"- `{Path(report.path).name}` ({report.precision}, {', '.join(report.providers)}): "
            f"max abs <= {t.max_abs:g}, PSNR >= {t.min_psnr:g} dB, SSIM >= {t.min_ssim:g}, no NaN/Inf"
        )
    verdict = "all files pass" if all(r.passed for r in reports) else "some files FAIL"
    out += ["", f"**Result: {verdict}.**", ""]
    return "\n".join(out)


def _plain(value: object) -> object:
    """JSON has no NaN/Inf: write them as the strings "nan", "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(reports: list[ModelReport]) -> str:
    data = {
        "passed": all(r.passed for r in reports),
        "models": [
            {
                **asdict(r),
                "passed": r.passed,
                "worst": r.worst(),
                "images": [{**asdict(i), "passed": i.passed} for i in r.images],
            }
            for r in reports
        ],
    }
    return json.dumps(_plain(data), indent=2, allow_nan=False)


def write_reports(
    reports: list[ModelReport], folder: str | os.PathLike[str], force: bool
) -> list[Path]:
    """``compare.json`` and ``compare.md`` in ``folder``, each written atomically."""
    written = []
    for name, text in (("compare.json", to_json(reports)), ("compare.md", to_markdown(reports))):
        target = Path(folder) / name
        with atomic_output(target, force=force) as tmp:
            tmp.write_text(text)
        written.append(target)
    return written
