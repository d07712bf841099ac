"""How much memory and time does ``saphnet deblur`` take, and what tile fits a budget?

Two questions, each answered by fresh processes (peak RSS = ``VmHWM`` of a process
that did only that job):

* ``fit``: three inferences of an S x S tile per process (a tiled image runs many), for several S, on ONNX Runtime
  CPU and PyTorch CPU; a least-squares line peak = base + bytes_per_pixel * S^2 per
  backend. These are the constants of :mod:`saphnet.runtime.memory`.
* ``images``: ``saphnet deblur`` on photo-like 1080p, 4K, 12 MP (4000x3000) and 8K
  (7680x4320) images: the command as the README gives it (``auto``: no ``--backend``,
  the backend it picks and every import that costs included), ONNX Runtime with
  default tiling (the memory budget), and ONNX Runtime with ``--tile 512``: peak RSS,
  wall and CPU time of the whole command. Rows of images not measured in a run are
  kept from earlier runs, each with its date.

Writes ``deblur_memory.json``, ``deblur_memory.md`` and ``deblur_memory.png`` (bars:
linear axes from zero, ratio to ``--tile 512`` written on each bar). Slow on a small
CPU (minutes per 8K run): run it once, with the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import sys, numpy as np
from saphnet.runtime.api import open_backend
from saphnet.runtime.bench import peak_rss_mb
backend = open_backend(sys.argv[1], device="cpu")
side = int(sys.argv[2])
x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
for _ in range(3):  # ONNX Runtime plans a memory pattern on the first run, allocates it on the next
    backend.infer(x)
print(peak_rss_mb())
"""


def fit(backends: list[str], sides: list[int]) -> dict:
    """Peak RSS of one S x S inference per backend, and the fitted line."""
    from saphnet.runtime.api import cached_onnx

    cached_onnx(None)  # export outside the measurement, so ONNX Runtime children only load
    out = {}
    for backend in backends:
        points = []
        for side in sides:
            res = subprocess.run(
                [sys.executable, "-c", CHILD, backend, str(side)],
                capture_output=True,
                text=True,
                check=True,
            )
            peak = float(res.stdout.strip().splitlines()[-1])
            points.append({"side": side, "megapixels": side * side / 1e6, "peak_mb": peak})
            print(backend, points[-1], file=sys.stderr)
        px = np.array([p["side"] ** 2 for p in points], np.float64)
        mb = np.array([p["peak_mb"] for p in points], np.float64)
        slope, base = np.polyfit(px, mb, 1)
        resid = mb - (base + slope * px)
        out[backend] = {
            "points": points,
            "base_mb": round(float(base), 1),
            "bytes_per_pixel": round(float(slope) * 2**20, 1),
            "max_residual_mb": round(float(np.abs(resid).max()), 1),
        }
    return out


def _photo(h: int, w: int, path: Path) -> None:
    """A photo-like test image: the bundled sample tiled and blurred edges kept."""
    from PIL import Image

    from saphnet.data.sample import SAMPLE_BLUR

    tile = np.asarray(Image.open(SAMPLE_BLUR).convert("RGB"))
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]), 1)
    Image.fromarray(np.tile(tile, reps)[:h, :w]).save(path)


SETTINGS = (
    ("auto", []),
    ("default", ["--backend", "onnxruntime"]),
    ("--tile 512", ["--backend", "onnxruntime", "--tile", "512"]),
)
"""(label, options): the plain command; ONNX Runtime's default tiling; 512-px tiles."""


def run_deblur(image: Path, out: Path, extra: list[str]) -> dict:
    """Wall time, CPU time (user + system: less sensitive than wall time to other
    work on a shared machine) and peak RSS of one ``saphnet deblur`` process."""
    cmd = [sys.executable, "-m", "saphnet", "-q", "deblur", str(image), "-o", str(out)]
    cmd += ["--force", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {status}")
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mb": round(usage.ru_maxrss / 1024, 0),
    }


def images(sizes: list[tuple[str, int, int]], date: str) -> list[dict]:
    from saphnet.runtime.api import cached_onnx

    cached_onnx(None)  # export outside the measurement, as a second run of the command finds it
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, h, w in sizes:
            src = Path(tmp) / f"{name}.png"
            _photo(h, w, src)
            for label, extra in SETTINGS:
                row = {"image": name, "size": f"{h}x{w}", "setting": label, "date": date}
                row.update(run_deblur(src, Path(tmp) / "out.png", extra))
                rows.append(row)
                print(row, file=sys.stderr)
    return rows


def markdown(report: dict) -> str:
    lines = ["# saphnet deblur: peak memory and time", ""]
    lines += [f"- {k}: {v}" for k, v in report["header"].items()]
    if report.get("fit"):
        lines += ["", "## Peak RSS of three S x S inferences (fresh process)", ""]
        lines += ["| backend | S | peak MB |", "|---|---|---|"]
        for backend, f in report["fit"].items():
            lines += [f"| {backend} | {p['side']} | {p['peak_mb']:.0f} |" for p in f["points"]]
        lines += [
            "",
            "| backend | base MB | bytes per pixel | max residual MB |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {b} | {f['base_mb']} | {f['bytes_per_pixel']:.0f} | {f['max_residual_mb']} |"
            for b, f in report["fit"].items()
        ]
    if report.get("images"):
        h = report["header"]
        lines += ["", "## `saphnet deblur`, whole command", ""]
        lines += [
            f"{h['cpu']}; onnxruntime {h['onnxruntime']}; shipped weights; peak RSS from "
            f"`wait4`; load average {h.get('load average at start', 'not recorded')} at the "
            "start of the last run. auto: the plain command (`--backend auto`, which picks "
            "ONNX Runtime on a CPU); default and `--tile 512`: `--backend onnxruntime`.",
            "",
            "| image | HxW | setting | peak MB | wall s | CPU s | measured |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['image']} | {r['size']} | {r['setting']} | {r['peak_mb']:.0f} | {r['seconds']} "
            f"| {r['cpu_seconds']} | {r['date'][:10]} |"
            for r in report["images"]
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Peak memory and time per image, default against ``--tile 512``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saphnet.plots import ratio_bars

    rows = report["images"]
    names = list(dict.fromkeys(r["image"] for r in rows))
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 1.6 + 1.4 * len(names)), squeeze=False)
    for (ax_mem, ax_time), name in zip(axes, names, strict=True):
        mine = [r for r in rows if r["image"] == name]
        labels = [r["setting"] for r in mine]
        ref = labels.index("--tile 512")
        ratio_bars(ax_mem, labels, [r["peak_mb"] for r in mine], "peak RSS MB", ref, "MB")
        ratio_bars(ax_time, labels, [r["cpu_seconds"] for r in mine], "CPU seconds", ref, "s")
        ax_mem.set_title(f"{name} {mine[0]['size']}: memory", fontsize=9)
        ax_time.set_title(f"{name} {mine[0]['size']}: CPU time", fontsize=9)
    fig.suptitle(f"saphnet deblur, ONNX Runtime: {report['header']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        choices=("fit", "images", "all", "report"),
        help="which measurement (report: rewrite the .md and .png from the JSON)",
    )
    parser.add_argument("--backends", default="onnxruntime,torch", help="for fit")
    parser.add_argument("--sides", default="256,512,768,1024", help="tile sides for fit")
    parser.add_argument(
        "--sizes",
        default="1080p:1080x1920,4K:2160x3840,12MP:3000x4000,8K:4320x7680",
        help="NAME:HxW list for images",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from saphnet.files import atomic_output
    from saphnet.runtime.bench import header

    json_path = args.output / "deblur_memory.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for row in report.get("images", []):  # rows of earlier runs keep their run's date
        row.setdefault("date", report["header"]["date"])
    if args.what != "report":
        report["header"] = header()
        report["header"]["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    if args.what in ("fit", "all"):
        sides = [int(s) for s in args.sides.split(",")]
        report["fit"] = fit(args.backends.split(","), sides)
    if args.what in ("images", "all"):
        sizes = []
        for item in args.sizes.split(","):
            name, hw = item.split(":")
            h, w = (int(v) for v in hw.split("x"))
            sizes.append((name, h, w))
        new = images(sizes, report["header"]["date"])
        measured = {r["image"] for r in new}
        kept = [r for r in report.get("images", []) if r["image"] not in measured]
        pixels = {r["image"]: math.prod(int(v) for v in r["size"].split("x")) for r in kept + new}
        report["images"] = sorted(kept + new, key=lambda r: pixels[r["image"]])  # stable
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_output(json_path, force=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_output(args.output / "deblur_memory.md", force=True) as tmp:
        tmp.write_text(markdown(report))
    if report.get("images"):
        with atomic_output(args.output / "deblur_memory.png", force=True) as tmp:
            plot(report, tmp)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
