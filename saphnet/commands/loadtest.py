"""``saphnet loadtest``: throughput and latency of a running server per concurrency."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..serve import MEMORY_BUDGET_MB
from ._args import add_memory_budget, float_at_least, int_at_least, parse_size

log = logging.getLogger(__name__)


def concurrency_list(text: str) -> list[int]:
    """``1,4,16`` -> [1, 4, 16], each at least 1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,4,16") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive counts, e.g. 1,4,16")
    return values


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="measure a running saphnet serve (throughput, p50/p95/p99 latency, errors)",
        description="Send real images to a Triton server's 'saphnet' model at each concurrency, "
        "bounded in requests and time; the first response is checked against the local "
        "result of --model. Writes loadtest.json, loadtest.md and loadtest.png.",
    )
    p.add_argument("url", metavar="URL", help="http://HOST:PORT or grpc://HOST:PORT")
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=[1, 4, 16],
        metavar="LIST",
        help="concurrent requests per level, comma-separated (default: 1,4,16)",
    )
    p.add_argument(
        "--requests",
        type=int_at_least(1),
        default=100,
        metavar="N",
        help="requests per level (default: %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=float_at_least(0.1),
        default=60.0,
        metavar="S",
        help="time limit per level, seconds (default: %(default)s)",
    )
    p.add_argument(
        "--size",
        type=parse_size,
        default=(256, 256),
        metavar="HxW",
        help="image size sent (default: 256x256)",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="the model the server runs (.onnx/.engine), to check the first response against "
        "(default: shape and dtype only)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "onnxruntime", "tensorrt"),
        default="auto",
        help="backend for the local result (default: %(default)s)",
    )
    add_memory_budget(
        p,
        MEMORY_BUDGET_MB,
        "the server's --memory-budget, so the local result is tiled as the server tiles",
    )
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="report folder (default: none)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.loadtest import run_loadtest, to_markdown, write_report

    local = None
    backend = None
    if args.model is not None:
        from ..runtime.api import deblur, open_backend

        backend = open_backend(args.backend, args.model)

        def local(image):
            return deblur(backend, image, memory_budget_mb=args.memory_budget)

    try:
        report = run_loadtest(
            args.url,
            args.concurrency,
            args.requests,
            args.duration,
            args.size,
            local,
            progress=lambda lv: log.info(
                "concurrency %d: %d requests, %d errors, %.2f images/s, p50 %.1f ms",
                lv.concurrency,
                lv.requests,
                lv.errors,
                lv.throughput,
                lv.p50_ms,
            ),
        )
    finally:
        if backend is not None:
            backend.close()
    print(to_markdown(report), end="")
    if args.output is not None:
        for path in write_report(report, args.output, args.force):
            log.info("wrote %s", path)
    mismatch = report.check.get("compared") and not report.check.get("identical")
    if mismatch:
        log.error("the first response differs from the local result of %s", args.model)
    failed = any(lv.errors for lv in report.levels)
    return 1 if mismatch or failed else 0
