"""Inspection: the PNGs of every module and the offset-direction check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from saphnet.cli import main
from saphnet.model import SAPHNet
from saphnet.train.inspect import (
    content_aware_modules,
    direction_check,
    orientation_of,
    run_and_record,
    sampling_covariance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _offsets_along(dx: float, dy: float, k: int = 3) -> torch.Tensor:
    """Offsets that move the K*K taps onto a line along (dx, dy), dy pointing down."""
    r = k // 2
    off = torch.zeros(1, 2 * k * k, 4, 4)
    for t in range(k * k):
        ky, kx = t // k - r, t % k - r
        s = t - (k * k - 1) / 2  # position along the line
        off[0, 2 * t] = s * dy - ky
        off[0, 2 * t + 1] = s * dx - kx
    return off


def test_sampling_orientation_follows_the_offsets() -> None:
    v = torch.ones(1, 9, 4, 4)
    iso = sampling_covariance(v, torch.zeros(1, 18, 4, 4), 3)
    _, aniso = orientation_of(*(c.numpy() for c in iso))
    assert np.allclose(aniso, 0.0, atol=1e-6)  # the regular grid is round
    for (dx, dy), expected in (((1, 0), 0.0), ((0, -1), 90.0), ((1, -1), 45.0), ((1, 1), 135.0)):
        cov = sampling_covariance(v, _offsets_along(dx, dy), 3)
        angle, aniso = orientation_of(*(c.numpy() for c in cov))
        assert np.allclose(angle, expected, atol=1e-3), (dx, dy)
        assert np.allclose(aniso, 1.0, atol=1e-4)  # all taps on one line


def test_maps_cover_every_module_and_the_whole_image(tiny_config) -> None:
    model = SAPHNet(tiny_config)
    image = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    out, records = run_and_record(model, image, q_maps=2)
    assert out.shape == image.shape
    assert sorted(r.name for r in records) == sorted(n for n, _, _ in content_aware_modules(model))
    # Q is a softmax over each patch's pixels; the network runs level 3's encoder on
    # 4 patches and its decoder on 2 halves, level 2's encoder on 2 halves.
    patches = {
        "level1_encoder0": 1,
        "level1_decoder0": 1,
        "level2_encoder0": 2,
        "level2_decoder0": 1,
        "level3_encoder0": 4,
        "level3_decoder0": 2,
    }
    for r in records:
        assert r.m1.shape == r.fusion.shape == r.kernel_var.shape == (12, 16), r.name
        assert len(r.q) == 2 and r.orientation.shape == (12, 16)
        assert r.m1.min() >= 0 and r.m1.max() <= 1
        assert np.allclose(r.q[0].sum(), patches[r.name], atol=1e-3), r.name


def test_direction_check_has_a_row_per_angle_and_level(tiny_config) -> None:
    sharp = np.random.default_rng(0).random((32, 32, 3))
    rows = direction_check(SAPHNet(tiny_config), sharp, angles=(0.0, 90.0), length=5.0)
    assert [(r.blur_angle, r.level) for r in rows] == [
        (a, lv) for a in (0.0, 90.0) for lv in (1, 2, 3)
    ]
    assert all(0 <= r.orientation < 180 and 0 <= r.error <= 90 for r in rows)


def test_inspect_cli_writes_pngs_and_the_table(tmp_path, tiny_config, capsys) -> None:
    weights = tmp_path / "w.safetensors"
    SAPHNet(tiny_config).save(weights)
    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)).save(
        image
    )
    out = tmp_path / "maps"
    argv = ["inspect", str(image), "-o", str(out), "--weights", str(weights), "--q-maps", "2"]
    assert main(argv) == 0
    modules = len(list(content_aware_modules(SAPHNet(tiny_config))))
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 + modules * (4 + 2)
    for name in (
        "level1_encoder0_m1",
        "level1_encoder0_offsets",
        "level2_decoder0_kernel_var",
        "level3_encoder0_fusion",
        "level3_encoder0_q1",
        "deblurred",
    ):
        with Image.open(out / f"{name}.png") as im:
            assert im.size == (52, 40) and im.mode == "RGB"
    table = capsys.readouterr().out
    assert "blur angle" in table and "level 3: mean orientation error" in table
    rows = json.loads((out / "direction_check.json").read_text())
    assert sorted({r["blur_angle"] for r in rows}) == [0.0, 45.0, 90.0, 135.0]
    assert main(argv) == 2  # folder holds files, no --force
