"""``saphnet triton-repo``: write a model repository for a stock tritonserver."""

from __future__ import annotations

import argparse
from pathlib import Path

from .serve import add_batching_options


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
    add_batching_options(p, python_kind=" (python kind)")
    p.add_argument(
        "--plugin-path",
        metavar="PATH",
        help="where libsaphnet_plugins.so lies on the Triton host, with "
        "libsaphnet_plugins_autoregister.so beside it for --kind tensorrt (default: "
        "/opt/saphnet/, written into the README)",
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
