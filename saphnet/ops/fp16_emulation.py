"""The PDF op as two FP16 GPU implementations compute it, emulated on the CPU.

Why: TensorRT's built-in ``ModulatedDeformConv2d`` plugin (what the parser makes of the
``deformconv`` export form and of the PDFConv function body) runs FP16 entirely in half
precision, our plugin keeps coordinates and accumulation in FP32. These functions
reproduce each one's rounding steps with torch on float32 tensors that hold float16
values (``x.half().float()`` rounds to nearest even, as ``__float2half_rn``), so the
difference can be measured on whole networks on a CPU (``benchmarks/fp16_fidelity.py``).

:func:`tensorrt_fp16_pdf` follows NVIDIA/TensorRT ``plugin/modulatedDeformConvPlugin/``
at tags v10.3.0 and v11.1 (the lines cited are identical at both tags):

* ``modulatedDeformConvPluginKernel.cu`` 169-176: offsets and mask are read as ``T =
  half``; ``T const hIm = hIn + i * dilationH + (float)offsetH;`` sums in float and
  stores the sample coordinate as half; ``*dataColPtr = val * mask;`` is a half product.
* same file 81-128 (the ``__half`` specialisation of ``dmcnIm2colBilinear``): the
  bounds test on the half coordinate (85), ``lh = __float2half(h - hLow)``, ``hh =
  __float2half(1) - lh`` (94-97), corner weights ``__hmul`` (120-123), the value
  ``__hadd(__hadd(w1*v1, w2*v2), __hadd(w3*v3, w4*v4))`` with every step in half (125).
* same file 246-268: the GEMM over ``k = C_in * Kh * Kw`` with column index ``c * Kh *
  Kw + tap`` (146, 154, 177); 201-219: the bias added afterwards in half
  (``output[index] += bias[...]``).
* ``modulatedDeformConvCudaHelper.cu`` (v10.3.0 122-127, v11.1 124-131):
  ``cublasGemmWrap<half>`` calls ``cublasHgemm``: FP16 inputs, FP16 accumulation.

How ``cublasHgemm`` sums is not documented. On tensor cores one MMA instruction
(``mma.m16n8k16`` on sm_80 and later) adds 16 products to an FP16 accumulator, so we
assume the products of each block of :data:`HGEMM_BLOCK` = 16 consecutive ``k`` are
summed in FP32 (exact products of halves) and the running sum is rounded to half after
each block, in ascending ``k``. Hardware that rounds inside an MMA, or a scalar kernel
that rounds after every add, loses more: this is the kind reading of FP16 accumulation.

:func:`saphnet_fp16_pdf` is our plugin's FP16 path (``plugins/pdfconv``): inputs in
half (offsets as the network gives them, float32 in our FP16 export), sample
coordinates and bilinear weights in FP32 (``pdfconv_math.h``), the modulated sample
summed over its four corners in FP32; the fused tensor-core kernel (the FP16 default)
stores that sample as half for the MMA (``pdfconv_kernels.cuh``, ``sB[...] =
__float2half_rn(value)``), the direct kernel and the host build keep it in FP32
(``round_samples=False``); FP32 accumulation, bias added in FP32, one rounding of the
output to half. With ``round_samples=False`` it matches the host build
(``saphnet.plugins.host_forward``) bit for bit where FP32 sums are exact
(``tests/test_fp16_emulation.py``); elsewhere only the FP32 summation order differs.
"""

from __future__ import annotations

import torch

from .pdf_conv import IntPair, PDFGeometry, output_size

HGEMM_BLOCK = 16
"""Products summed before each rounding of the FP16 accumulator (see the module doc)."""

TILE_PIXELS = 4096
"""Output pixels per step: bounds the im2col memory (C_in * taps * TILE_PIXELS values)."""

__all__ = [
    "HGEMM_BLOCK",
    "half_accumulated_matmul",
    "saphnet_fp16_pdf",
    "tensorrt_fp16_pdf",
    "to_half",
]


def to_half(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to the nearest float16 (ties to even), kept as float32."""
    return t.to(torch.float16).to(torch.float32)


def half_accumulated_matmul(
    a: torch.Tensor, b: torch.Tensor, block: int = HGEMM_BLOCK
) -> torch.Tensor:
    """``a @ b`` accumulated in FP16: FP32 sums of ``block`` consecutive products along
    the inner dimension, the running sum rounded to half after each block is added.

    ``a`` (P, K) and ``b`` (K, M) are float32 holding half values; returns (P, M) float32
    holding half values.
    """
    acc = a.new_zeros((a.shape[0], b.shape[1]))
    for start in range(0, a.shape[1], block):
        acc = to_half(acc + a[:, start : start + block] @ b[start : start + block])
    return acc


def _tap_grid(
    ho: int, wo: int, kernel: tuple[int, int], geometry: PDFGeometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer part of every sample position (taps, Ho*Wo) for rows and columns:
    ``out * stride - pad + tap * dilation``, exact in float32."""
    (sh, sw), (ph, pw), (dh, dw) = geometry.stride, geometry.padding, geometry.dilation
    kh, kw = kernel
    taps = torch.arange(kh * kw)
    oy = torch.arange(ho).repeat_interleave(wo)
    ox = torch.arange(wo).repeat(ho)
    base_y = oy[None] * sh - ph + (taps // kw)[:, None] * dh
    base_x = ox[None] * sw - pw + (taps % kw)[:, None] * dw
    return base_y.float(), base_x.float()


def _gather(
    plane: torch.Tensor, y: torch.Tensor, x: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``plane`` (C, H, W) at integer points (T, P): (C, T, P), zero where not ``valid``."""
    c, h, w = plane.shape
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long()
    values = plane.reshape(c, h * w)[:, index.reshape(-1)].reshape(c, *index.shape)
    return values * valid


def _saphnet_columns(
    plane: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor, mask: torch.Tensor, round_samples: bool
) -> torch.Tensor:
    """Modulated bilinear samples (C, T, P) as ``pdfTapCorners`` and the kernels form
    them: FP32 weights ``(wy * wx) * mask``, corners summed in order 0..3 in FP32."""
    _, h, w = plane.shape
    fy, fx = torch.floor(sy), torch.floor(sx)
    ly, lx = sy - fy, sx - fx
    value = None
    for dy, wy in ((0, 1.0 - ly), (1, ly)):
        for dx, wx in ((0, 1.0 - lx), (1, lx)):
            y, x = fy + dy, fx + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            term = _gather(plane, y, x, inside) * ((wy * wx) * mask * inside)
            value = term if value is None else value + term
    assert value is not None
    return to_half(value) if round_samples else value


def _tensorrt_columns(
    plane: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Modulated bilinear samples (C, T, P) as TensorRT's half ``dmcnIm2colBilinear``
    and ``modulatedDeformableIm2colGpuKernel`` form them (every step rounded to half)."""
    _, h, w = plane.shape
    outside = (sy <= -1) | (sy >= h) | (sx <= -1) | (sx >= w)
    h_low, w_low = torch.floor(sy), torch.floor(sx)
    lh, lw = to_half(sy - h_low), to_half(sx - w_low)
    hh, hw = to_half(1.0 - lh), to_half(1.0 - lw)
    h_high, w_high = h_low + 1, w_low + 1
    corners = (
        (h_low, w_low, to_half(hh * hw), (h_low >= 0) & (w_low >= 0)),
        (h_low, w_high, to_half(hh * lw), (h_low >= 0) & (w_high <= w - 1)),
        (h_high, w_low, to_half(lh * hw), (h_high <= h - 1) & (w_low >= 0)),
        (h_high, w_high, to_half(lh * lw), (h_high <= h - 1) & (w_high <= w - 1)),
    )
    t = [to_half(_gather(plane, y, x, valid) * weight) for y, x, weight, valid in corners]
    val = to_half(to_half(t[0] + t[1]) + to_half(t[2] + t[3]))
    return to_half(val * mask) * ~outside


def _pdf_tiles(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    geometry: PDFGeometry,
    half_coordinates: bool,
    columns_and_gemm,
) -> torch.Tensor:
    """Shared driver: sample positions per tile of output pixels, then
    ``columns_and_gemm(plane, sy, sx, mask) -> (C_out, P)`` for each image and tile."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = output_size(h, w, (kh, kw), geometry)
    base_y, base_x = _tap_grid(ho, wo, (kh, kw), geometry)
    taps = kh * kw
    out = x.new_empty((n, c_out, ho * wo))
    for b in range(n):
        off = offset[b].reshape(taps, 2, ho * wo)
        m = mask[b].reshape(taps, ho * wo)
        for start in range(0, ho * wo, TILE_PIXELS):
            tile = slice(start, start + TILE_PIXELS)
            sy = base_y[:, tile] + off[:, 0, tile]
            sx = base_x[:, tile] + off[:, 1, tile]
            if half_coordinates:
                sy, sx = to_half(sy), to_half(sx)
            out[b, :, tile] = columns_and_gemm(x[b], sy, sx, m[:, tile])
    return out.reshape(n, c_out, ho, wo)


def saphnet_fp16_pdf(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    round_samples: bool = True,
) -> torch.Tensor:
    """Our plugin's FP16 PDFConv (see the module doc); returns float16.

    ``x``, ``mask``, ``weight`` and ``bias`` are rounded to half (the plugin's FP16
    tensors), ``offset`` is taken as given (float32 or float16, both accepted by the
    plugin). ``round_samples``: the fused kernel's half samples (True) or the direct
    kernel's and host build's FP32 ones (False).
    """
    geometry = PDFGeometry.of(stride, padding, dilation)
    c_out = weight.shape[0]
    w_mat = to_half(weight.float()).reshape(c_out, -1)  # (C_out, C_in * taps), c-major
    b_vec = torch.zeros(c_out) if bias is None else to_half(bias.float())

    def columns_and_gemm(plane, sy, sx, m):
        cols = _saphnet_columns(plane, sy, sx, m, round_samples)
        return to_half(w_mat @ cols.reshape(-1, cols.shape[-1]) + b_vec[:, None])

    out = _pdf_tiles(
        to_half(x.float()), offset.float(), to_half(mask.float()), weight, geometry, False,
        columns_and_gemm,
    )  # fmt: skip
    return out.to(torch.float16)


def tensorrt_fp16_pdf(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    block: int = HGEMM_BLOCK,
) -> torch.Tensor:
    """TensorRT's built-in ModulatedDeformConv2d in FP16 (see the module doc): every
    input in half (ONNX DeformConv has one type T), half coordinates, half im2col,
    ``cublasHgemm`` emulated by :func:`half_accumulated_matmul`; returns float16."""
    geometry = PDFGeometry.of(stride, padding, dilation)
    c_out = weight.shape[0]
    w_t = to_half(weight.float()).reshape(c_out, -1).t().contiguous()  # (C_in * taps, C_out)
    b_vec = torch.zeros(c_out) if bias is None else to_half(bias.float())

    def columns_and_gemm(plane, sy, sx, m):
        cols = _tensorrt_columns(plane, sy, sx, m)
        acc = half_accumulated_matmul(cols.reshape(-1, cols.shape[-1]).t(), w_t, block)
        return to_half(acc + b_vec).t()

    out = _pdf_tiles(
        to_half(x.float()), to_half(offset.float()), to_half(mask.float()), weight, geometry,
        True, columns_and_gemm,
    )  # fmt: skip
    return out.to(torch.float16)
