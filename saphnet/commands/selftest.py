"""``saphnet selftest``: prove on this machine that kernels, plugin and engines are right
and fast; write selftest.json, selftest.md and selftest.png."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "selftest",
        help="check that this install is correct here, and measure how fast it is",
        description="Environment, the plugin's host build and ONNX Runtime against the "
        "references (any machine); on a CUDA GPU also the kernels against the float64 "
        "reference, compute-sanitizer, operator and whole-network speed; with TensorRT, "
        "FP32/FP16 engines. Stages that cannot run here are skipped with the reason. Exit "
        "status 1 when a correctness stage fails (never because something is slow).",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("selftest-out"),
        metavar="DIR",
        help="folder for selftest.json, selftest.md and selftest.png (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer shapes, variants and timed runs: under 2 minutes on an H100 (default: full run)",
    )
    p.add_argument(
        "--engine-dir",
        type=Path,
        metavar="DIR",
        help="keep the TensorRT stage's ONNX files and engines here (default: a temporary folder)",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        metavar="DIR",
        help="where a plugin library for this GPU is built when none holds its code "
        "(default: ~/.cache/saphnet)",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite an earlier report (default: refuse)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..selftest import STAGES, Options, run_selftest
    from ..selftest.report import check_outputs, write_report

    check_outputs(args.output, args.force)
    options = Options(quick=args.quick, engine_dir=args.engine_dir, build_dir=args.build_dir)
    with tqdm(total=len(STAGES), unit="stage", desc="selftest", disable=None) as bar:
        report = run_selftest(options, bar.update)
    written = write_report(report, args.output, args.force)
    for stage in report.stages:
        reason = f" ({stage.reason})" if stage.reason else ""
        print(f"{stage.title:<40} {stage.status:<8} {stage.seconds:6.1f} s{reason}")
    print(f"selftest {report.header['result']}; wrote " + ", ".join(str(p) for p in written))
    return report.exit_status
