"""Shared fixtures: tiny configs keep model tests fast on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saphnet.model import SAPHNet, SAPHNetConfig
from saphnet.model.blocks import PixelDependentFiltering

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


@pytest.fixture
def one_thread():
    """Two OpenMP threads on a shared 2-core machine run ~10x slower than one: training
    and inspection tests ask for one (``pytestmark = pytest.mark.usefixtures``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_model_with_offsets() -> SAPHNet:
    """TINY with non-zero offset convs (they start at zero), so exported PDF ops sample
    off the grid; seeded, independent of the test order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = SAPHNet(TINY).eval()
        with torch.no_grad():
            for block in model.modules():
                if isinstance(block, PixelDependentFiltering) and block.offset_conv is not None:
                    block.offset_conv.weight.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TINY weights file (export, ONNX Runtime and compare tests share it)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    _tiny_model_with_offsets().save(path)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_weights`` exported once (custom op, FP32, dynamic): the export costs seconds."""
    from saphnet.export import export_onnx
    from saphnet.export.reference_weights import weights_tag

    path = tmp_path_factory.mktemp("onnx") / "tiny_custom_fp32.onnx"
    model = SAPHNet.load(tiny_weights)
    return export_onnx(model, path, weights_sha256=weights_tag(tiny_weights))
