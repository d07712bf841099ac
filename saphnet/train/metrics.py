"""Image quality metrics on float images in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch


def psnr(output: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(target, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(output: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity of (H, W, 3) images, scikit-image's definition
    (7 x 7 uniform window, averaged over channels)."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            np.asarray(output, np.float64),
            np.asarray(target, np.float64),
            data_range=data_range,
            channel_axis=2,
        )
    )


def batch_psnr_tensor(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean PSNR over a batch (N, C, H, W) in [0, 1], output clamped first, as a
    0-d tensor on the batch's device (read back when the caller synchronises anyway)."""
    with torch.no_grad():
        mse = ((output.detach().clamp(0, 1) - target) ** 2).flatten(1).mean(dim=1)
        return (10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean()


def batch_psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR over a batch (N, C, H, W) in [0, 1], output clamped first."""
    return float(batch_psnr_tensor(output, target))
