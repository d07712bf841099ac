"""``saphnet serve``: serve a model on Triton Inference Server (PyTriton)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..serve import DEFAULT_MAX_SIDE, MEMORY_BUDGET_MB
from ._args import add_memory_budget, int_at_least, port


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model on Triton Inference Server (HTTP, gRPC, metrics)",
        description="Serve SAPHNet as the Triton model 'saphnet' (input 'image' UINT8 "
        "[batch, H, W, 3] RGB, output 'deblurred' of the same shape) on the tritonserver "
        "PyTriton ships. Same-size requests are batched; large images are tiled. "
        "Ctrl-C or SIGTERM stops it. Needs pip install 'saphnet[serve]'.",
    )
    p.add_argument(
        "--model", type=Path, metavar="FILE", help=".onnx or .engine file (default: run --weights)"
    )
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "tensorrt"),
        default="auto",
        help="inference backend (default: %(default)s)",
    )
    p.add_argument(
        "--weights", type=Path, metavar="FILE", help="SAPHNet .safetensors (default: shipped)"
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="torch/ONNX Runtime (default: %(default)s)",
    )
    p.add_argument(
        "--plugins", type=Path, metavar="LIB", help="saphnet plugin library (default: installed)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0: every interface) (default: %(default)s)",
    )
    p.add_argument(
        "--http-port",
        type=port,
        default=8000,
        metavar="P",
        help="HTTP port (default: %(default)s)",
    )
    p.add_argument(
        "--grpc-port",
        type=port,
        default=8001,
        metavar="Q",
        help="gRPC port (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=port,
        default=8002,
        metavar="R",
        help="metrics port (default: %(default)s)",
    )
    add_batching_options(p)
    p.set_defaults(func=run)


def add_batching_options(p: argparse.ArgumentParser, python_kind: str = "") -> None:
    """How the Triton model batches, tiles and refuses requests: the options
    ``saphnet serve`` and ``saphnet triton-repo`` share. ``python_kind`` is appended
    to the help of those only a python-kind repository uses."""
    p.add_argument(
        "--max-batch",
        type=int_at_least(1),
        default=4,
        metavar="N",
        help="largest batch the dynamic batcher forms, Triton's max_batch_size "
        "(1: dynamic batching off) (default: %(default)s)",
    )
    p.add_argument(
        "--batch-delay-us",
        type=int_at_least(0),
        default=2000,
        metavar="US",
        help="how long a request may wait for others to batch with, Triton's "
        "max_queue_delay_microseconds (default: %(default)s)",
    )
    p.add_argument(
        "--instances",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="model instances, Triton's instance_group count (default: %(default)s)",
    )
    p.add_argument(
        "--max-size",
        type=int_at_least(16),
        default=DEFAULT_MAX_SIDE,
        metavar="PX",
        help=f"largest image side accepted; larger requests get an error{python_kind} "
        "(default: %(default)s)",
    )
    add_memory_budget(
        p,
        MEMORY_BUDGET_MB,
        "peak memory of one instance (estimated per backend): batches are split and "
        f"large images tiled to stay under it{python_kind}",
    )


def run(args: argparse.Namespace) -> int:
    from ..serve.server import ServeOptions, serve

    options = ServeOptions(
        model=args.model,
        backend=args.backend,
        weights=args.weights,
        device=args.device,
        plugins=args.plugins,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        batch_delay_us=args.batch_delay_us,
        instances=args.instances,
        max_side=args.max_size,
        memory_budget_mb=args.memory_budget,
    )
    serve(options)
    return 0
