"""The shipped checkpoint does its job: it deblurs photos it never saw, and leaves
sharp ones alone. Guards against shipping a broken or untrained file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saphnet.data.datasets import heldout_dataset
from saphnet.model import SAPHNet
from saphnet.train.evaluate import deblur_array, evaluate
from saphnet.train.metrics import psnr
from saphnet.weights import default_weights

CPU = torch.device("cpu")
# Floors well under what the shipped file measures (README: +0.47 dB on these six,
# 34.4 dB on the sharp crop), above what an untrained or broken file gives.
MIN_HELDOUT_GAIN_DB = 0.2
MIN_SHARP_PSNR_DB = 30.0


@pytest.fixture(scope="module")
def shipped() -> SAPHNet:
    weights = default_weights()
    if weights is None:
        pytest.fail("saphnet/weights/saphnet_small.safetensors is missing from the package")
    return SAPHNet.load(weights)


def test_shipped_weights_deblur_the_heldout_set(shipped: SAPHNet) -> None:
    pytest.importorskip("skimage")
    data = heldout_dataset(crop=None, count=6)
    pairs = (("heldout", *data[i]) for i in range(len(data)))
    report = evaluate(lambda b: deblur_array(shipped, b, CPU), pairs)
    assert report.as_dict()["mean"]["psnr_gain"] > MIN_HELDOUT_GAIN_DB


def test_shipped_weights_leave_a_sharp_photo_nearly_unchanged(shipped: SAPHNet) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    sharp = skimage_data.chelsea()[:192, :256].astype(np.float32) / 255.0
    assert psnr(deblur_array(shipped, sharp, CPU), sharp) > MIN_SHARP_PSNR_DB
