"""``saphnet triton-repo``: write a model repository for a stock tritonserver."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..serve import MEMORY_BUDGET_MB
from ._args import add_memory_budget, int_at_least


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-repo",
        help="write a Triton model repository (python, onnx or tensorrt backend)",
        description="Write a Triton Inference Server model repository holding the model "
        "'saphnet': python (the Python backend running saphnet: UINT8 images, batching, "
        "tiling), onnx (the onnxruntime backend, UINT8 images) or tensorrt (a tensorrt_plan "
        "with the engine's own float I/O). Its README has the tritonserver command line.",
    )
    p.add_argument("--model", type=Path, required=True, metavar="FILE", help=".onnx or .engine")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="repository")
    p.add_argument(
        "--kind",
        choices=("python", "onnx", "tensorrt"),
        default="python",
        help="Triton backend (default: %(default)s)",
    )
    p.add_argument(
        "--max-batch",
        type=int_at_least(1),
        default=4,
        metavar="N",
        help="max_batch_size (default: %(default)s)",
    )
    p.add_argument(
        "--batch-delay-us",
        type=int_at_least(0),
        default=2000,
        metavar="US",
        help="dynamic batching max_queue_delay_microseconds (default: %(default)s)",
    )
    p.add_argument(
        "--instances",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="instance_group count (default: %(default)s)",
    )
    p.add_argument(
        "--max-size",
        type=int_at_least(16),
        default=8192,
        metavar="PX",
        help="largest image side accepted (python kind) (default: %(default)s)",
    )
    add_memory_budget(
        p,
        MEMORY_BUDGET_MB,
        "peak memory of one instance: batches are split and large images tiled to "
        "stay under it (python kind)",
    )
    p.add_argument(
        "--plugin-path",
        metavar="PATH",
        help="where libsaphnet_plugins.so lies on the Triton host (default: a placeholder "
        "in the README)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing repository")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.triton_repo import RepoOptions, write_repository

    options = RepoOptions(
        kind=args.kind,
        max_batch=args.max_batch,
        batch_delay_us=args.batch_delay_us,
        instances=args.instances,
        max_side=args.max_size,
        memory_budget_mb=args.memory_budget,
        plugin_library=args.plugin_path,
    )
    out = write_repository(args.model, args.output, options, args.force)
    print(f"wrote {out} (see {out / 'README.md'})")
    return 0
