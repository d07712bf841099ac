"""Parameter and multiply-accumulate counts, measured by running the network on the
``meta`` device (shapes only, no memory, no arithmetic), so 720p costs nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..ops import forced_backend, register_backend
from .blocks import LinearAttention, PDFConv2d
from .config import SAPHNetConfig
from .network import SAPHNet


@dataclass(frozen=True)
class Complexity:
    """Counts for one image of ``height`` x ``width`` (batch 1; patches of a level count
    together)."""

    height: int
    width: int
    parameters: int
    macs: int
    pdf_macs: int
    attention_macs: int

    @property
    def pdf_share(self) -> float:
        return self.pdf_macs / self.macs if self.macs else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "pdf_share": self.pdf_share}


def _conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        return inputs[0].numel() * module.out_channels * kh * kw // module.groups
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, PDFConv2d):
        c_in = inputs[0].shape[1]
        return out.numel() * c_in * module.kernel * module.kernel
    if isinstance(module, LinearAttention):
        n, c, hw = out.shape[0], out.shape[1], out.shape[2] * out.shape[3]
        maps = module.query.out_channels
        return 2 * n * c * maps * hw  # G = xm Q^T and y = G P
    return 0


def _pdf_shape_only(x, offset, mask, weight, bias, stride, padding, dilation) -> torch.Tensor:
    """The PDF op's output without its arithmetic (the offsets carry the output size):
    tracing the reference's gathers on ``meta`` takes PyTorch's Python meta kernels tens
    of seconds for the paper's network."""
    return x.new_empty(x.shape[0], weight.shape[0], offset.shape[2], offset.shape[3])


register_backend("meta-shapes", _pdf_shape_only, lambda *_: False, priority=-100)


def _trace(
    config: SAPHNetConfig, height: int, width: int, kinds: tuple[type, ...], hook
) -> SAPHNet:
    """Run the network on the ``meta`` device with ``hook`` on every module of ``kinds``."""
    with torch.device("meta"):
        model = SAPHNet(config).eval()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad(), forced_backend("meta-shapes"):
            model(torch.empty(1, config.in_channels, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return model


def measure(config: SAPHNetConfig, height: int, width: int) -> Complexity:
    """Parameters and MACs of the network for one ``height`` x ``width`` image."""
    totals = {"all": 0, "pdf": 0, "attention": 0}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        macs = _conv_macs(module, inputs, out)
        totals["all"] += macs
        if isinstance(module, PDFConv2d):
            totals["pdf"] += macs
        elif isinstance(module, LinearAttention):
            totals["attention"] += macs

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, PDFConv2d, LinearAttention)
    model = _trace(config, height, width, kinds, hook)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(height, width, params, totals["all"], totals["pdf"], totals["attention"])


def pdf_layer_shapes(
    config: SAPHNetConfig, height: int, width: int
) -> list[tuple[int, int, int, int, int]]:
    """(N, C, H, W, K) of the input of every PDF convolution call for one image, in call
    order: what the kernels must be right and fast at (the patch levels run batched)."""
    shapes = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        n, c, h, w = inputs[0].shape
        shapes.append((int(n), int(c), int(h), int(w), module.kernel))

    _trace(config, height, width, (PDFConv2d,), hook)
    return shapes
