"""Building blocks of SAPHNet, each reading like a box of the paper's figure 3.

Reductions over H x W (softmax, global average pooling, the attention products) run
in float32 whatever the features' dtype, so a float16 network (and its ONNX export)
keeps them exact; ``.float()`` on a float32 tensor is free.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import pdf_conv
from ..ops.pdf_conv import pad_for_kernel


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class PlainResBlock(nn.Module):
    """DMPHN resblock: conv-ReLU-conv plus skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class LinearAttention(nn.Module):
    """Spatially-attentive global context, linear in H*W (paper eq. 2-10).

    ``xm = feat * M1`` are the attended features, with ``M1 = sigmoid(conv(feat))`` a
    spatial mask. ``Q = softmax_HW(conv(q_src))`` holds C2 spatial attention maps,
    ``G = xm @ Q^T`` the C2 attention-weighted global descriptors, gated per channel by
    ``M2 = sigmoid(fc(GAP(xm)))``; ``P = softmax_C2(conv(q_src))`` redistributes them
    to every pixel: ``y = (M2 * G) @ P``. For self-attention ``q_src = xm``; for the
    cross encoder-decoder and cross-level attention the maps come from the querying
    branch (``q_src = x``) and the attended features from the other one. No
    H*W x H*W matrix is ever formed.
    """

    def __init__(self, channels: int, maps: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mask = conv3x3(channels, 1)
        self.query = nn.Conv2d(channels, maps, 1)
        self.spread = nn.Conv2d(channels, maps, 1)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        feat = x if context is None else context
        if feat.shape != x.shape:
            raise ValueError(
                f"attention: context {tuple(feat.shape)} must match features {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        m1 = torch.sigmoid(self.mask(feat))
        xm = feat * m1
        q_src = xm if context is None else x
        q = torch.softmax(self.query(q_src).float().flatten(2), dim=2)  # N, C2, HW
        p = torch.softmax(self.spread(q_src).float().flatten(2), dim=1)  # N, C2, HW
        xm32 = xm.float().flatten(2)  # N, C, HW
        g = torch.bmm(xm32, q.transpose(1, 2))  # N, C, C2
        m2 = torch.sigmoid(self.gate(xm32.mean(dim=2).to(x.dtype)).float())  # N, C
        y = torch.bmm(g * m2.unsqueeze(2), p)  # N, C, HW
        return y.view(n, c, h, w).to(x.dtype)


class PDFConv2d(nn.Module):
    """The PDF convolution's learnt filter bank W and bias b (paper eq. 11)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.padding = pad_for_kernel(kernel)
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @staticmethod
    def _under_autocast(x: torch.Tensor) -> bool:
        device = x.device.type  # "meta" (complexity counting) has no autocast at all
        return (
            not torch.onnx.is_in_onnx_export()
            and torch.amp.is_autocast_available(device)
            and torch.is_autocast_enabled(device)
        )

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self._under_autocast(x):
            # Mixed-precision training: autocast hands in bfloat16/float16 features but
            # leaves this op's float32 weights alone. Run it in float32 (as torchvision
            # does under autocast): its backends' backward passes are float32 ones.
            with torch.autocast(x.device.type, enabled=False):
                return pdf_conv(
                    x.float(),
                    offset.float(),
                    mask.float(),
                    self.weight,
                    self.bias,
                    padding=self.padding,
                )
        return pdf_conv(x, offset, mask, self.weight, self.bias, padding=self.padding)


class PixelDependentFiltering(nn.Module):
    """One K x K kernel per pixel, ``V = sigmoid(conv(x))``, shared by all channels,
    sampling at learnt offsets ``offset_max * tanh(conv(x))`` (variant (b)) or on the
    regular grid (variant (a)). The offset conv starts at zero so training starts
    from the regular grid.
    """

    def __init__(self, channels: int, kernel: int, offset_max: float, use_offsets: bool) -> None:
        super().__init__()
        taps = kernel * kernel
        self.taps = taps
        self.offset_max = offset_max
        self.kernel_conv = conv3x3(channels, taps)
        self.offset_conv = conv3x3(channels, 2 * taps) if use_offsets else None
        if self.offset_conv is not None:
            nn.init.zeros_(self.offset_conv.weight)
            nn.init.zeros_(self.offset_conv.bias)
        self.filter = PDFConv2d(channels, kernel)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-pixel kernel V and the offsets (float32), as the paper visualises them."""
        v = torch.sigmoid(self.kernel_conv(x))
        if self.offset_conv is None:
            n, _, h, w = x.shape
            offset = x.new_zeros((n, 2 * self.taps, h, w), dtype=torch.float32)
        else:
            offset = self.offset_max * torch.tanh(self.offset_conv(x).float())
        return v, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, offset = self.maps(x)
        return self.filter(x, offset, v)


class ContentAwareModule(nn.Module):
    """Attention branch and PDF branch fused by a learnt mask (paper eq. 12-13):
    ``y = Mf * y_att + (1 - Mf) * y_dyn`` with ``Mf = sigmoid(conv(x))``.
    """

    def __init__(
        self,
        channels: int,
        maps: int,
        kernel: int,
        offset_max: float,
        use_offsets: bool,
        reduction: int,
    ) -> None:
        super().__init__()
        self.attention = LinearAttention(channels, maps, reduction)
        self.pdf = PixelDependentFiltering(channels, kernel, offset_max, use_offsets)
        self.fusion = conv3x3(channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        y_att = self.attention(x, context)
        y_dyn = self.pdf(x)
        mf = torch.sigmoid(self.fusion(x))
        return mf * y_att + (1 - mf) * y_dyn


class ContentAwareResBlock(nn.Module):
    """conv 3x3 -> content-aware module -> conv 3x3, plus skip."""

    def __init__(
        self,
        channels: int,
        maps: int,
        kernel: int,
        offset_max: float,
        use_offsets: bool,
        reduction: int,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.cam = ContentAwareModule(channels, maps, kernel, offset_max, use_offsets, reduction)
        self.conv2 = conv3x3(channels, channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.conv2(self.cam(self.act(self.conv1(x)), context))
