"""The ``saphnet`` command: parses, calls the library, prints.

Each subcommand lives in its own module under :mod:`saphnet.commands`, found by
name, with ``add_parser(subparsers)`` (which sets ``func``) and heavy imports kept
inside its ``run`` so that ``saphnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import SaphnetError

log = logging.getLogger("saphnet")

EXTRAS = {
    "torch": "export",
    "onnxscript": "export",
    "polygraphy": "export",
    "skimage": "export",
    "scipy": "export",
    "matplotlib": "plot",
    "pytriton": "serve",
    "tritonclient": "serve",
    "tensorrt": "tensorrt",
    "pycuda": "tensorrt",
}
"""Optional packages and the extra that installs each (pyproject.toml): a command
that needs one says which extra to install instead of showing a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saphnet",
        description="SAPHNet motion deblurring: PyTorch -> ONNX -> TensorRT, with proof.",
    )
    parser.add_argument("--version", action="version", version=f"saphnet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The ONNX exporter's IR passes log every rewrite at INFO; keep them for -v.
    logging.getLogger("onnx_ir").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except SaphnetError as exc:
        print(f"saphnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        print(
            f"saphnet {args.command}: error: this needs {package}, which is not installed; "
            f"pip install 'saphnet[{EXTRAS[package]}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"saphnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
