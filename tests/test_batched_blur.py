"""Blur synthesised in batches with torch (GPU training) against the per-crop NumPy
synthesis it replaces: same PSFs, masks, noise and JPEG, same statistics; run here on
CPU tensors, the code the GPU runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from saphnet.data.batched_blur import (
    add_noise,
    disc_psfs,
    jpeg_like,
    linear_to_srgb,
    psf_radius,
    random_psfs,
    shake_trajectories,
    smooth_masks,
    srgb_to_linear,
    synthesize_batch,
)
from saphnet.data.blur import (
    BlurSettings,
    jpeg,
    random_psf,
    synthesize,
)
from saphnet.data.blur import add_noise as add_noise_np
from saphnet.data.blur import linear_to_srgb as linear_to_srgb_np
from saphnet.data.blur import smooth_masks as smooth_masks_np
from saphnet.data.blur import srgb_to_linear as srgb_to_linear_np
from saphnet.data.datasets import TRAIN_BLUR, builtin_image
from saphnet.data.device_batches import CropPool, DeviceBlurBatches, generator
from saphnet.data.psf import disc_psf, shake_trajectory
from saphnet.train.metrics import psnr

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bank() -> torch.Tensor:
    return shake_trajectories(96, generator(CPU, 0, 1))


def _spread(kernel: np.ndarray) -> float:
    """Root mean square distance of a PSF's mass from its centroid, in pixels."""
    k = kernel / kernel.sum()
    r = np.arange(k.shape[0]) - k.shape[0] // 2
    py, px = k.sum(axis=1), k.sum(axis=0)
    my, mx = (py * r).sum(), (px * r).sum()
    return float(np.sqrt((py * (r - my) ** 2).sum() + (px * (r - mx) ** 2).sum()))


def test_trajectories_have_the_per_crop_path_and_extent(bank) -> None:
    ours = bank.numpy()
    theirs = [shake_trajectory(np.random.default_rng(s)) for s in range(48)]
    length = np.abs(np.diff(ours, axis=1)).sum(axis=1)
    assert length == pytest.approx(np.full(len(ours), 60.0), rel=1e-3)  # Boracchi & Foi's 60 px

    def span(x: np.ndarray) -> float:
        return max(np.ptp(x.real), np.ptp(x.imag))

    ours_span = np.mean([span(x) for x in ours])
    theirs_span = np.mean([span(x) for x in theirs])
    assert ours_span == pytest.approx(theirs_span, rel=0.25)


def test_psfs_are_nonnegative_normalised_and_centred(bank) -> None:
    psfs = random_psfs(256, bank, TRAIN_BLUR, generator(CPU, 0, 2)).numpy()
    assert psfs.shape == (256, 2 * psf_radius(TRAIN_BLUR) + 1, 2 * psf_radius(TRAIN_BLUR) + 1)
    assert psfs.min() >= 0.0
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1.0, atol=1e-5)
    r = np.arange(psfs.shape[1]) - psfs.shape[1] // 2
    assert np.abs((psfs.sum(axis=1) * r).sum(axis=1)).max() < 0.5  # centroid at the centre


@pytest.mark.parametrize("short_prob", [0.0, 1.0])
def test_psf_size_distribution_matches_per_crop(bank, short_prob: float) -> None:
    settings = BlurSettings(short_prob=short_prob)
    ours = [_spread(k) for k in random_psfs(400, bank, settings, generator(CPU, 0, 3)).numpy()]
    rng = np.random.default_rng(0)
    theirs = [_spread(random_psf(rng, settings)) for _ in range(300)]
    assert np.mean(ours) == pytest.approx(np.mean(theirs), rel=0.12)
    for q in (25, 50, 75):
        assert np.percentile(ours, q) == pytest.approx(np.percentile(theirs, q), rel=0.2, abs=0.3)
    if short_prob == 1.0:
        assert max(ours) < settings.min_length  # short PSFs only: never a long blur


def test_disc_matches_the_per_crop_disc() -> None:
    for radius in (0.5, 1.3, 2.0):
        ours = disc_psfs(torch.tensor([radius]), 4)[0].numpy()
        theirs = disc_psf(radius)
        pad = (ours.shape[0] - theirs.shape[0]) // 2
        np.testing.assert_allclose(ours, np.pad(theirs, pad), atol=1e-6)


def test_masks_are_a_partition_with_the_asked_number_of_regions() -> None:
    masks = smooth_masks(torch.tensor([1, 2, 3]), 48, 3, generator(CPU, 0, 4))
    assert masks.min() >= 0
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(3, 48, 48))
    assert torch.equal(masks[0, 0], torch.ones(48, 48))
    assert float(masks[1, 2].abs().max()) == 0.0  # image 1 has two regions


def test_masks_split_images_as_sharply_as_per_crop() -> None:
    """How decisive the regions are (mean over pixels of the largest weight)."""
    rng = np.random.default_rng(0)
    theirs = [smooth_masks_np(rng, 48, 48, 3).max(axis=0).mean() for _ in range(30)]
    ours = smooth_masks(torch.full((30,), 3), 48, 3, generator(CPU, 0, 4)).amax(dim=1)
    assert float(ours.mean()) == pytest.approx(np.mean(theirs), abs=0.03)


def test_srgb_curves_match_numpy() -> None:
    x = np.linspace(0, 1, 101)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(srgb_to_linear(t).numpy(), srgb_to_linear_np(x), atol=1e-12)
    np.testing.assert_allclose(linear_to_srgb(t).numpy(), linear_to_srgb_np(x), atol=1e-9)


def test_noise_level_matches_per_crop() -> None:
    level, shot, read = 0.25, 2e-4, 4e-3
    linear = torch.full((4, 3, 64, 64), level, dtype=torch.float64)
    ours = add_noise(
        linear, torch.full((4,), shot), torch.full((4,), read), generator(CPU, 0, 5)
    ).numpy()
    theirs = add_noise_np(np.random.default_rng(0), np.full((64, 64, 3), level), shot, read)
    expected = np.sqrt(shot * level + read**2)
    assert (ours - level).std() == pytest.approx(expected, rel=0.03)
    assert (theirs - level).std() == pytest.approx(expected, rel=0.05)
    assert abs((ours - level).mean()) < 0.05 * expected


def test_jpeg_like_matches_pillow() -> None:
    sharp = builtin_image("astronaut")[100:228, 150:278].astype(np.float64)
    sharp = np.round(sharp * 255) / 255
    batch = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None].float()
    for quality in (40, 90):
        ours = jpeg_like(batch, torch.tensor([quality]))[0].numpy().transpose(1, 2, 0)
        pillow = jpeg(sharp, quality)
        assert psnr(ours, pillow) > 42.0  # the same lossy steps as libjpeg
        assert psnr(ours, sharp) == pytest.approx(psnr(pillow, sharp), abs=0.5)
    low = jpeg_like(batch, torch.tensor([20]))[0].numpy().transpose(1, 2, 0)
    assert psnr(low, sharp) < psnr(ours, sharp) - 3  # lower quality, more loss


def test_batch_blur_degrades_like_per_crop_blur(bank) -> None:
    """Same settings, same windows: the PSNR of blurred against sharp has the same
    distribution whichever way the blur is made."""
    settings = BlurSettings()  # the held-out recipe: blur + noise only
    names = ("astronaut", "camera", "coffee", "rocket")
    windows = [builtin_image(n)[40:120, 60:140].astype(np.float64) for n in names]
    rng = np.random.default_rng(0)
    theirs = [psnr(synthesize(rng, w, settings), w) for w in windows * 10]
    batch = torch.from_numpy(np.stack(windows * 16).transpose(0, 3, 1, 2).copy()).float()
    blurred = synthesize_batch(batch, bank, settings, generator(CPU, 0, 6))
    assert blurred.shape == batch.shape and blurred.min() >= 0 and blurred.max() <= 1
    ours = [
        psnr(b.numpy().transpose(1, 2, 0), s.numpy().transpose(1, 2, 0))
        for b, s in zip(blurred, batch, strict=True)
    ]
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=1.5)
    assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.5)


def test_pool_samples_are_transformed_pool_windows() -> None:
    image = np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)
    pool = CropPool([image], window=20, count=1, seed=0, device=CPU)
    window = pool.pool[0].float() / 255
    variants = []
    for perm in itertools.permutations(range(3)):
        base = window[list(perm)]
        for k, flip in itertools.product(range(4), (False, True)):
            v = torch.rot90(base, k, dims=(1, 2))
            variants.append(v.flip(2) if flip else v)
    samples = pool.sample(12, 20, generator(CPU, 0, 7))
    for s in samples:
        assert any(torch.equal(s, v) for v in variants)
    assert len({tuple(s.flatten()[:8].tolist()) for s in samples}) > 1  # not all the same


def test_device_batches_are_reproducible_and_paired() -> None:
    images = [builtin_image("camera"), builtin_image("coffee")]
    source = DeviceBlurBatches(
        images, 32, 3, seed=5, device=CPU, settings=TRAIN_BLUR, pool_size=8, bank_size=16
    )
    blurred, sharp = source.batch(3)
    assert blurred.shape == sharp.shape == (3, 3, 32, 32)
    again = DeviceBlurBatches(
        images, 32, 3, seed=5, device=CPU, settings=TRAIN_BLUR, pool_size=8, bank_size=16
    ).batch(3)
    assert torch.equal(again[0], blurred) and torch.equal(again[1], sharp)  # resumable
    assert not torch.equal(source.batch(4)[1], sharp)
    assert float((blurred - sharp).abs().mean()) > 1e-3  # blurred, not a copy
