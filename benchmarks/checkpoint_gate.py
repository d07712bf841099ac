"""May a newly trained checkpoint replace the shipped one? (see saphnet.train.gate)

    python benchmarks/checkpoint_gate.py RUN/final.safetensors --real gopro_pairs/ -o gate/

Scores the candidate and the shipped weights on the held-out synthetic set, on real
blurred/sharp pairs (GoPro layout) and on sharp photos with mild noise; prints a table,
writes gate.json and gate.md, and exits 0 only when the candidate passes all three
checks (1 otherwise), so a script can copy the file into saphnet/weights/ on success.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from saphnet.files import atomic_output
from saphnet.train.device import pick_device
from saphnet.train.gate import check_candidate
from saphnet.weights import default_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", help="the new weights (.safetensors)")
    parser.add_argument(
        "--shipped",
        default=str(default_weights()),
        help="the weights to beat (default: %(default)s)",
    )
    parser.add_argument("--real", help="GoPro-layout folder of real blurred/sharp pairs")
    parser.add_argument(
        "--count", type=int, default=16, help="held-out images (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("-o", "--out", default="gate", help="report folder (default: gate)")
    args = parser.parse_args()
    with torch.no_grad():
        result, reports = check_candidate(
            args.candidate, args.shipped, args.real, args.count, pick_device(args.device)
        )
    table = result.table()
    print(table)
    out = Path(args.out)
    with atomic_output(out / "gate.json", force=True) as tmp:
        data = {"candidate": args.candidate, "shipped": args.shipped, **result.as_dict()}
        tmp.write_text(json.dumps({**data, "reports": reports}, indent=2) + "\n")
    with atomic_output(out / "gate.md", force=True) as tmp:
        tmp.write_text(f"# Checkpoint gate\n\n```\n{table}\n```\n")
    return 0 if result.replace else 1


if __name__ == "__main__":
    sys.exit(main())
