"""Where the shipped checkpoint lives, so every command uses the same default."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "saphnet_small.safetensors"


def default_weights() -> Path | None:
    """The shipped trained weights, or None before a checkpoint is shipped."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None
