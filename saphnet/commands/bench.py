"""``saphnet bench``: latency, throughput and memory per backend, precision, op form, size."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._args import int_at_least, parse_size

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-compile", "onnxruntime", "tensorrt")
PDF_OPS = ("custom", "deformconv", "decomposed")


def _list(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items

    return parse


def _sizes(text: str) -> list[tuple[int, int]]:
    """``HxW,HxW,...``, each at least the smallest image every command takes."""
    from ..sizes import too_small

    sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    for h, w in sizes:
        problem = too_small(h, w)
        if problem:
            raise argparse.ArgumentTypeError(f"size {h}x{w}: {problem}")
    return sizes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency p50/p90/p99, throughput and peak memory per backend",
        description="Benchmark every backend x precision x PDF op form x size; writes bench.json, "
        "bench.md and bench.png. Backends that are not installed are skipped.",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("bench-out"),
        metavar="DIR",
        help="default bench-out",
    )
    p.add_argument(
        "--backends",
        type=_list(BACKENDS),
        help="comma list (default: all available; on CPU without torch-compile, whose compile takes many minutes there)",
    )
    p.add_argument(
        "--precisions",
        type=_list(("fp32", "fp16")),
        help="comma list (default: fp32 on CPU, fp32,fp16 on CUDA)",
    )
    p.add_argument(
        "--pdf-ops", type=_list(PDF_OPS), default=list(PDF_OPS), help="ONNX op forms (default: all)"
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=[(256, 256), (720, 1280)],
        help="comma list of HxW (default 256x256,720x1280)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run; auto: CUDA when available (default: %(default)s)",
    )
    p.add_argument(
        "--warmup", type=int_at_least(1), default=3, help="untimed calls per case (default 3)"
    )
    p.add_argument(
        "--iters", type=int_at_least(1), default=20, help="timed calls per case (default 20)"
    )
    p.add_argument(
        "--model",
        nargs="+",
        type=Path,
        metavar="FILE.onnx",
        help="time these ONNX files (e.g. saphnet quantize outputs) on ONNX Runtime, only "
        "them unless --backends is given too (default: none, exports made here)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="SAPHNet .safetensors (default: the shipped weights)",
    )
    p.add_argument(
        "--plugins",
        type=Path,
        metavar="LIB",
        help="plugin library for TensorRT (default: the installed one)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an earlier report")
    p.set_defaults(func=run)


def _available(backends: list[str], device: str) -> list[str]:
    """Drop what this machine cannot run, saying why."""
    from ..runtime.trt_env import TensorRTMissingError, import_cuda_memory, import_tensorrt

    keep = []
    for backend in backends:
        if backend == "tensorrt":
            try:
                import_tensorrt()
                import_cuda_memory()
            except TensorRTMissingError as exc:
                log.warning("skipping tensorrt: %s", exc)
                continue
            if device != "cuda":
                log.warning("skipping tensorrt: it needs a CUDA device")
                continue
        keep.append(backend)
    return keep


def run(args: argparse.Namespace) -> int:
    from ..runtime.artefacts import open_artefact

    if args.weights is not None:  # the file first, before torch loads
        open_artefact(args.weights, ("weights",))
    import torch
    from tqdm import tqdm

    from ..files import check_writable
    from ..runtime.bench import model_cases, plan_cases, run_bench, write_report
    from ..runtime.torch_backend import load_model

    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    for name in ("bench.json", "bench.md", "bench.png"):
        check_writable(args.output / name, args.force)
    precisions = args.precisions or (["fp32", "fp16"] if device == "cuda" else ["fp32"])
    backends = args.backends or [b for b in BACKENDS if device == "cuda" or b != "torch-compile"]
    given = model_cases(args.model or [], args.sizes, device)
    planned = not args.model or args.backends
    cases = given + (
        plan_cases(_available(backends, device), precisions, args.pdf_ops, args.sizes, device)
        if planned
        else []
    )
    model = load_model(args.weights)
    with tqdm(total=len(cases), unit="case", desc="bench", disable=None) as bar:
        report = run_bench(
            model, cases, args.output, args.warmup, args.iters, args.plugins, bar.update
        )
    written = write_report(report, args.output, args.force)
    print((args.output / "bench.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    failed = sum(1 for r in report.results if r.error)
    return 1 if failed == len(report.results) else 0
