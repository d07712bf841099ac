"""Tiled inference: exactness with one tile, seamless blending, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from saphnet.errors import SaphnetError
from saphnet.runtime.tiling import (
    axis_starts,
    axis_weights,
    choose_tile,
    deblur_image,
    pad_to_multiple,
    plan_tiles,
)


def identity(batch: np.ndarray) -> np.ndarray:
    assert batch.shape[2] % 16 == 0 and batch.shape[3] % 16 == 0, batch.shape
    return batch.copy()


def position_dependent(batch: np.ndarray) -> np.ndarray:
    """Output depends on where a pixel sits in its tile, so a tile differs from the whole."""
    h, w = batch.shape[2:]
    ramp = np.linspace(0.0, 0.2, w, dtype=np.float32)[None, None, None, :]
    return np.clip(batch * 0.9 + ramp * batch.mean() + 0.01 * h / 64, 0, 1).astype(np.float32)


@pytest.mark.parametrize(
    "length,tile,overlap", [(100, 32, 8), (257, 64, 16), (64, 64, 16), (30, 64, 8), (1000, 256, 64)]
)
def test_axis_weights_are_a_partition_of_unity(length: int, tile: int, overlap: int) -> None:
    starts = axis_starts(length, min(tile, length), overlap)
    t = min(tile, length)
    assert starts[0] == 0 and starts[-1] + t == length
    total = np.zeros(length)
    for s, w in zip(starts, axis_weights(length, t, starts, overlap), strict=True):
        assert (w > 0).all()
        total[s : s + t] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(48, 64), (37, 53), (16, 16), (100, 75)])
def test_one_tile_covering_the_image_equals_untiled_exactly(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((*shape, 3), dtype=np.float32)
    whole = deblur_image(position_dependent, image, tile=None)
    tiled = deblur_image(
        position_dependent, image, tile=512, overlap=64
    )  # tile larger than the image
    np.testing.assert_array_equal(whole, tiled)


def test_tiled_identity_is_exact_on_odd_sizes() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((131, 97, 3), dtype=np.float32)
    out = deblur_image(identity, image, tile=48, overlap=16)
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_uint8_and_uint16_roundtrip_through_identity() -> None:
    rng = np.random.default_rng(2)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        image = rng.integers(0, top + 1, (70, 90, 3)).astype(dtype)
        out = deblur_image(identity, image, tile=32, overlap=8)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, image)


def test_blending_has_no_seams_on_a_smooth_image() -> None:
    """A backend that brightens by a per-tile constant would show steps at tile
    borders without blending; with it, the output stays as smooth as the weights."""
    yy, xx = np.mgrid[0:200, 0:300].astype(np.float32)
    image = np.stack([0.3 + 0.2 * np.sin(xx / 50) * np.cos(yy / 40)] * 3, axis=-1).astype(
        np.float32
    )
    seen = []

    def tile_offset(batch: np.ndarray) -> np.ndarray:
        seen.append(1)
        return batch + 0.01 * (len(seen) % 3)

    out = deblur_image(tile_offset, image, tile=64, overlap=32)
    assert len(seen) > 4
    jump = np.abs(np.diff(out - image, axis=1)).max()
    assert jump < 0.0025  # 0.02 step spread over >= 32 px of raised cosine


def test_constant_image_stays_constant() -> None:
    image = np.full((90, 170, 3), 0.42, np.float32)
    out = deblur_image(identity, image, tile=32, overlap=12)
    np.testing.assert_allclose(out, 0.42, atol=1e-6)


def test_pad_to_multiple_reflects_and_respects_min_shape() -> None:
    x = np.arange(2 * 3 * 20 * 10, dtype=np.float32).reshape(2, 3, 20, 10)
    p = pad_to_multiple(x, 16, min_hw=(64, 16))
    assert p.shape == (2, 3, 64, 16)
    np.testing.assert_array_equal(p[:, :, :20, :10], x)
    q = pad_to_multiple(x[:, :, :18, :], 16)
    np.testing.assert_array_equal(q[:, :, 18, :10], x[:, :, 16, :])  # reflect, no edge repeat


def test_bad_tile_arguments_fail_in_one_line() -> None:
    with pytest.raises(SaphnetError, match="multiple of 16"):
        plan_tiles(100, 100, 50)
    with pytest.raises(SaphnetError, match="smaller than the tile"):
        plan_tiles(100, 100, 64, overlap=64)


def test_choose_tile_follows_profile_and_budget() -> None:
    assert choose_tile(720, 1280, (1088, 1920), 1088 * 1920) is None
    assert choose_tile(4320, 7680, (1088, 1920), 1088 * 1920) == (1088, 1440)
    assert choose_tile(720, 1280, (256, 256), 1 << 30) == (256, 256)
    th, tw = choose_tile(4000, 6000, None, 1 << 20)
    assert th * tw <= 1 << 20 and th % 16 == 0 and tw % 16 == 0


@pytest.mark.slow
def test_8k_image_runs_in_bounded_memory() -> None:
    h, w = 4320, 7680
    image = np.full((h, w, 3), 128, np.uint8)
    tracemalloc.start()
    try:
        out = deblur_image(identity, image, tile=1024, overlap=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (
        out.shape == image.shape and out[::97, ::89].min() == 128 and out[::97, ::89].max() == 128
    )
    float_image = h * w * 3 * 4
    # the output (100 MB) + one band of accumulator (~100 MB) + tiles, far below the
    # ~800 MB of converting input and output to float32
    assert peak < out.nbytes + 3 * 1024 * w * 4 + 16 * 1024 * 1024 * 3 * 4, peak / 1e6
    assert peak < float_image
