"""Motion-blur point spread functions: camera-shake trajectories and linear motion.

A camera-shake PSF is the image of a point traced by a randomly shaking camera during
the exposure. :func:`shake_trajectory` follows Boracchi & Foi ("Modeling the
performance of image restoration from motion blur", IEEE TIP 2012): a 2-D random walk
whose velocity keeps a constant speed and is pulled by Gaussian jitter, by a
centripetal force back to the start, and now and then turned round by an abrupt shake.
:func:`trajectory_psf` rasterises the part of the trajectory seen during the exposure
with bilinear splatting. Every PSF here is non-negative and sums to 1, so blurring
keeps the image's mean brightness.
"""

from __future__ import annotations

import math

import numpy as np

# Boracchi & Foi's total path length in pixels; the force terms are tuned to this scale.
_PATH_LENGTH = 60.0


def shake_trajectory(rng: np.random.Generator, samples: int = 2000) -> np.ndarray:
    """A random camera-shake trajectory, complex positions (x + i*y) in pixels,
    shape (samples,), with a total path length of 60 pixels as in the original.

    The parameters (anxiety, centripetal pull, Gaussian jitter, frequency of abrupt
    shakes) are drawn per call from Boracchi & Foi's ranges, so trajectories range
    from nearly straight to curly.
    """
    if samples < 2:
        raise ValueError(f"shake_trajectory: need samples >= 2, got {samples}")
    anxiety = 0.1 * rng.random()
    centripetal = 0.7 * rng.random()
    gaussian = 10.0 * rng.random()
    big_shakes = 0.2 * rng.random()
    step = _PATH_LENGTH / (samples - 1)
    v = np.exp(1j * 2 * np.pi * rng.random()) * (anxiety if anxiety > 0 else step)
    x = np.zeros(samples, dtype=np.complex128)
    jitter = rng.standard_normal((samples, 2))
    shakes = rng.random(samples)
    turns = rng.random(samples)
    for t in range(samples - 1):
        turn = 0.0
        if shakes[t] < big_shakes * anxiety:
            turn = 2 * v * np.exp(1j * (np.pi + (turns[t] - 0.5)))
        dv = turn + anxiety * (gaussian * complex(*jitter[t]) - centripetal * x[t]) * step
        v = v + dv
        v = v / (abs(v) + 1e-12) * step
        x[t + 1] = x[t] + v
    return x


def _splat(points: np.ndarray, margin: int = 1) -> np.ndarray:
    """Rasterise complex points into an odd-sided square kernel centred on their
    centroid by bilinear splatting, normalised to sum 1."""
    points = points - points.mean()
    radius = math.ceil(max(np.abs(points.real).max(), np.abs(points.imag).max())) + margin
    size = 2 * radius + 1
    kernel = np.zeros((size, size), dtype=np.float64)
    px = points.real + radius
    py = points.imag + radius
    x0 = np.floor(px).astype(int)
    y0 = np.floor(py).astype(int)
    fx = px - x0
    fy = py - y0
    for dy, dx, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    kernel = np.clip(kernel, 0.0, None)
    return kernel / kernel.sum()


def trajectory_psf(
    trajectory: np.ndarray, exposure: float = 1.0, extent: float | None = None
) -> np.ndarray:
    """The PSF of the first ``exposure`` fraction (0, 1] of a trajectory.

    With ``extent`` the exposed path is rescaled so the longer side of its bounding
    box is ``extent`` pixels: the blur size is what a data set needs to control,
    whereas the original fixes the path length (a curly path of a given length blurs
    much less than a straight one). The path is resampled densely (linear
    interpolation, 4 points per pixel) so the PSF has no gaps.
    """
    if not 0 < exposure <= 1:
        raise ValueError(f"trajectory_psf: exposure must be in (0, 1], got {exposure}")
    end = max(2, round(exposure * len(trajectory)))
    part = trajectory[:end]
    if extent is not None:
        span = max(np.ptp(part.real), np.ptp(part.imag))
        part = part * (extent / max(span, 1e-12))
    path = float(np.abs(np.diff(part)).sum())
    n = max(2, math.ceil(path * 4) + 1)
    t_old = np.linspace(0.0, 1.0, len(part))
    t_new = np.linspace(0.0, 1.0, n)
    dense = np.interp(t_new, t_old, part.real) + 1j * np.interp(t_new, t_old, part.imag)
    return _splat(dense)


def random_shake_psf(
    rng: np.random.Generator, max_length: float = 25.0, min_length: float = 3.0
) -> np.ndarray:
    """A camera-shake PSF with a random exposure fraction (short exposures see a
    short, smoother piece of the shake) and a random extent in pixels."""
    trajectory = shake_trajectory(rng)
    exposure = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
    return trajectory_psf(trajectory, exposure, extent=rng.uniform(min_length, max_length))


def linear_psf(length: float, angle_deg: float) -> np.ndarray:
    """Uniform linear motion of ``length`` pixels at ``angle_deg`` (counter-clockwise
    from the +x axis, y pointing up as in a photo), centred on the kernel."""
    if length < 0:
        raise ValueError(f"linear_psf: length must be >= 0, got {length}")
    if length == 0:
        return np.ones((1, 1))
    theta = math.radians(angle_deg)
    n = max(2, math.ceil(length * 4) + 1)
    s = np.linspace(-length / 2, length / 2, n)
    # Image rows grow downwards, so a photo's "up" is -y.
    points = s * math.cos(theta) - 1j * s * math.sin(theta)
    return _splat(points)


def random_linear_psf(
    rng: np.random.Generator, max_length: float = 25.0, min_length: float = 3.0
) -> np.ndarray:
    """A linear-motion PSF with random length and angle."""
    return linear_psf(rng.uniform(min_length, max_length), rng.uniform(0.0, 180.0))


def disc_psf(radius: float) -> np.ndarray:
    """A defocus PSF: a uniform disc of ``radius`` pixels with anti-aliased rim
    (each pixel weighted by how far the rim lies past its centre, clipped to [0, 1])."""
    if radius < 0:
        raise ValueError(f"disc_psf: radius must be >= 0, got {radius}")
    r = math.ceil(radius + 0.5)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(y, x), 0.0, 1.0)
    return kernel / kernel.sum()
