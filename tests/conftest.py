"""Shared fixtures: tiny configs keep model tests fast on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from saphnet.model import SAPHNetConfig

TINY = SAPHNetConfig(
    widths=(8, 16, 32),
    plain_resblocks=1,
    encoder_resblocks=1,
    decoder_resblocks=1,
    attention_maps=4,
    pdf_kernel=3,
)


@pytest.fixture
def tiny_config() -> SAPHNetConfig:
    return TINY


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
