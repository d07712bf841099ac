"""The server's batch path without a server: batches split by the memory budget and
an engine profile's N, each image with the bytes ``runtime.deblur`` gives it alone,
tiling for images over the profile, and the request checks."""

from __future__ import annotations

import numpy as np
import pytest

from saphnet.errors import SaphnetError
from saphnet.runtime.api import deblur, deblur_batch, pixel_budget
from saphnet.runtime.profiles import Profile
from saphnet.serve import INPUT_NAME, OUTPUT_NAME
from saphnet.serve.server import DeblurModel, check_request


class FakeEngine:
    """An engine-like backend: a profile, and a position-dependent output so that
    padding, cropping and tiling mistakes change the bytes."""

    name = "fake"
    precision = "fp32"

    def __init__(self, max_n: int = 2, max_side: int = 64) -> None:
        self.profile = Profile(
            "input", (1, 3, 32, 32), (1, 3, 32, 32), (max_n, 3, max_side, max_side)
        )
        self.calls: list[tuple[int, ...]] = []

    @property
    def min_hw(self) -> tuple[int, int]:
        return self.profile.min[2], self.profile.min[3]

    @property
    def max_hw(self) -> tuple[int, int]:
        return self.profile.max[2], self.profile.max[3]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        assert self.profile.contains(batch.shape), batch.shape
        self.calls.append(batch.shape)
        h, w = batch.shape[2:]
        ramp = np.linspace(0.0, 0.2, h * w, dtype=np.float32).reshape(1, 1, h, w)
        return np.clip(0.7 * batch + ramp, 0.0, 1.0)

    def close(self) -> None:
        pass


def _images(n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_batches_follow_the_profile_and_match_one_by_one() -> None:
    engine = FakeEngine(max_n=2)
    images = _images(5, 20, 30)
    out = deblur_batch(engine, images)
    assert [shape[0] for shape in engine.calls] == [2, 2, 1]
    assert all(shape[2:] == (32, 32) for shape in engine.calls)  # padded up to the profile
    for image, got in zip(images, out, strict=True):
        assert np.array_equal(got, deblur(FakeEngine(), image))


def test_memory_budget_splits_batches() -> None:
    engine = FakeEngine(max_n=8, max_side=128)
    side = 128 * 128
    # the smallest budget whose estimate lets one call hold three 128x128 images
    budget = next(
        mb for mb in range(128, 4096) if pixel_budget(engine, 128, 128, 64, mb) >= 3 * side
    )
    assert pixel_budget(engine, 128, 128, 64, budget) < 4 * side
    deblur_batch(engine, _images(7, 128, 128), memory_budget_mb=budget)
    assert [shape[0] for shape in engine.calls] == [3, 3, 1]
    engine.calls.clear()
    deblur_batch(engine, _images(7, 128, 128), memory_budget_mb=8192)
    assert [shape[0] for shape in engine.calls] == [7]  # a roomy budget: one call


def test_images_over_the_profile_are_tiled_one_by_one() -> None:
    engine = FakeEngine(max_n=4, max_side=128)
    images = _images(2, 200, 180)
    out = deblur_batch(engine, images)
    assert all(shape[0] == 1 and max(shape[2:]) <= 128 for shape in engine.calls)
    assert len(engine.calls) > 2  # several tiles per image
    for image, got in zip(images, out, strict=True):
        assert np.array_equal(got, deblur(FakeEngine(max_n=4, max_side=128), image))


def test_model_groups_requests_by_size_and_keeps_their_order() -> None:
    model = DeblurModel(FakeEngine(max_n=4), max_side=128, memory_budget_mb=1 << 20)
    a, b = _images(2, 20, 30), _images(1, 40, 24)
    out = model([{INPUT_NAME: a[:1]}, {INPUT_NAME: b}, {INPUT_NAME: a[1:]}])
    assert [o[OUTPUT_NAME].shape for o in out] == [(1, 20, 30, 3), (1, 40, 24, 3), (1, 20, 30, 3)]
    assert np.array_equal(out[2][OUTPUT_NAME][0], deblur(FakeEngine(), a[1]))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 32, 32, 3), np.float32), "send UINT8"),
        (np.zeros((1, 32, 32), np.uint8), r"send \[batch, H, W, 3\]"),
        (np.zeros((1, 32, 32, 4), np.uint8), r"send \[batch, H, W, 3\]"),
        (np.zeros((1, 15, 32, 3), np.uint8), "side under 16 px"),
        (np.zeros((1, 16, 129, 3), np.uint8), "limit of 128 px"),
    ],
)
def test_request_checks(array: np.ndarray, message: str) -> None:
    with pytest.raises(SaphnetError, match=message):
        check_request(array, max_side=128)
