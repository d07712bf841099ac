"""The data pipeline: PSFs, blur in linear light, datasets, the bundled sample."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from saphnet.data.blur import (
    BlurSettings,
    convolve,
    linear_to_srgb,
    random_psf,
    smooth_masks,
    srgb_to_linear,
    synthesize,
)
from saphnet.data.datasets import (
    PairedFolderDataset,
    SyntheticBlurDataset,
    find_pairs,
    training_dataset,
)
from saphnet.data.psf import (
    disc_psf,
    linear_psf,
    random_shake_psf,
    shake_trajectory,
    trajectory_psf,
)
from saphnet.errors import SaphnetError


@pytest.mark.parametrize("seed", range(8))
def test_trajectory_psf_is_nonnegative_and_sums_to_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    psf = random_shake_psf(rng)
    assert psf.min() >= 0.0
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1


def test_trajectory_extent_is_the_requested_one() -> None:
    psf = trajectory_psf(shake_trajectory(np.random.default_rng(3)), exposure=0.5, extent=15.0)
    rows = np.flatnonzero(psf.sum(axis=1) > 1e-9)
    cols = np.flatnonzero(psf.sum(axis=0) > 1e-9)
    assert max(np.ptp(rows), np.ptp(cols)) in (15, 16)  # bilinear splats reach one pixel further


@pytest.mark.parametrize(("angle", "axis"), [(0.0, 0), (90.0, 1)])
def test_linear_psf_lies_along_its_angle(angle: float, axis: int) -> None:
    psf = linear_psf(9.0, angle)
    assert psf.sum() == pytest.approx(1.0) and psf.min() >= 0
    # angle 0: all mass in the middle row; angle 90: in the middle column.
    profile = psf.sum(axis=1 - axis)
    assert profile[len(profile) // 2] == pytest.approx(1.0)


def test_linear_psf_45_degrees_rises_to_the_right() -> None:
    psf = linear_psf(9.0, 45.0)
    c = psf.shape[0] // 2
    # y points up in the photo: the top-right quadrant holds mass, the top-left none.
    assert psf[:c, c + 1 :].sum() > 0.3
    assert psf[:c, :c].sum() < 1e-9


def test_srgb_round_trip_and_mean_preserving_blur() -> None:
    x = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-9)
    flat = np.full((40, 40, 3), 0.3)
    assert np.allclose(convolve(flat, random_shake_psf(np.random.default_rng(0))), 0.3)


def test_region_masks_form_a_partition_of_unity() -> None:
    masks = smooth_masks(np.random.default_rng(0), 50, 60, 3)
    assert masks.shape == (3, 50, 60)
    assert masks.min() >= 0 and np.allclose(masks.sum(axis=0), 1.0)
    assert (masks.max(axis=0) > 0.9).mean() > 0.2  # regions, not a uniform mix


def test_synthesize_blurs_and_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    sharp = np.random.default_rng(1).random((64, 64, 3))
    blurred = synthesize(rng, sharp, BlurSettings(min_length=6))
    assert blurred.shape == sharp.shape
    assert blurred.min() >= 0 and blurred.max() <= 1
    # blur removes high frequencies: neighbouring pixels agree more
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.5 * np.abs(np.diff(sharp, axis=1)).mean()


def test_defocus_and_jpeg_are_drawn_only_when_enabled() -> None:
    sharp = np.random.default_rng(1).random((64, 64, 3))
    plain = synthesize(np.random.default_rng(0), sharp, BlurSettings())
    off = BlurSettings(defocus_prob=0.0, jpeg_prob=0.0, max_defocus=3.0)
    assert np.array_equal(synthesize(np.random.default_rng(0), sharp, off), plain)
    jpeg = synthesize(np.random.default_rng(0), sharp, BlurSettings(jpeg_prob=1.0))
    assert np.allclose(jpeg * 255, np.round(jpeg * 255))  # decoded 8-bit JPEG
    assert not np.allclose(jpeg, plain, atol=2 / 255)
    focus = synthesize(np.random.default_rng(0), sharp, BlurSettings(defocus_prob=1.0))

    def detail(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x, axis=1)).mean())

    assert detail(focus) < detail(plain)  # the same motion blur, plus a disc


def test_disc_psf_is_a_normalised_disc() -> None:
    psf = disc_psf(2.0)
    assert psf.sum() == pytest.approx(1.0) and psf.min() >= 0
    assert psf.shape == (7, 7) and psf[3, 3] == psf.max() and psf[0, 0] == 0
    assert np.allclose(psf, psf.T) and np.allclose(psf, psf[::-1])


def test_short_psfs_stay_within_the_shortest_length() -> None:
    settings = BlurSettings(short_prob=1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        psf = random_psf(rng, settings)
        ys, xs = np.nonzero(psf > 1e-9)
        assert psf.min() >= 0 and psf.sum() == pytest.approx(1.0)
        assert max(np.ptp(ys), np.ptp(xs)) <= settings.min_length + 2  # + bilinear splat
    long = [random_psf(rng, BlurSettings()) for _ in range(20)]
    assert max(max(k.shape) for k in long) > settings.min_length + 3


def _photos() -> list[np.ndarray]:
    g = np.random.default_rng(5)
    return [g.random((80, 90, 3)).astype(np.float32), g.random((70, 100, 3)).astype(np.float32)]


def test_synthetic_dataset_is_deterministic_under_a_seed() -> None:
    a = SyntheticBlurDataset(_photos(), crop=32, seed=7)
    b = SyntheticBlurDataset(_photos(), crop=32, seed=7)
    c = SyntheticBlurDataset(_photos(), crop=32, seed=8)
    for i in (0, 5, 123):
        (ba, sa), (bb, sb) = a[i], b[i]
        assert ba.shape == sa.shape == (32, 32, 3) and ba.dtype == np.float32
        assert np.array_equal(ba, bb) and np.array_equal(sa, sb)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][0], a[1][0])


def _bands() -> np.ndarray:
    """Channel 0 flat 0.2, channel 1 flat 0.6, channel 2 one-pixel 0/1 stripes."""
    bands = np.zeros((120, 120, 3), np.float32)
    bands[:, :, 0], bands[:, :, 1] = 0.2, 0.6
    bands[:, :, 2] = np.tile([0.0, 1.0], 60)[None, :]
    return bands


def test_augmented_crops_are_deterministic_shrunk_and_recoloured() -> None:
    kw = dict(crop=32, seed=3, shuffle_channels=True, flips=False)
    a = SyntheticBlurDataset([_bands()], min_scale=0.5, **kw)
    b = SyntheticBlurDataset([_bands()], min_scale=0.5, **kw)
    full = SyntheticBlurDataset([_bands()], min_scale=1.0, **kw)
    flat_channels, stripe_range, full_range = set(), [], []
    for i in range(12):
        (ba, sa), (bb, sb) = a[i], b[i]
        assert ba.shape == sa.shape == (32, 32, 3) and sa.dtype == np.float32
        assert np.array_equal(ba, bb) and np.array_equal(sa, sb)
        spread = np.ptp(sa.reshape(-1, 3), axis=0)
        flat_channels.add(int(np.argmin(np.abs(sa.reshape(-1, 3).mean(axis=0) - 0.2))))
        stripe_range.append(spread.max())
        full_range.append(np.ptp(full[i][1]))
    assert len(flat_channels) > 1  # the channels really are reordered
    assert np.all(np.array(full_range) == 1.0)  # unshrunk crops keep the 0/1 stripes
    assert np.mean(stripe_range) < 0.9  # shrinking averages neighbouring stripes
    with pytest.raises(SaphnetError, match="min_scale"):
        SyntheticBlurDataset([_bands()], crop=32, min_scale=0.0)


def _write_gopro(root, count: int = 2, size: tuple[int, int] = (40, 48)) -> None:
    g = np.random.default_rng(0)
    for seq in ("GOPR0001_00", "GOPR0002_00"):
        for kind in ("blur", "sharp"):
            (root / seq / kind).mkdir(parents=True)
        for i in range(count):
            img = (g.random((*size, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / seq / "sharp" / f"{i:06d}.png")
            Image.fromarray(img // 2).save(root / seq / "blur" / f"{i:06d}.png")


def test_paired_folder_finds_gopro_pairs_and_crops(tmp_path) -> None:
    _write_gopro(tmp_path)
    (tmp_path / "GOPR0002_00" / "blur" / "999999.png").write_bytes(b"")  # no sharp twin
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == [
        "GOPR0001_00/000000.png",
        "GOPR0001_00/000001.png",
        "GOPR0002_00/000000.png",
        "GOPR0002_00/000001.png",
    ]
    ds = PairedFolderDataset(tmp_path, crop=32, seed=1)
    blurred, sharp = ds[3]
    assert blurred.shape == sharp.shape == (32, 32, 3)
    assert np.allclose(blurred, np.floor(sharp * 255 / 2) / 255, atol=1e-6)
    assert np.array_equal(ds[3][0], PairedFolderDataset(tmp_path, crop=32, seed=1)[3][0])
    whole = PairedFolderDataset(tmp_path, crop=None)
    assert whole[0][0].shape == (40, 48, 3)


def test_training_dataset_falls_back_to_sharp_folder(tmp_path) -> None:
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    ds = training_dataset(tmp_path, crop=32, seed=0)
    assert isinstance(ds, SyntheticBlurDataset)
    assert ds[0][0].shape == (32, 32, 3)


def test_builtin_photos_join_a_sharp_folder_but_not_pairs(tmp_path) -> None:
    pytest.importorskip("skimage")
    from saphnet.data.datasets import BUILTIN_TRAIN

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    ds = training_dataset(tmp_path, crop=32, seed=0, builtin=True)
    assert len(ds.images) == len(BUILTIN_TRAIN) + 1 and ds.images[-1] == tmp_path / "a.png"
    _write_gopro(tmp_path / "pairs")
    with pytest.raises(SaphnetError, match="--synthetic"):
        training_dataset(tmp_path / "pairs", crop=32, seed=0, builtin=True)


def test_empty_data_folder_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(SaphnetError, match="GoPro"):
        find_pairs(tmp_path)
    with pytest.raises(SaphnetError, match="neither"):
        training_dataset(tmp_path, crop=32, seed=0)


def test_bundled_sample_is_reproducible() -> None:
    pytest.importorskip("skimage")
    from saphnet.data.sample import SAMPLE_BLUR, SAMPLE_SHARP, make_sample

    blurred, sharp, psf = make_sample()
    assert np.array_equal(np.asarray(Image.open(SAMPLE_SHARP)), sharp)
    stored = np.asarray(Image.open(SAMPLE_BLUR)).astype(int)
    assert np.abs(stored - blurred.astype(int)).max() <= 1  # FFT rounding may differ by 1 LSB
    assert psf.min() >= 0 and psf.sum() == pytest.approx(1.0)


def test_builtin_photos_load_and_hold_out_the_demo_sample() -> None:
    pytest.importorskip("skimage")
    from saphnet.data.datasets import BUILTIN_HELDOUT, BUILTIN_TRAIN, builtin_images
    from saphnet.data.sample import SAMPLE_SOURCE

    assert SAMPLE_SOURCE in BUILTIN_HELDOUT
    assert not set(BUILTIN_HELDOUT) & set(BUILTIN_TRAIN)
    for image in builtin_images([*BUILTIN_TRAIN, *BUILTIN_HELDOUT]):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert min(image.shape[:2]) >= 160 and image.min() >= 0 and image.max() <= 1
