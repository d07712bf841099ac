"""The checkpoint gate: a candidate replaces the shipped weights only if it is better on
held-out and real pairs and harmless on sharp photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from saphnet.model import SAPHNet
from saphnet.train.gate import SHARP_MARGIN_DB, check_candidate, sharp_pairs
from saphnet.train.metrics import psnr
from saphnet.train.trainer import start_at_identity

pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs(root) -> None:
    g = np.random.default_rng(0)
    for kind in ("blur", "sharp"):
        (root / "s1" / kind).mkdir(parents=True)
        Image.fromarray(g.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(
            root / "s1" / kind / "0001.png"
        )


def test_sharp_pairs_are_noisy_but_unblurred() -> None:
    for _, noisy, clean in sharp_pairs():
        assert 35 < psnr(noisy, clean) < 60  # mild noise only


@pytest.mark.slow
def test_identity_candidate_is_harmless_but_not_better(tmp_path, tiny_config) -> None:
    model = SAPHNet(tiny_config)
    start_at_identity(model)
    weights = tmp_path / "identity.safetensors"
    model.save(weights)
    _pairs(tmp_path / "real")
    result, reports = check_candidate(weights, weights, tmp_path / "real", count=2)
    checks = {c.name: c for c in result.checks}
    assert not checks["held-out synthetic"].passed  # equal is not better
    assert not checks["real pairs"].passed
    assert checks["sharp images"].passed and checks["sharp images"].candidate == pytest.approx(0)
    assert not result.replace and "keep" in result.table()
    assert set(reports) == {"heldout", "real", "sharp"}


@pytest.mark.slow
def test_a_candidate_that_harms_sharp_photos_is_refused(tmp_path, tiny_config) -> None:
    harmful = tmp_path / "random.safetensors"
    SAPHNet(tiny_config).save(harmful)  # random decoder heads: adds a random residual
    shipped = tmp_path / "identity.safetensors"
    model = SAPHNet(tiny_config)
    start_at_identity(model)
    model.save(shipped)
    result, _ = check_candidate(harmful, shipped, None, count=2)
    checks = {c.name: c for c in result.checks}
    assert checks["sharp images"].candidate < -SHARP_MARGIN_DB
    assert not checks["sharp images"].passed
    assert "no real pairs" in checks["real pairs"].detail and not result.replace
