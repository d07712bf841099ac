"""The bundled demo pair (``saphnet/assets/sample_{blur,sharp}.png``), reproducibly.

The sharp image is scikit-image's ``chelsea`` photo (a cat, 300 x 451), which the
shipped checkpoint never trained on (it is held out for validation). It is blurred
with one camera-shake PSF in linear light plus mild sensor noise and stored as 8-bit
PNG, so every helper (demo, compare, bench) works on the same real photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .blur import blur_with
from .psf import shake_trajectory, trajectory_psf

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SAMPLE_BLUR = ASSETS / "sample_blur.png"
SAMPLE_SHARP = ASSETS / "sample_sharp.png"
SAMPLE_SEED = 2020
SAMPLE_SOURCE = "chelsea"


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def make_sample(seed: int = SAMPLE_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blurred uint8, sharp uint8, psf) of the demo pair."""
    from skimage import data

    sharp = data.chelsea().astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    psf = trajectory_psf(shake_trajectory(rng), exposure=0.12, extent=15.0)
    blurred = blur_with(rng, sharp, psf, shot=5e-5, read=2e-3)
    return to_uint8(blurred), to_uint8(sharp), psf
