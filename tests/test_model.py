"""SAPHNet: shapes, variants, weights files, and attention memory linear in H*W."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from saphnet.errors import SaphnetError, WeightsError
from saphnet.model import SAPHNet, SAPHNetConfig
from saphnet.model.blocks import LinearAttention
from saphnet.model.complexity import measure


@pytest.mark.parametrize(("batch", "h", "w"), [(1, 101, 77), (1, 64, 96), (2, 37, 50), (1, 8, 12)])
def test_output_shape_matches_input(tiny_config, batch, h, w):
    model = SAPHNet(tiny_config).eval()
    x = torch.rand(batch, 3, h, w)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("use_offsets", [False, True])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_variants_and_levels_run_and_train(tiny_config, use_offsets, levels):
    config = dataclasses.replace(tiny_config, use_offsets=use_offsets, levels=levels)
    model = SAPHNet(config).train()
    x = torch.rand(2, 3, 32, 48)
    loss = (model(x) - x).abs().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    has_offsets = any("offset_conv" in name for name, _ in model.named_parameters())
    assert has_offsets == use_offsets


def test_default_config_forward_on_odd_size():
    model = SAPHNet().eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 101, 77))
    assert y.shape == (1, 3, 101, 77)


def test_batch_items_are_independent(tiny_config):
    model = SAPHNet(tiny_config).eval()
    x = torch.rand(2, 3, 48, 32)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_is_bit_equal(tiny_config, tmp_path):
    model = SAPHNet(tiny_config).eval()
    path = tmp_path / "w.safetensors"
    model.save(path)
    loaded = SAPHNet.load(path)
    assert loaded.config == tiny_config
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_refuses_to_overwrite_without_force(tiny_config, tmp_path):
    model = SAPHNet(tiny_config)
    path = tmp_path / "w.safetensors"
    model.save(path)
    with pytest.raises(SaphnetError, match="exists; pass --force"):
        model.save(path)
    model.save(path, force=True)


def test_load_rejects_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"does not exist; give a SAPHNet \.safetensors file"):
        SAPHNet.load(tmp_path / "nope.safetensors")


def test_load_rejects_non_safetensors_file(tmp_path):
    path = tmp_path / "image.safetensors"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(WeightsError, match="is not a safetensors file"):
        SAPHNet.load(path)


def test_load_rejects_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not SAPHNet weights"):
        SAPHNet.load(path)


def test_load_rejects_file_for_another_config(tiny_config, tmp_path):
    path = tmp_path / "w.safetensors"
    SAPHNet(tiny_config).save(path)
    other = dataclasses.replace(tiny_config, pdf_kernel=5)
    with pytest.raises(WeightsError, match=r"made for another config: pdf_kernel=3 \(expected 5\)"):
        SAPHNet.load(path, other)


def test_load_rejects_tensors_that_do_not_match_the_stored_config(tiny_config, tmp_path):
    path = tmp_path / "w.safetensors"
    state = SAPHNet(tiny_config).state_dict()
    missing = next(iter(state))
    state.pop(missing)
    config_json = tiny_config.to_json()
    save_file(dict(state), str(path), metadata={"format": "saphnet", "config": config_json})
    with pytest.raises(WeightsError, match=rf"tensor {missing} is missing .* config and tensors"):
        SAPHNet.load(path)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="pdf_kernel must be odd"):
        SAPHNetConfig(pdf_kernel=4)
    with pytest.raises(ValueError, match="levels must be 1, 2 or 3"):
        SAPHNetConfig(levels=4)
    with pytest.raises(ValueError, match="unknown fields"):
        SAPHNetConfig.from_json(json.dumps({"depth": 3}))


def test_attention_memory_is_linear_in_hw():
    # An HW x HW attention matrix at 512x512 would need 256 GiB; the linear form needs MBs.
    attention = LinearAttention(128, 16, 4).eval()
    x = torch.rand(1, 128, 512, 512)
    with torch.no_grad():
        y = attention(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_cross_attention_requires_matching_context():
    attention = LinearAttention(8, 4, 2)
    with pytest.raises(ValueError, match=r"context \(1, 8, 4, 4\) must match features"):
        attention(torch.rand(1, 8, 8, 8), torch.rand(1, 8, 4, 4))


def test_complexity_counts_every_pdf_convolution():
    config = SAPHNetConfig()
    c = measure(config, 64, 64)
    assert c.parameters == sum(p.numel() for p in SAPHNet(config).parameters())
    # 3 levels x (3 encoder + 3 decoder) PDF convs, each 128*128*25 MACs per 1/4-res pixel.
    per_op = 128 * 128 * 25 * (64 // 4) * (64 // 4)
    assert c.pdf_macs == 18 * per_op
    assert 0 < c.pdf_share < 1
