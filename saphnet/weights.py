"""Where the shipped checkpoint lives, so every command uses the same default, and
the torch-free check that a file is SAPHNet weights at all."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError
from .model.config import SAPHNetConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "saphnet_small.safetensors"

FORMAT = "saphnet"
FORMAT_KEY = "format"
CONFIG_KEY = "config"


def default_weights() -> Path | None:
    """The shipped trained weights, or None before a checkpoint is shipped."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None


def read_config(path: str | os.PathLike[str]) -> SAPHNetConfig:
    """The config stored in a SAPHNet weights file, or a one-line WeightsError.

    Reads only the safetensors header (no torch), so the model-artefact check can run
    on a deployment host; the tensors are checked where they are loaded."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; give a SAPHNet .safetensors file")
    try:
        with safe_open(str(p), framework="numpy") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{p} is not a safetensors file ({exc}); give a file written by SAPHNet.save"
        ) from None
    if meta.get(FORMAT_KEY) != FORMAT or CONFIG_KEY not in meta:
        raise WeightsError(
            f"{p} is a safetensors file but not SAPHNet weights (no '{FORMAT}' metadata); "
            "give a file written by SAPHNet.save"
        )
    try:
        return SAPHNetConfig.from_json(meta[CONFIG_KEY])
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{p} holds an unreadable SAPHNet config: {exc}") from None
