"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W), both positive."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 720x1280") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be >= {minimum}")
        return value

    return parse


def duration(text: str) -> float:
    """An argparse type: ``90s``, ``6m``, ``1h``, ``1h30m`` or plain seconds -> seconds."""
    from ..train.budget import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def device_name(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    from ..train.settings import DEVICE_FORM

    if not DEVICE_FORM.match(text):
        raise argparse.ArgumentTypeError(f"device {text!r} is not auto, cpu, cuda or cuda:N")
    return text


MIN_TILE = 32
"""The smallest ``--tile``: two of the network's 16-px padding blocks, so a tile keeps
some image between its overlaps."""


def tile_size(text: str) -> int:
    """An argparse type for ``--tile``: 0 (choose) or a multiple of 16 of at least 32.

    Tiles are multiples of 16 because the network pads every input to one: a 500-px
    tile would run as 512 px and waste the padding on every tile. The error suggests
    the valid sides nearest to the value given, each once."""
    value = int_at_least(0)(text)
    if value and (value < MIN_TILE or value % 16):
        nearest = sorted({max(MIN_TILE, value // 16 * 16), max(MIN_TILE, -(-value // 16) * 16)})
        raise argparse.ArgumentTypeError(
            f"{value} is not 0 or a multiple of 16 of at least {MIN_TILE} "
            f"(try {' or '.join(map(str, nearest))})"
        )
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port; ports run from 1 to 65535")
    return value


def float_at_least(minimum: float) -> Callable[[str], float]:
    """An argparse type: a finite float no smaller than ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be a number >= {minimum:g}")
        return value

    return parse


MIN_BUDGET_MB = 128
"""Below this not even the runtime itself fits (ONNX Runtime's base is ~80 MB)."""


def add_memory_budget(p: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--memory-budget MB``, at least :data:`MIN_BUDGET_MB`; ``what`` says what it bounds."""
    p.add_argument(
        "--memory-budget",
        type=int_at_least(MIN_BUDGET_MB),
        default=default,
        metavar="MB",
        help=f"{what} (default: %(default)s)",
    )
