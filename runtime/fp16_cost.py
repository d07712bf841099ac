"""The measured cost of FP16 PDF layers on TensorRT's DeformConv, for ``saphnet build``.

TensorRT's built-in ModulatedDeformConv2d plugin holds sample coordinates and GEMM
sums in half precision, so its FP16 error grows with the image width; our plugin keeps
both in FP32. ``benchmarks/fp16_fidelity.py --table`` measures both on whole networks
and writes :data:`TABLE` (network, size, PSNR of each against FP32); an FP16 build whose
PDF layers will be TensorRT's DeformConv warns with the figures at the profile's width.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TABLE = Path(__file__).with_name("fp16_fidelity_table.json")
DEFORMCONV_IMPLEMENTATIONS = ("function-deformconv", "tensorrt-deformconv")
"""Sidecar ``pdf_implementation`` values that run the PDF layers on TensorRT's DeformConv."""


def table_from_rows(rows: list[dict]) -> list[dict]:
    """The package table from the benchmark's rows: one entry per (network, size)."""
    entries: dict[tuple[str, str], dict] = {}
    for row in rows:
        height, width = (int(v) for v in row["size"].split("x"))
        entry = entries.setdefault(
            (row["network"], row["size"]),
            {"network": row["network"], "height": height, "width": width},
        )
        entry[f"{row['implementation']}_psnr_db"] = row["psnr_db"]
    return sorted(entries.values(), key=lambda e: (e["network"], e["width"]))


def load_table(path: Path = TABLE) -> list[dict]:
    """The table, or [] where it is missing or unreadable (the warning then says less)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def deformconv_cost(width: int, table: list[dict]) -> str | None:
    """The measured FP16 PSNR of each network at the narrowest measured width >= ``width``
    (the widest one when ``width`` exceeds them all), as one clause; None without data."""
    parts = []
    for network in dict.fromkeys(e["network"] for e in table):
        entries = [e for e in table if e["network"] == network]
        wider = [e for e in entries if e["width"] >= width]
        entry = (
            min(wider, key=lambda e: e["width"])
            if wider
            else max(entries, key=lambda e: e["width"])
        )
        parts.append(
            f"{network} network at {entry['height']}x{entry['width']}: "
            f"{entry['tensorrt-deformconv_psnr_db']:.1f} dB PSNR against FP32 "
            f"(our plugin {entry['saphnet-plugin_psnr_db']:.1f} dB)"
        )
    return "; ".join(parts) or None


def warn_deformconv_fp16(precision: str, implementation: str, max_width: int) -> None:
    """Warn when an FP16 build, or an INT8 one (its float layers, the PDF layers among
    them, run in FP16), puts the PDF layers on TensorRT's DeformConv."""
    if precision not in ("fp16", "int8") or implementation not in DEFORMCONV_IMPLEMENTATIONS:
        return
    cost = deformconv_cost(max_width, load_table())
    log.warning(
        "FP16 PDF layers on TensorRT's DeformConv keep sample coordinates and sums in half "
        "precision (in steps of 0.5 px past 512, 1 px past 1024)%s; for FP32 coordinates build "
        "the custom op form with our plugin (make plugins, --plugins LIB)",
        f"; measured for images up to {max_width} px wide: {cost}" if cost else "",
    )
