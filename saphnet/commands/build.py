"""``saphnet build``: ONNX -> TensorRT engine plus its JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import int_at_least


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build a TensorRT engine from an ONNX file",
        description="Build a TensorRT engine (TensorRT 10.x or 11.x) and write it with a JSON sidecar "
        "that is checked when the engine loads.",
    )
    p.add_argument("onnx", type=Path, metavar="MODEL.onnx", help="exported by saphnet export")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="MODEL.engine", help="engine to write"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="int8 takes a saphnet quantize --target tensorrt file (default fp32)",
    )
    p.add_argument(
        "--shapes",
        metavar="[NAME:]MIN:OPT:MAX",
        help="optimization profile, trtexec-style shapes, e.g. 1x3x64x64:1x3x720x1280:1x3x1088x1920 "
        "(default: that, or the model's static shape)",
    )
    p.add_argument(
        "--timing-cache",
        type=Path,
        metavar="FILE",
        help="read and update this tactic timing cache (default: none)",
    )
    p.add_argument(
        "--plugins", type=Path, metavar="LIB", help="plugin library (default: the installed one)"
    )
    p.add_argument(
        "--workspace",
        type=int_at_least(1),
        metavar="MB",
        help="builder workspace limit in MB (default: TensorRT's, the device memory)",
    )
    p.add_argument("--force", action="store_true", help="overwrite the engine and its sidecar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..files import check_writable
    from ..runtime.artefacts import open_artefact
    from ..runtime.engine_build import BuildOptions, build_engine
    from ..runtime.sidecar import PDF_IMPLEMENTATIONS, read_sidecar, sidecar_path

    # The user's inputs first, then the environment: a missing file is named as such
    # even on a machine without TensorRT. Any ONNX file with SAPHNet's I/O builds.
    open_artefact(args.onnx, ("onnx",), foreign_onnx=True)
    check_writable(args.output, args.force)
    check_writable(sidecar_path(args.output), args.force)

    options = BuildOptions(
        precision=args.precision,
        shapes=args.shapes,
        timing_cache=args.timing_cache,
        plugins=args.plugins,
        workspace_mb=args.workspace,
        force=args.force,
    )
    engine = build_engine(args.onnx, args.output, options)
    pdf = read_sidecar(engine).pdf_implementation  # type: ignore[union-attr]
    print(f"wrote {engine} and {sidecar_path(engine)} (PDF layers: {PDF_IMPLEMENTATIONS[pdf]})")
    return 0
