"""``saphnet info``: parameters, MACs at a size, the PDF share, the config."""

from __future__ import annotations

import argparse
import json
import logging

from ._args import parse_size

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="parameters, MACs and the PDF share of a network",
        description="Print a network's config, parameter count, multiply-accumulates at an "
        "image size and the share of them in the PDF operators (default: the shipped weights).",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--weights", help="SAPHNet .safetensors file (default: the shipped weights)")
    which.add_argument(
        "--paper", action="store_true", help="the paper's full-size default config instead"
    )
    p.add_argument("--size", type=parse_size, default=(720, 1280), help="HxW (default 720x1280)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..model import SAPHNetConfig, read_config
    from ..model.complexity import measure
    from ..weights import default_weights

    weights = None if args.paper else (args.weights or default_weights())
    config = read_config(weights) if weights else SAPHNetConfig()
    h, w = args.size
    c = measure(config, h, w)
    if args.json:
        print(json.dumps({"weights": str(weights), **c.as_dict(), "config": asdict(config)}))
        return 0
    rows = [
        ("weights", str(weights) if weights else "none (default config)"),
        ("parameters", f"{c.parameters / 1e6:.2f} M"),
        (f"MACs at {h}x{w}", f"{c.macs / 1e9:.1f} G"),
        ("PDF convolutions", f"{c.pdf_macs / 1e9:.1f} G ({100 * c.pdf_share:.1f} %)"),
        ("attention products", f"{c.attention_macs / 1e9:.2f} G"),
    ]
    rows += [(f"config.{k}", str(v)) for k, v in asdict(config).items()]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0
