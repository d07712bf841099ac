"""Training batches made on the training device: sharp windows resident there, blurred
in batches by :func:`saphnet.data.batched_blur.synthesize_batch`.

:class:`CropPool` cuts a pool of sharp windows from the photos once (at a random scale
and place, as :class:`saphnet.data.datasets.SyntheticBlurDataset` cuts its crops) and
keeps it on the device as uint8. :class:`DeviceBlurBatches` then draws every batch
there: a random window, a random sub-window, flips, a transposition and a colour
channel order, then blur. The host only launches kernels, so a GPU is not starved by
per-crop CPU work.

Batch ``i`` comes from a generator seeded by ``(seed, i)``, and the shake-trajectory
bank from ``(seed, i // bank_every)``, so a resumed run draws the batches an
uninterrupted one would have drawn (on the same device).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SaphnetError
from .batched_blur import shake_trajectories, synthesize_batch
from .blur import BlurSettings
from .datasets import read_rgb

log = logging.getLogger(__name__)


def _seed(*values: int) -> int:
    return int(np.random.SeedSequence(values).generate_state(1, np.uint64)[0]) >> 1


def generator(device: torch.device, *seed: int) -> torch.Generator:
    """A torch generator on ``device`` seeded from the integers ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(_seed(*seed))
    return g


class CropPool:
    """``count`` sharp windows of ``window`` x ``window`` pixels, uint8 on ``device``.

    Photos are read one at a time and each contributes an equal share of windows, cut
    at a random scale in [min_scale, 1] (antialiased bicubic shrink); photos smaller
    than a window are reflect-padded. Only the pool stays in memory.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | Path],
        window: int,
        count: int,
        seed: int,
        device: torch.device,
        min_scale: float = 1.0,
    ) -> None:
        if not images:
            raise SaphnetError("no sharp images to blur; give a folder holding image files")
        if count < 1:
            raise SaphnetError(f"the crop pool needs at least one window, got {count}")
        count = max(count, len(images))
        self.window = window
        rng = np.random.default_rng([seed, 7])
        shares = [count // len(images) + (k < count % len(images)) for k in range(len(images))]
        pool = torch.empty((count, 3, window, window), dtype=torch.uint8, device=device)
        n = 0
        for item, share in zip(images, shares, strict=True):
            photo = item if isinstance(item, np.ndarray) else read_rgb(item)
            source = torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).to(device)
            for _ in range(share):
                scale = rng.uniform(min_scale, 1.0) if min_scale < 1 else 1.0
                side = math.ceil(window / scale)
                pool[n] = _cut(source, side, window, rng)
                n += 1
        self.pool = pool

    def __len__(self) -> int:
        return len(self.pool)

    def sample(self, batch: int, side: int, g: torch.Generator) -> torch.Tensor:
        """(batch, 3, side, side) float32 windows in [0, 1]: random pool entries,
        places, flips, transposition and channel order, in one gather."""
        if side > self.window:
            raise ValueError(f"CropPool: asked for {side} px windows, the pool holds {self.window}")
        device = self.pool.device
        idx = torch.randint(len(self.pool), (batch,), generator=g, device=device)
        oy, ox = torch.randint(
            self.window - side + 1, (2, batch), generator=g, device=device
        ).unbind(0)
        flips = torch.rand(3, batch, generator=g, device=device) < 0.5
        ar = torch.arange(side, device=device)
        rows = oy[:, None] + torch.where(flips[0][:, None], side - 1 - ar, ar)
        cols = ox[:, None] + torch.where(flips[1][:, None], side - 1 - ar, ar)
        transpose = flips[2][:, None, None, None]
        ys = torch.where(transpose, rows[:, None, None, :], rows[:, None, :, None])
        xs = torch.where(transpose, cols[:, None, :, None], cols[:, None, None, :])
        channels = torch.rand(batch, 3, generator=g, device=device).argsort(dim=1)
        out = self.pool[idx[:, None, None, None], channels[:, :, None, None], ys, xs]
        return out.float() / 255.0


def _cut(source: torch.Tensor, side: int, window: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``side`` x ``side`` region of a (3, H, W) float photo, resized to
    ``window`` and quantised to uint8 (the photos are 8-bit)."""
    _, h, w = source.shape
    ph, pw = max(0, side - h), max(0, side - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        source = F.pad(source[None], (0, pw, 0, ph), mode=mode)[0]
        h, w = source.shape[1:]
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    region = source[None, :, y : y + side, x : x + side].float()
    if side != window:
        region = F.interpolate(
            region, size=(window, window), mode="bicubic", antialias=True, align_corners=False
        )
    return torch.round(region[0].clamp(0, 1) * 255).to(torch.uint8)


class DeviceBlurBatches:
    """Blurred/sharp training batches synthesised on ``device``; ``batch(i)`` is step
    ``i``'s pair of (batch_size, 3, crop, crop) float32 tensors in [0, 1]."""

    def __init__(
        self,
        images: Sequence[np.ndarray | Path],
        crop: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        settings: BlurSettings,
        pool_size: int = 2048,
        min_scale: float = 1.0,
        bank_size: int = 256,
        bank_every: int = 250,
    ) -> None:
        self.crop = crop
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.settings = settings
        self.margin = settings.margin
        self.bank_size = bank_size
        self.bank_every = bank_every
        side = crop + 2 * self.margin
        self.pool = CropPool(images, side + crop // 4, pool_size, seed, device, min_scale)
        self._bank: tuple[int, torch.Tensor] | None = None
        log.info(
            "%d sharp windows of %d px resident on %s (%.0f MB), blur synthesised there",
            len(self.pool),
            self.pool.window,
            device,
            self.pool.pool.numel() / 2**20,
        )

    def _trajectories(self, iteration: int) -> torch.Tensor:
        """The shake-trajectory bank for this iteration, regenerated every
        ``bank_every`` iterations (a 2,000-step loop of small kernels, amortised)."""
        key = iteration // self.bank_every
        if self._bank is None or self._bank[0] != key:
            g = generator(self.device, self.seed, key, 1)
            self._bank = (key, shake_trajectories(self.bank_size, g, device=self.device))
        return self._bank[1]

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = generator(self.device, self.seed, iteration)
        side = self.crop + 2 * self.margin
        sharp = self.pool.sample(self.batch_size, side, g)
        blurred = synthesize_batch(sharp, self._trajectories(iteration), self.settings, g)
        m, c = self.margin, self.crop
        return blurred[..., m : m + c, m : m + c], sharp[..., m : m + c, m : m + c]
