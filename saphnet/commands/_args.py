"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W), both positive."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 720x1280") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w
