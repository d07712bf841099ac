"""Synthetic motion blur done where light adds up: in linear RGB.

A camera integrates linear light over the exposure, so blurring sRGB values directly
darkens highlights and misplaces edges; :func:`synthesize` converts sRGB to linear,
blurs with one or several PSFs blended by smooth masks (different motion in
different regions, as with depth or moving objects), adds signal-dependent sensor
noise, clips, and converts back. Images are float arrays in [0, 1], (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from .psf import disc_psf, random_linear_psf, random_shake_psf


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """The sRGB decoding curve (IEC 61966-2-1)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """The sRGB encoding curve, inverse of :func:`srgb_to_linear`."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Blur (H, W, C) by a PSF, reflecting at the borders so edges do not darken."""
    ph, pw = psf.shape[0] // 2, psf.shape[1] // 2
    padded = np.pad(image, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    out = fftconvolve(padded, psf[:, :, None], mode="valid", axes=(0, 1))
    return np.clip(out, 0.0, None)


def smooth_masks(
    rng: np.random.Generator, height: int, width: int, count: int, sharpness: float = 8.0
) -> np.ndarray:
    """``count`` soft region masks (count, H, W), non-negative, summing to 1 per pixel.

    Each mask is a low-frequency random field; a softmax with ``sharpness`` turns them
    into regions with smooth borders.
    """
    if count == 1:
        return np.ones((1, height, width))
    sigma = 0.2 * min(height, width)
    fields = rng.standard_normal((count, height, width))
    fields = np.stack([gaussian_filter(f, sigma, mode="wrap") for f in fields])
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    logits = sharpness * fields / 2
    logits -= logits.max(axis=0, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=0, keepdims=True)


def add_noise(rng: np.random.Generator, linear: np.ndarray, shot: float, read: float) -> np.ndarray:
    """Poisson-like shot noise (variance ``shot * signal``) plus Gaussian read noise."""
    std = np.sqrt(shot * np.clip(linear, 0.0, None) + read**2)
    return linear + std * rng.standard_normal(linear.shape)


@dataclass(frozen=True)
class BlurSettings:
    """Ranges of the synthetic degradation.

    Attributes:
        max_length: longest PSF path in pixels.
        min_length: shortest PSF path in pixels.
        linear_prob: chance that a PSF is linear motion rather than camera shake.
        max_regions: at most this many PSFs blended across the image (1 = uniform blur).
        max_shot: upper bound of the shot-noise gain (variance per unit signal).
        max_read: upper bound of the read-noise standard deviation.
        short_prob: chance that a PSF is short instead (0 to ``min_length`` px, down
            to a point). Real photos are often sharp in places (a still background
            behind a moving subject, a steady moment of the exposure); a network that
            only ever saw long blur sharpens what is already sharp and loses PSNR there.
        defocus_prob: chance that the whole image is also mildly out of focus (a disc
            PSF of radius up to ``max_defocus`` px), as real frames often are.
        max_defocus: largest defocus disc radius in pixels.
        jpeg_prob: chance that the result is JPEG-compressed (quality drawn from
            ``jpeg_quality``), as most photos a user deblurs are.
        jpeg_quality: (lowest, highest) JPEG quality.

    Each of ``short_prob``, ``defocus_prob`` and ``jpeg_prob`` draws random numbers
    only when it is above zero, so the held-out set (the defaults) keeps its blurs.
    """

    max_length: float = 25.0
    min_length: float = 3.0
    linear_prob: float = 0.3
    max_regions: int = 3
    max_shot: float = 2e-4
    max_read: float = 4e-3
    short_prob: float = 0.0
    defocus_prob: float = 0.0
    max_defocus: float = 2.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)

    @property
    def margin(self) -> int:
        """Pixels of context a crop needs around it so its borders blur like the inside."""
        return int(np.ceil(self.max_length / 2)) + 2


def random_psf(rng: np.random.Generator, settings: BlurSettings) -> np.ndarray:
    longest, shortest = settings.max_length, settings.min_length
    # Drawn only when enabled, so the held-out set's blurs stay what they were.
    if settings.short_prob > 0 and rng.random() < settings.short_prob:
        longest, shortest = settings.min_length, 0.0
    if rng.random() < settings.linear_prob:
        return random_linear_psf(rng, longest, shortest)
    return random_shake_psf(rng, longest, shortest)


def synthesize(
    rng: np.random.Generator, sharp: np.ndarray, settings: BlurSettings | None = None
) -> np.ndarray:
    """Blur an sRGB image (H, W, 3) in [0, 1] with random spatially varying motion
    blur and noise; returns the blurred sRGB image, same shape, in [0, 1]."""
    settings = settings or BlurSettings()
    h, w = sharp.shape[:2]
    linear = srgb_to_linear(sharp)
    regions = int(rng.integers(1, settings.max_regions + 1))
    psfs = [random_psf(rng, settings) for _ in range(regions)]
    masks = smooth_masks(rng, h, w, regions)
    blurred = sum(m[:, :, None] * convolve(linear, k) for m, k in zip(masks, psfs, strict=True))
    if settings.defocus_prob > 0 and rng.random() < settings.defocus_prob:
        blurred = convolve(blurred, disc_psf(rng.uniform(0.5, settings.max_defocus)))
    noisy = add_noise(
        rng, blurred, rng.uniform(0.0, settings.max_shot), rng.uniform(0.0, settings.max_read)
    )
    out = linear_to_srgb(noisy)
    if settings.jpeg_prob > 0 and rng.random() < settings.jpeg_prob:
        out = jpeg(out, int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))
    return out


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An sRGB image (H, W, 3) in [0, 1] through Pillow's JPEG encoder and decoder at
    ``quality`` (4:2:0 chroma subsampling, libjpeg's standard tables)."""
    import io

    from PIL import Image

    pixels = Image.fromarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float64) / 255.0


def blur_with(
    rng: np.random.Generator, sharp: np.ndarray, psf: np.ndarray, shot: float, read: float
) -> np.ndarray:
    """Blur an sRGB image uniformly with one given PSF in linear light, plus noise."""
    linear = convolve(srgb_to_linear(sharp), psf)
    return linear_to_srgb(add_noise(rng, linear, shot, read))
