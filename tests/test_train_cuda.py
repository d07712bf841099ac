"""GPU training paths on a CUDA device: batched blur there, bf16 autocast with the PDF
op's backward, channels-last, a budgeted run, the gpu-short preset's step."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from saphnet.data.batched_blur import random_psfs, shake_trajectories
from saphnet.data.datasets import TRAIN_BLUR, builtin_image
from saphnet.data.device_batches import DeviceBlurBatches, generator
from saphnet.train.presets import GPU_SHORT_CONFIG, RECIPES
from saphnet.train.settings import TrainSettings
from saphnet.train.trainer import Trainer

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

DEVICE = torch.device("cuda")


def _source(crop: int = 64, batch: int = 4) -> DeviceBlurBatches:
    images = [builtin_image("camera"), builtin_image("astronaut")]
    return DeviceBlurBatches(
        images, crop, batch, seed=0, device=DEVICE, settings=TRAIN_BLUR, pool_size=16
    )


def test_batches_are_made_on_the_gpu_and_reproducible() -> None:
    source = _source()
    blurred, sharp = source.batch(2)
    assert blurred.device.type == sharp.device.type == "cuda"
    assert source.pool.pool.device.type == "cuda"
    assert blurred.shape == sharp.shape == (4, 3, 64, 64)
    assert float(blurred.min()) >= 0 and float(blurred.max()) <= 1
    again = source.batch(2)
    assert torch.equal(again[0], blurred)


def test_gpu_psfs_are_normalised() -> None:
    bank = shake_trajectories(64, generator(DEVICE, 0, 1), device=DEVICE)
    psfs = random_psfs(128, bank, TRAIN_BLUR, generator(DEVICE, 0, 2))
    assert float(psfs.min()) >= 0
    np.testing.assert_allclose(psfs.sum(dim=(1, 2)).cpu().numpy(), 1.0, atol=1e-5)


def test_mixed_precision_budgeted_run(tmp_path, tiny_config) -> None:
    budget = 3.0
    settings = TrainSettings(
        iterations=10**6,
        batch_size=4,
        crop=64,
        lr=1e-3,
        schedule="cosine",
        time_budget_s=budget,
        val_every=10**6,
        checkpoint_every=10**6,
    )
    trainer = Trainer(tiny_config, settings, _source(), None, tmp_path, DEVICE)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert trainer.amp_dtype == expected and trainer.channels_last
    if importlib.util.find_spec("torchvision") is not None:
        assert trainer.pdf_backends["train"] == "torchvision"  # the plugin has no backward
    result = trainer.fit()
    assert budget <= result.last_step_s <= budget + result.throughput["max_step_s"]
    assert result.throughput["gpu_memory_gib"] > 0
    assert result.iteration > 30  # past the profiled window of steps 10-29
    assert 0 < result.throughput["gpu_busy_fraction"] <= 1.05
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_gpu_short_preset_steps(tmp_path) -> None:
    recipe = {k: v for k, v in RECIPES["gpu-short"].items() if k != "time_budget_s"}
    settings = TrainSettings(**{**recipe, "iterations": 3})  # type: ignore[arg-type]
    source = _source(crop=settings.crop, batch=settings.batch_size)
    trainer = Trainer(GPU_SHORT_CONFIG, settings, source, None, tmp_path, DEVICE)
    losses = [trainer.step(*source.batch(i))[0] for i in range(3)]
    assert all(np.isfinite(losses))
