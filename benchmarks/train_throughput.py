"""How fast does training run on this device, and what do AMP, channels-last and
torch.compile each add?

    python benchmarks/train_throughput.py --device cuda            # the gpu-short recipe
    python benchmarks/train_throughput.py --device cpu --tiny      # a smoke run on CPU

For each variant, the same network and batches (gpu-short's, device-synthesised blur)
run ``--steps`` timed steps after ``--warmup`` untimed ones (compilation, cuDNN
autotuning); reports steps/s, images/s, the GPU's busy fraction (kernel time over wall
time, torch.profiler) and peak memory. Writes train_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from saphnet.data.datasets import BUILTIN_TRAIN, TRAIN_AUGMENT, TRAIN_BLUR, builtin_images
from saphnet.data.device_batches import DeviceBlurBatches
from saphnet.files import atomic_output
from saphnet.model import SAPHNetConfig
from saphnet.train.device import BusyMeter, describe, memory_gib, pick_device
from saphnet.train.presets import GPU_SHORT_CONFIG, RECIPES
from saphnet.train.settings import TrainSettings
from saphnet.train.trainer import Trainer

TINY = SAPHNetConfig(
    widths=(8, 16, 32),
    plain_resblocks=1,
    encoder_resblocks=1,
    decoder_resblocks=1,
    attention_maps=4,
    pdf_kernel=3,
)
VARIANTS = {
    "fp32": {"amp": False, "channels_last": False, "compile": False},
    "amp": {"amp": True, "channels_last": False, "compile": False},
    "amp+nhwc": {"amp": True, "channels_last": True, "compile": False},
    "amp+nhwc+compile": {"amp": True, "channels_last": True, "compile": True},
}


def run_variant(name, config, base, source, device, steps, warmup) -> dict:
    settings = replace(base, **VARIANTS[name])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, settings, source, None, tmp, device)
        for i in range(warmup):
            trainer.step(*source.batch(i))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        meter = BusyMeter() if device.type == "cuda" else None
        if meter:
            meter.start()
        start = time.perf_counter()
        for i in range(warmup, warmup + steps):
            trainer.step(*source.batch(i))
        wall = time.perf_counter() - start
        busy = meter.stop(wall) if meter else None
    rate = steps / wall
    return {
        "variant": name,
        "compiled": trainer.forward is not trainer.model,
        "steps_per_s": rate,
        "images_per_s": rate * settings.batch_size,
        "gpu_busy_fraction": busy,
        "gpu_memory_gib": memory_gib(device),
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (default: 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (default: 5)")
    parser.add_argument("--tiny", action="store_true", help="tiny network, 32 px crops, batch 2")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated (default: all)"
    )
    parser.add_argument(
        "-o", "--out", default="benchmarks/results", help="folder (default: %(default)s)"
    )
    args = parser.parse_args()
    device = pick_device(args.device)
    recipe = {k: v for k, v in RECIPES["gpu-short"].items() if k != "time_budget_s"}
    base = TrainSettings(**recipe)  # type: ignore[arg-type]
    config = GPU_SHORT_CONFIG
    if args.tiny:
        base, config = replace(base, batch_size=2, crop=32), TINY
    source = DeviceBlurBatches(
        builtin_images(BUILTIN_TRAIN),
        base.crop,
        base.batch_size,
        0,
        device,
        TRAIN_BLUR,
        pool_size=64 if args.tiny else 2048,
        min_scale=float(TRAIN_AUGMENT["min_scale"]),
    )
    rows = [
        run_variant(v, config, base, source, device, args.steps, args.warmup)
        for v in args.variants.split(",")
    ]
    head = "| variant | compiled | steps/s | images/s | GPU busy | GPU memory |\n|---|---|---|---|---|---|"
    lines = [
        f"| {r['variant']} | {r['compiled']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.1f} "
        f"| {_pct(r['gpu_busy_fraction'])} | {_gib(r['gpu_memory_gib'])} |"
        for r in rows
    ]
    table = "\n".join([head, *lines])
    print(f"{describe(device)}, batch {base.batch_size} x {base.crop}^2\n{table}")
    out = Path(args.out)
    meta = {"device": describe(device), "batch": base.batch_size, "crop": base.crop}
    with atomic_output(out / "train_throughput.json", force=True) as tmp:
        tmp.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    with atomic_output(out / "train_throughput.md", force=True) as tmp:
        tmp.write_text(f"# Training throughput on {meta['device']}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
