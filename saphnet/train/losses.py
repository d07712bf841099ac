"""Reconstruction losses selectable by name."""

from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2): L1-like for large errors, smooth at zero."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((output - target) ** 2 + self.eps**2).mean()


LOSSES = {"l1": nn.L1Loss, "mse": nn.MSELoss, "charbonnier": CharbonnierLoss}


def make_loss(name: str) -> nn.Module:
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
