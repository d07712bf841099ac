"""``saphnet.runtime.deblur`` guards: non-finite inputs and outputs are errors that
name the cause, the default tiles follow a memory budget, and bad weights fail before
any export is announced (issue 15, items 1, 5 and 6)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from saphnet.runtime.api import NonFiniteError, cached_onnx, deblur, open_backend, plan_tile
from saphnet.runtime.memory import PEAK_MODELS, estimate_peak_mb, max_tile_pixels


class FakeBackend:
    """Returns its input, or NaN where told to; no model needed."""

    def __init__(self, name: str = "onnxruntime", precision: str = "fp32", nan: bool = False):
        self.name, self.precision, self.nan = name, precision, nan

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = batch.copy()
        if self.nan:
            out[0, 0, 0, 0] = np.nan
        return out

    def close(self) -> None:
        pass


def test_nan_output_names_what_was_seen_in_fp32_and_fp16_overflow_in_fp16() -> None:
    rgb = np.full((40, 40, 3), 100, np.uint8)
    with pytest.raises(NonFiniteError, match=r"activations became non-finite.*weights that hold"):
        deblur(FakeBackend(nan=True), rgb)
    with pytest.raises(NonFiniteError, match="FP16 overflowed"):
        deblur(FakeBackend(precision="fp16", nan=True), rgb)
    np.testing.assert_array_equal(deblur(FakeBackend(), rgb), rgb)


def test_nan_input_is_named_as_the_cause() -> None:
    rgb = np.full((40, 40, 3), 0.5, np.float32)
    rgb[3, 4, 1] = np.inf
    with pytest.raises(NonFiniteError, match="input image holds NaN/Inf"):
        deblur(FakeBackend(), rgb)


@pytest.mark.parametrize("kind", ["onnxruntime", "torch"])
def test_default_tiles_keep_the_estimate_within_the_budget(kind: str) -> None:
    backend = FakeBackend(kind)
    for h, w in ((3000, 4000), (4320, 7680)):
        for budget in (512, 1024, 2048):
            tile = plan_tile(backend, h, w, 0, 64, budget)
            assert tile is not None
            th, tw = tile
            assert th % 16 == 0 and tw % 16 == 0 and th >= 128
            if estimate_peak_mb(PEAK_MODELS[kind], 144, 144, h, w) > budget:
                assert (th, tw) == (144, 144)  # cannot fit: the smallest tiles (> 2 overlaps)
                continue
            assert estimate_peak_mb(PEAK_MODELS[kind], th, tw, h, w) <= budget
            # and not needlessly small: one more step of 16 would not fit
            assert estimate_peak_mb(PEAK_MODELS[kind], th + 16, tw + 16, h, w) > budget
    # A 12 MP photo no longer runs in 1440-px tiles (3.3 GB measured) by default.
    th, tw = plan_tile(backend, 3000, 4000)
    assert th * tw < 1100 * 1100
    assert plan_tile(backend, 480, 640) is None  # small images stay whole


def test_budget_scales_with_the_network_width() -> None:
    wide = FakeBackend()
    wide.config = SimpleNamespace(widths=(32, 64, 128))  # as a SAPHNetConfig has
    assert plan_tile(wide, 3000, 4000)[0] < plan_tile(FakeBackend(), 3000, 4000)[0]


def test_too_small_a_budget_warns_and_runs_the_smallest_tiles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        pixels = max_tile_pixels(PEAK_MODELS["torch"], 128, 3000, 4000)
    assert pixels == 128 * 128
    assert "raise --memory-budget" in caplog.text


def test_tile_progress_reports_done_and_total() -> None:
    calls = []
    deblur(
        FakeBackend(),
        np.zeros((100, 100, 3), np.uint8),
        32,
        8,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1][0] == calls[-1][1] == len(calls) and len(calls) > 1


def test_bad_weights_fail_before_the_export_is_announced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from saphnet.errors import WeightsError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with caplog.at_level(logging.INFO), pytest.raises(WeightsError):
        open_backend("onnxruntime", weights=bad)
    assert "exporting" not in caplog.text
    with pytest.raises(WeightsError):
        cached_onnx(bad)
