"""A wall-clock budget for training and the learning-rate schedule defined over it.

Imports no torch, so the CLI can parse ``--time-budget`` cheaply.

A budgeted run anneals by *time*: the learning rate at a step is a function of the
fraction of the budget spent, not of a step count. A step count would have to be
guessed before the first step (throughput depends on the GPU, the network, AMP,
``torch.compile`` and validation pauses); the spent fraction is known exactly at
every step, so a 6-minute run ends at the schedule's floor whatever its speed, and a
resumed run continues the curve from the time it had already spent.
"""

from __future__ import annotations

import math
import re

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")


def parse_duration(text: str) -> float:
    """``6m``, ``90s``, ``1h``, ``1h30m``, ``2.5m`` or plain seconds (``360``) -> seconds.

    Raises ValueError naming the accepted forms; the result is > 0.
    """
    s = text.strip().lower()
    try:
        seconds = float(s)
    except ValueError:
        parts = _PART.findall(s)
        if not s or "".join(n + u for n, u in parts) != s:
            raise ValueError(
                f"duration {text!r} is not like 90s, 6m, 1h or 1h30m (units h, m, s)"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {text!r} must be a positive, finite time")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as ``4m05s`` (or ``12.3s`` under a minute), for logs and summaries."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def cosine_lr(progress: float, lr: float, min_lr: float, warmup: float = 0.0) -> float:
    """The learning rate at ``progress`` in [0, 1] of a run: a linear warm-up over the
    first ``warmup`` fraction (from lr / 10), then a cosine from ``lr`` to ``min_lr`` at 1.

    The warm-up keeps the first Adam steps of a short, high-rate run (statistics not yet
    settled, a bigger batch than the paper's) from throwing the network off its
    identity start; past 1 the rate stays at ``min_lr``.
    """
    p = min(max(progress, 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return lr * (0.1 + 0.9 * p / warmup)
    if warmup >= 1:
        return lr
    t = (p - warmup) / (1.0 - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
