"""Saving and loading SAPHNet weights as safetensors, with the config in the metadata."""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from ..files import atomic_output
from ..weights import CONFIG_KEY, FORMAT, FORMAT_KEY, read_config
from .config import SAPHNetConfig

__all__ = ["check_finite", "check_shapes", "load_state", "read_config", "save_weights"]


def save_weights(
    model: torch.nn.Module, config: SAPHNetConfig, path: str | os.PathLike[str], force: bool = True
) -> None:
    """Write the state dict and the config atomically."""
    from .. import __version__

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {FORMAT_KEY: FORMAT, CONFIG_KEY: config.to_json(), "saphnet_version": __version__}
    with atomic_output(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_state(
    path: str | os.PathLike[str], expected: SAPHNetConfig | None = None
) -> tuple[SAPHNetConfig, dict[str, torch.Tensor]]:
    """Config and tensors of a weights file; fails in one line if it was made for a
    config other than ``expected``."""
    config = read_config(path)
    if expected is not None and expected != config:
        diff = [
            f"{name}={getattr(config, name)!r} (expected {getattr(expected, name)!r})"
            for name in config.__dataclass_fields__
            if getattr(config, name) != getattr(expected, name)
        ]
        raise WeightsError(f"{path} was made for another config: {', '.join(diff)}")
    state = load_file(str(path))
    check_finite(path, state)
    return config, state


def check_finite(path: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> None:
    """Refuse tensors holding NaN or Inf: such weights turn every output non-finite
    (an all-black image), so they are caught when loaded, naming the tensor."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(
                f"{path}: tensor {name} holds {bad} NaN/Inf values (a diverged or damaged "
                "checkpoint); retrain or use an earlier checkpoint"
            )


def check_shapes(
    path: str | os.PathLike[str],
    expected: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
) -> None:
    """One line naming the first tensor that is missing, extra or of another shape than
    the file's own config builds, instead of PyTorch's multi-line ``load_state_dict`` error."""
    for name, want in expected.items():
        if name not in state:
            raise WeightsError(
                f"{path}: tensor {name} is missing for the config stored in the file; "
                "the file's config and tensors disagree (save it with SAPHNet.save)"
            )
        if tuple(state[name].shape) != tuple(want.shape):
            raise WeightsError(
                f"{path}: tensor {name} has shape {tuple(state[name].shape)} but the file's "
                f"config needs {tuple(want.shape)}; the config and tensors disagree "
                "(save it with SAPHNet.save)"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WeightsError(
            f"{path}: tensor {extra[0]} (and {len(extra) - 1} more) is not in the network the "
            "file's config builds; the config and tensors disagree (save it with SAPHNet.save)"
        )
