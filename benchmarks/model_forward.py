"""How long does one SAPHNet forward pass take on this machine, and how big is it?

Prints parameters and MACs (from the meta-device count) and the median eager forward
time per size, and writes the same as JSON + markdown. Compare the 720x1280 time with
the paper's 0.77 s on a Titan Xp.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from saphnet.commands._args import parse_size
from saphnet.model import SAPHNet, SAPHNetConfig, read_config
from saphnet.model.complexity import measure


def time_forward(model: SAPHNet, h: int, w: int, device: str, repeats: int) -> float:
    x = torch.rand(1, 3, h, w, device=device)
    with torch.inference_mode():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", help="weights file (default: the default config)")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256)])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    config = read_config(args.weights) if args.weights else SAPHNetConfig()
    model = SAPHNet(config).eval().to(args.device)
    rows = []
    for h, w in args.sizes:
        c = measure(config, h, w)
        seconds = time_forward(model, h, w, args.device, args.repeats)
        rows.append({**c.as_dict(), "seconds": seconds})
    header = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_forward.json").write_text(json.dumps({**header, "rows": rows}, indent=2))
    lines = [
        f"device {header['device']}, {header['threads']} threads, torch {header['torch']}",
        "",
        "| size | params (M) | GMAC | PDF share | forward (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['height']}x{r['width']} | {r['parameters'] / 1e6:.2f} | {r['macs'] / 1e9:.1f} "
        f"| {100 * r['pdf_share']:.1f} % | {r['seconds']:.3f} |"
        for r in rows
    ]
    (args.out / "model_forward.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
