"""What do INT8 files cost in fidelity and buy in speed on ONNX Runtime CPU, and what
``saphnet quantize --min-psnr`` default is right?

Four files of the shipped network, side by side in one process: the FP32 and FP16
exports (custom op) and ``saphnet quantize`` of the FP32 one with its defaults (the
shipped sample and held-out photos: 4 tiles of 256², ``--min-psnr`` 40) for
``--target cpu`` (U8S8 on Conv) and ``--target tensorrt`` (S8S8 on Conv,
ConvTranspose, MatMul; the layout TensorRT takes, run here by ONNX Runtime CPU).

* speed at 512x512 and 720x1280: one image per call, the variants' repetitions
  interleaved (round r runs every file once) so machine load hits all alike; median
  and ratio to FP32; the load average before and after is recorded;
* fidelity against FP32 (PSNR, max abs) on the held-out set (``eval --heldout``:
  chelsea and coffee, whole, blurred with seed 1234; the calibration blurred them
  with another seed) and on real camera photos (scikit-image's astronaut, rocket,
  motorcycle, centre 384x384, as a camera gives them);
* the deblurring gain against ground truth (PSNR(output, sharp) - PSNR(blurred,
  sharp)) on the held-out set, per precision;
* sensitivity (tensorrt target): each layer quantized alone, then PSNR and gain with
  the k costliest layers kept float, the measurements behind the ``--min-psnr``
  default.

Writes quantization.json, .md and .png (saphnet.files.write_report_files).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from saphnet.data.datasets import builtin_image, heldout_dataset
from saphnet.export.calibration import calibration_tiles, default_calibration_images
from saphnet.export.quantize import (
    DEFAULT_MIN_PSNR,
    TARGETS,
    Evaluator,
    Quantizer,
    candidate_layers,
    float_layer_order,
    layer_label,
    quantize_onnx,
)
from saphnet.files import write_report_files
from saphnet.runtime.api import cached_onnx, deblur
from saphnet.runtime.onnxruntime_backend import OnnxRuntimeBackend

log = logging.getLogger("quantization")
PHOTOS = ("astronaut", "rocket", "motorcycle_left")
SIZES = ((512, 512), (720, 1280))
KEPT = (0, 2, 8, 32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else -10 * math.log10(mse)


def centre(image: np.ndarray, side: int = 384) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[y : y + side, x : x + side]


def load() -> float:
    return os.getloadavg()[0]


def speed(files: dict[str, Path], reps: int) -> list[dict]:
    """Median ms per image per file and size, repetitions interleaved across files."""
    rows = []
    backends = {name: OnnxRuntimeBackend(path) for name, path in files.items()}
    for h, w in SIZES:
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        for backend in backends.values():
            backend.infer(x)  # warm-up: ONNX Runtime plans its memory on the first call
        times: dict[str, list[float]] = {name: [] for name in files}
        before = load()
        for _ in range(reps):
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.infer(x)
                times[name].append((time.perf_counter() - start) * 1000)
        after = load()
        fp32 = statistics.median(times["fp32"])
        for name, t in times.items():
            rows.append(
                {
                    "size": f"{h}x{w}",
                    "file": name,
                    "median_ms": statistics.median(t),
                    "min_ms": min(t),
                    "speed_vs_fp32": fp32 / statistics.median(t),
                    "reps": reps,
                    "load_before": before,
                    "load_after": after,
                }
            )
        log.info("speed %dx%d: %s", h, w, {r["file"]: round(r["median_ms"]) for r in rows[-4:]})
    for backend in backends.values():
        backend.close()
    return rows


def fidelity(files: dict[str, Path], heldout, photos) -> dict[str, dict]:
    """Per file: PSNR/max abs vs FP32 on the held-out set and the photos, gain vs truth."""
    outputs: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, path in files.items():
        backend = OnnxRuntimeBackend(path)
        outputs[name] = {
            "heldout": [deblur(backend, blurred) for blurred, _ in heldout],
            "photos": [deblur(backend, photo) for photo in photos],
        }
        backend.close()
    result = {}
    for name, out in outputs.items():
        row: dict[str, float] = {}
        for group in ("heldout", "photos") if photos else ("heldout",):
            ref, mine = outputs["fp32"][group], out[group]
            sq = sum(
                float(np.sum((a.astype(np.float64) - b) ** 2))
                for a, b in zip(mine, ref, strict=True)
            )
            mse = sq / sum(r.size for r in ref)
            row[f"{group}_psnr_vs_fp32"] = math.inf if mse == 0 else -10 * math.log10(mse)
            row[f"{group}_max_abs_vs_fp32"] = max(
                float(np.max(np.abs(a - b))) for a, b in zip(mine, ref, strict=True)
            )
        gains = [
            psnr(o, sharp) - psnr(blurred, sharp)
            for o, (blurred, sharp) in zip(out["heldout"], heldout, strict=True)
        ]
        row["heldout_psnr_vs_truth"] = statistics.mean(
            psnr(o, sharp) for o, (_, sharp) in zip(out["heldout"], heldout, strict=True)
        )
        row["heldout_gain_db"] = statistics.mean(gains)
        result[name] = row
    return result


def sensitivity(fp32: Path, tiles, heldout, folder: Path) -> dict:
    """Each tensorrt-target layer alone, then the k costliest kept float."""
    spec = TARGETS["tensorrt"]
    import onnx

    model = onnx.load(str(fp32), load_external_data=False)
    layers = candidate_layers(model, spec)
    labels = {n.name: f"{layer_label(n)} ({n.op_type})" for n in layers}
    quantizer, evaluator = Quantizer(fp32, spec, tiles, folder), Evaluator(fp32, tiles)
    quantizer.write(folder / "all.onnx")
    alone = {}
    for i, node in enumerate(layers):
        path = quantizer.write(quantizer.scratch(), only=[node.name])
        alone[node.name] = evaluator.score(path)[0]
        path.unlink()
        if i % 20 == 0:
            log.info("sensitivity %d/%d", i + 1, len(layers))
    order = float_layer_order(alone)
    curve = {}
    for k in KEPT:
        path = quantizer.write(folder / f"keep{k}.onnx", exclude=order[:k])
        calib = evaluator.score(path)[0]
        row = fidelity({"fp32": fp32, "int8": path}, heldout, [])["int8"]
        curve[k] = {
            "calibration_psnr_vs_fp32": calib,
            "heldout_psnr_vs_fp32": row["heldout_psnr_vs_fp32"],
            "heldout_gain_db": row["heldout_gain_db"],
        }
        log.info("kept %d: %s", k, curve[k])
    return {
        "layers": len(layers),
        "worst": [{"layer": labels[n], "psnr_alone": alone[n]} for n in order[:8]],
        "best": [{"layer": labels[n], "psnr_alone": alone[n]} for n in order[-3:]],
        "kept_float_curve": curve,
    }


def to_markdown(data: dict) -> str:
    h = data["header"]
    lines = ["# INT8 against FP16 and FP32 on ONNX Runtime CPU", ""]
    lines += [f"- {k}: {v}" for k, v in h.items()]
    lines += ["", "## Speed (median ms per image, ratio = FP32 ms / file ms)", ""]
    lines += ["| size | file | median ms | min ms | speed vs FP32 |", "|---|---|---|---|---|"]
    for r in data["speed"]:
        lines.append(
            f"| {r['size']} | {r['file']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['speed_vs_fp32']:.2f}× |"
        )
    loads = [
        f"{r['size']}: {r['load_before']:.1f} → {r['load_after']:.1f}" for r in data["speed"][::4]
    ]
    lines += ["", "Load average (1 min) before → after: " + "; ".join(loads), ""]
    lines += ["## Fidelity against FP32 and deblurring gain against ground truth", ""]
    lines += [
        "| file | held-out PSNR vs FP32 | held-out max abs | photos PSNR vs FP32 | photos max abs | held-out PSNR vs truth | gain dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["fidelity"].items():
        vs = "ref" if name == "fp32" else f"{r['heldout_psnr_vs_fp32']:.1f} dB"
        pv = "ref" if name == "fp32" else f"{r['photos_psnr_vs_fp32']:.1f} dB"
        lines.append(
            f"| {name} | {vs} | {r['heldout_max_abs_vs_fp32']:.3g} | {pv} | {r['photos_max_abs_vs_fp32']:.3g} | "
            f"{r['heldout_psnr_vs_truth']:.2f} | {r['heldout_gain_db']:+.2f} |"
        )
    lines += ["", "## quantize reports", ""]
    for name, q in data["quantize"].items():
        lines.append(
            f"- {name}: {q['quantized_layers']} layers INT8, {len(q['kept_float'])} kept float, "
            f"{q['psnr']:.1f} dB vs FP32 on the calibration tiles (every layer INT8: "
            f"{q['all_int8_psnr']:.1f} dB), {q['seconds']:.0f} s"
        )
    s = data.get("sensitivity")
    if s:
        lines += ["", f"## Sensitivity (tensorrt target, {s['layers']} layers)", ""]
        lines += [
            "Costliest layers, each quantized alone (PSNR vs FP32 on the calibration tiles):",
            "",
        ]
        lines += [f"- {w['layer']}: {w['psnr_alone']:.1f} dB" for w in s["worst"]]
        lines += [
            "",
            "| layers kept float | calibration PSNR vs FP32 | held-out PSNR vs FP32 | held-out gain dB |",
        ]
        lines += ["|---|---|---|---|"]
        for k, r in s["kept_float_curve"].items():
            lines.append(
                f"| {k} | {r['calibration_psnr_vs_fp32']:.1f} | {r['heldout_psnr_vs_fp32']:.1f} | {r['heldout_gain_db']:+.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saphnet.plots import labelled_bars, ratio_bars

    fig, axes = plt.subplots(3, 1, figsize=(8, 8))
    for ax, (h, w) in zip(axes[:2], SIZES, strict=True):
        rows = [r for r in data["speed"] if r["size"] == f"{h}x{w}"]
        ratio_bars(
            ax,
            [r["file"] for r in rows],
            [r["median_ms"] for r in rows],
            "median ms; ratio to FP32",
            0,
            "ms",
        )
        ax.set_title(f"{h}x{w}, ONNX Runtime CPU")
    names = [n for n in data["fidelity"] if n != "fp32"]
    values = [data["fidelity"][n]["heldout_psnr_vs_fp32"] for n in names]
    labelled_bars(
        axes[2],
        names,
        values,
        [f"{v:.1f} dB" for v in values],
        "held-out PSNR vs FP32 (dB)",
        DEFAULT_MIN_PSNR,
    )
    axes[2].set_title("fidelity (dashed: quantize's --min-psnr default)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--reps", type=int, default=5, help="timed calls per file and size")
    parser.add_argument("--heldout", type=int, default=4, help="held-out images")
    parser.add_argument("--no-sensitivity", action="store_true")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fp32, fp16 = cached_onnx(None), cached_onnx(None, precision="fp16")
    tiles = calibration_tiles(default_calibration_images(), 8)
    pairs = heldout_dataset(crop=None, count=args.heldout)  # indexable, not iterable
    heldout = [pairs[i] for i in range(len(pairs))]
    photos = [centre(builtin_image(n)) for n in PHOTOS]
    data: dict = {
        "header": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": f"{_cpu()}, {os.cpu_count()} cores",
            "onnxruntime": __import__("onnxruntime").__version__,
            "calibration": f"default set, {len(tiles)} tiles of 256x256 (all it holds)",
            "min_psnr": DEFAULT_MIN_PSNR,
        },
        "quantize": {},
    }
    with tempfile.TemporaryDirectory(prefix="saphnet-int8-") as folder:
        files = {"fp32": fp32, "fp16": fp16}
        for target in ("cpu", "tensorrt"):
            out = Path(folder) / f"int8-{target}.onnx"
            report = quantize_onnx(fp32, out, tiles, target, force=True)
            data["quantize"][f"int8-{target}"] = json.loads(report.as_metadata())
            files[f"int8-{target}"] = out
        data["fidelity"] = fidelity(files, heldout, photos)
        data["speed"] = speed(files, args.reps)
        if not args.no_sensitivity:
            work = Path(folder) / "sensitivity"
            work.mkdir()
            data["sensitivity"] = sensitivity(fp32, tiles, heldout, work)
    data["header"]["load average at the end"] = f"{load():.1f}"
    text = json.dumps(_finite(data), indent=2, allow_nan=False)
    for path in write_report_files(
        args.output, "quantization", text, to_markdown(data), lambda p: plot(data, p), args.force
    ):
        print(path)
    return 0


def _finite(value: object) -> object:
    """JSON has no Infinity: FP32 against itself is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _cpu() -> str:
    with open("/proc/cpuinfo") as fh:
        name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    with open("/proc/cpuinfo") as fh:
        flags = next((ln for ln in fh if ln.startswith("flags")), "")
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2, no VNNI" if "avx2" in flags else "?"
    return f"{name} ({isa})"


if __name__ == "__main__":
    raise SystemExit(main())
