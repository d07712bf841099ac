"""The pixel-dependent filtering (PDF) operator: modulated deformable convolution.

This module is the ground truth for every other implementation of the operator
(the ONNX function body, the CUDA kernels, the TensorRT plugin): each one is tested
against :func:`pdf_conv_reference`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dispatch import select_backend

IntPair = int | tuple[int, int]

__all__ = ["PDFGeometry", "output_size", "pdf_conv", "pdf_conv_reference"]


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"pdf_conv: {name} must be an int or a pair, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class PDFGeometry:
    """Stride, padding and dilation of one PDF convolution, as (h, w) pairs."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @classmethod
    def of(cls, stride: IntPair, padding: IntPair, dilation: IntPair) -> PDFGeometry:
        geometry = cls(
            _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
        )
        if min(geometry.stride) < 1 or min(geometry.dilation) < 1 or min(geometry.padding) < 0:
            raise ValueError(
                f"pdf_conv: stride and dilation must be >= 1 and padding >= 0, got {geometry}"
            )
        return geometry


def output_size(
    height: int, width: int, kernel: tuple[int, int], geometry: PDFGeometry
) -> tuple[int, int]:
    """Output height and width, with the same formula as Conv2d and ONNX DeformConv."""
    sizes = []
    for size, k, s, p, d in zip(
        (height, width), kernel, geometry.stride, geometry.padding, geometry.dilation, strict=True
    ):
        sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return sizes[0], sizes[1]


def _check_shapes(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: PDFGeometry,
) -> tuple[int, int]:
    """Validate every input against x and weight; messages name both sizes."""
    for name, t in (("x", x), ("offset", offset), ("mask", mask), ("weight", weight)):
        if t.dim() != 4:
            raise ValueError(f"pdf_conv: {name} must be 4-D, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"pdf_conv: {name} must be a floating tensor, got {t.dtype}")
    n, c_in, h, w = x.shape
    _, w_cin, kh, kw = weight.shape
    if w_cin != c_in:
        raise ValueError(
            f"pdf_conv: weight has {w_cin} input channels but x has {c_in} "
            f"(weight {tuple(weight.shape)}, x {tuple(x.shape)})"
        )
    ho, wo = output_size(h, w, (kh, kw), geometry)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"pdf_conv: input {h}x{w} is too small for a {kh}x{kw} kernel with {geometry}"
        )
    taps = kh * kw
    expected = {"offset": (n, 2 * taps, ho, wo), "mask": (n, taps, ho, wo)}
    for name, t in (("offset", offset), ("mask", mask)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(
                f"pdf_conv: {name} has shape {tuple(t.shape)} but x {tuple(x.shape)} and a "
                f"{kh}x{kw} kernel need {expected[name]}"
            )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"pdf_conv: bias has shape {tuple(bias.shape)} but weight has "
            f"{weight.shape[0]} output channels"
        )
    dtypes = {t.dtype for t in (x, weight) if t is not None}
    if len(dtypes) != 1:
        raise TypeError(f"pdf_conv: x is {x.dtype} but weight is {weight.dtype}; cast one")
    return ho, wo


def _sample_tap(
    flat: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Bilinear sample of ``flat`` (N, C, H*W) at points (N, P); zero outside.

    Each of the four corners contributes only when it lies inside the image, which is
    exactly torchvision's and ONNX DeformConv's rule (and GridSample's "zeros" padding).
    The sum is accumulated in the points' dtype (float32 or float64).
    """
    y0 = torch.floor(sy)
    x0 = torch.floor(sx)
    ly = sy - y0
    lx = sx - x0
    acc = None
    for dy, wy in ((0, 1.0 - ly), (1, ly)):
        for dx, wx in ((0, 1.0 - lx), (1, lx)):
            yc = y0 + dy
            xc = x0 + dx
            inside = (yc >= 0) & (yc <= height - 1) & (xc >= 0) & (xc <= width - 1)
            weight = wy * wx * inside
            index = (yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1)).long()
            values = flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1))
            term = values.to(weight.dtype) * weight.unsqueeze(1)
            acc = term if acc is None else acc + term
    assert acc is not None
    return acc


def pdf_conv_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Pure-PyTorch PDF convolution: one bilinear gather and one GEMM per kernel tap.

    It needs nothing beyond torch, runs on any device, is differentiable with respect
    to every input, and never materialises the full (C*K*K) x (Ho*Wo) im2col matrix:
    memory per tap is one C x Ho*Wo slice. Sampling positions and bilinear weights are
    float32 whatever the input dtype, because float16 cannot hold pixel coordinates of
    large images to sub-pixel precision (float64 inputs keep float64 throughout).
    """
    geometry = PDFGeometry.of(stride, padding, dilation)
    ho, wo = _check_shapes(x, offset, mask, weight, bias, geometry)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    device = x.device
    coord = torch.promote_types(x.dtype, torch.float32)
    base_y = (torch.arange(ho, device=device, dtype=coord) * sh - ph).view(ho, 1)
    base_x = (torch.arange(wo, device=device, dtype=coord) * sw - pw).view(1, wo)
    offsets = offset.to(coord).view(n, taps, 2, ho, wo)
    flat = x.reshape(n, c_in, h * w)
    out = None
    for k in range(taps):
        ky, kx = divmod(k, kw)
        sy = (base_y + ky * dh + offsets[:, k, 0]).reshape(n, ho * wo)
        sx = (base_x + kx * dw + offsets[:, k, 1]).reshape(n, ho * wo)
        sampled = _sample_tap(flat, sy, sx, h, w)
        sampled = (sampled * mask[:, k].to(coord).reshape(n, 1, ho * wo)).to(x.dtype)
        term = torch.matmul(weight[:, :, ky, kx], sampled)
        out = term if out is None else out + term
    assert out is not None
    out = out.view(n, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1).to(out.dtype)
    return out


def pdf_conv_gridsample(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """The reference's maths through ``F.grid_sample``: about ten times faster on CPU.

    Taps are sampled in groups whose buffer stays under ``_GRID_BUDGET`` elements, so
    memory is bounded whatever the image size. Only for float32/float64: grid_sample
    normalises coordinates in the input's dtype, which float16 cannot hold to
    sub-pixel precision on large images. ``align_corners=False`` with the grid
    ``(2 * x + 1) / W - 1`` lands exactly on pixel ``x`` and ``zeros`` padding is the
    same corner rule as the reference.
    """
    geometry = PDFGeometry.of(stride, padding, dilation)
    ho, wo = _check_shapes(x, offset, mask, weight, bias, geometry)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    dtype, device = x.dtype, x.device
    tap = torch.arange(taps, device=device)
    ky = (tap // kw * dh).to(dtype).view(1, taps, 1, 1)
    kx = (tap % kw * dw).to(dtype).view(1, taps, 1, 1)
    base_y = (torch.arange(ho, device=device, dtype=dtype) * sh - ph).view(1, 1, ho, 1)
    base_x = (torch.arange(wo, device=device, dtype=dtype) * sw - pw).view(1, 1, 1, wo)
    offsets = offset.to(dtype).view(n, taps, 2, ho, wo)
    gy = (2 * (base_y + ky + offsets[:, :, 0]) + 1) / h - 1
    gx = (2 * (base_x + kx + offsets[:, :, 1]) + 1) / w - 1
    grid = torch.stack([gx, gy], dim=-1)  # N, taps, Ho, Wo, 2
    weights = weight.reshape(c_out, c_in, taps)
    group = max(1, min(taps, _GRID_BUDGET // max(1, n * c_in * ho * wo)))
    out = None
    for start in range(0, taps, group):
        stop = min(taps, start + group)
        g = grid[:, start:stop].reshape(n, (stop - start) * ho, wo, 2)
        sampled = F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(n, c_in, stop - start, ho * wo) * mask[:, start:stop].to(
            dtype
        ).reshape(n, 1, stop - start, ho * wo)
        term = torch.einsum("ock,nckp->nop", weights[:, :, start:stop], sampled)
        out = term if out is None else out + term
    assert out is not None
    out = out.view(n, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1).to(dtype)
    return out


_GRID_BUDGET = 1 << 26  # elements of sampled values held at once (256 MB in float32)


def _torchvision_deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> torch.Tensor:
    from torchvision.ops import deform_conv2d

    geometry = PDFGeometry.of(stride, padding, dilation)
    return deform_conv2d(
        x,
        offset.to(x.dtype),
        weight,
        bias,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        mask=mask.to(x.dtype),
    )


PDFFunction = Callable[..., torch.Tensor]


def pdf_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Pixel-dependent filtering: modulated deformable convolution, one offset group.

    .. math::

        y[n, o, p] = b[o] + \sum_{k} V[n, k, p] \sum_{c} W[o, c, k]\,
                     \mathrm{bilinear}(x[n, c],\; s \cdot p - \mathrm{pad} + d \cdot p_k
                     + \Delta[n, k, p])

    where ``k`` runs over the ``Kh*Kw`` kernel taps in row-major order, ``p_k`` is the
    tap's (row, col) position in the kernel, ``Delta[n, k, p] = (offset[n, 2k, p],
    offset[n, 2k+1, p])`` is its (dy, dx) offset and ``V = mask`` is the per-pixel
    kernel (the paper's eq. 11), shared by all channels. Bilinear samples outside the
    image read zero. This is ONNX ``DeformConv`` (opset 19) with its ``mask`` input and
    torchvision's ``deform_conv2d(..., mask=mask)``.

    Args:
        x: input (N, C_in, H, W).
        offset: (N, 2*Kh*Kw, Ho, Wo) sampling offsets, channel 2k = dy, 2k+1 = dx.
        mask: (N, Kh*Kw, Ho, Wo) per-pixel kernel V (modulation).
        weight: (C_out, C_in, Kh, Kw).
        bias: optional (C_out,).
        stride, padding, dilation: as for ``Conv2d``.
        backend: ``"auto"`` (the fastest registered backend that takes these tensors),
            ``"reference"`` (pure PyTorch), or a registered name such as
            ``"torchvision"`` or ``"plugin"``.
    """
    if torch.onnx.is_in_onnx_export():
        from .onnx_symbolic import pdf_conv_symbolic

        return pdf_conv_symbolic(x, offset, mask, weight, bias, stride, padding, dilation)
    geometry = PDFGeometry.of(stride, padding, dilation)
    _check_shapes(x, offset, mask, weight, bias, geometry)
    fn = select_backend(backend, x, offset, mask, weight)
    return fn(x, offset, mask, weight, bias, stride, padding, dilation)


def pad_for_kernel(kernel: int, dilation: int = 1) -> int:
    """The padding that keeps the spatial size for an odd kernel at stride 1."""
    return dilation * (kernel - 1) // 2
