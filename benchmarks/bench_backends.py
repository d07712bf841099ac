"""Which backend is fastest, at what memory, in FP32 and FP16, per PDF op form and size?

The same as ``saphnet bench`` (same options): PyTorch eager and torch.compile as
baselines, ONNX Runtime per op form, TensorRT per op form where installed; writes
bench.json, bench.md and bench.png. On a small CPU, pass e.g. ``--sizes 256x256``.
"""

from __future__ import annotations

import sys

from saphnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
