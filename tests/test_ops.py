"""The PDF reference operator against an independent float64 loop implementation."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from saphnet.ops import available_backends, pdf_conv, pdf_conv_reference


def loop_pdf_conv(x, offset, mask, weight, bias, stride, padding, dilation):
    """Modulated deformable convolution written from its definition, in float64."""
    x, offset, mask, weight = (np.asarray(t, dtype=np.float64) for t in (x, offset, mask, weight))
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1

    def pixel(b, c, yy, xx):
        return x[b, :, yy, xx] if 0 <= yy < h and 0 <= xx < w else np.zeros(c)

    out = np.zeros((n, c_out, ho, wo))
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                col = np.zeros((c_in, kh * kw))
                for k in range(kh * kw):
                    ky, kx = divmod(k, kw)
                    py = i * stride - padding + ky * dilation + offset[b, 2 * k, i, j]
                    px = j * stride - padding + kx * dilation + offset[b, 2 * k + 1, i, j]
                    y0, x0 = math.floor(py), math.floor(px)
                    fy, fx = py - y0, px - x0
                    val = (
                        (1 - fy) * (1 - fx) * pixel(b, c_in, y0, x0)
                        + (1 - fy) * fx * pixel(b, c_in, y0, x0 + 1)
                        + fy * (1 - fx) * pixel(b, c_in, y0 + 1, x0)
                        + fy * fx * pixel(b, c_in, y0 + 1, x0 + 1)
                    )
                    col[:, k] = val * mask[b, k, i, j]
                out[b, :, i, j] = np.einsum("ock,ck->o", weight.reshape(c_out, c_in, -1), col)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape(1, -1, 1, 1)
    return out


def make_inputs(seed, n, c_in, c_out, h, w, k, stride, padding, dilation, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    x = torch.randn(n, c_in, h, w, generator=g, dtype=dtype)
    offset = (torch.rand(n, 2 * k * k, ho, wo, generator=g, dtype=dtype) * 2 - 1) * 3
    mask = torch.rand(n, k * k, ho, wo, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in, k, k, generator=g, dtype=dtype) / (c_in * k * k) ** 0.5
    bias = torch.randn(c_out, generator=g, dtype=dtype)
    return x, offset, mask, weight, bias


GEOMETRIES = [
    # n, c_in, c_out, h, w, k, stride, padding, dilation
    (2, 3, 4, 7, 9, 3, 1, 1, 1),
    (1, 2, 3, 8, 6, 5, 1, 2, 1),
    (1, 3, 2, 9, 10, 3, 2, 1, 1),
    (1, 2, 2, 9, 8, 3, 1, 2, 2),
    (1, 2, 3, 6, 7, 2, 1, 0, 1),
    (1, 1, 1, 5, 5, 1, 1, 0, 1),
]


@pytest.mark.parametrize("backend", ["reference", "gridsample"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_backends_match_float64_loop(geometry, backend):
    n, c_in, c_out, h, w, k, stride, padding, dilation = geometry
    inputs = make_inputs(0, n, c_in, c_out, h, w, k, stride, padding, dilation)
    got = pdf_conv(*inputs, stride=stride, padding=padding, dilation=dilation, backend=backend)
    want = loop_pdf_conv(*inputs, stride, padding, dilation)
    assert got.shape == want.shape
    err = np.abs(got.double().numpy() - want).max()
    assert err < 1e-5, f"max abs error {err:.3g} for {geometry}"


def test_offsets_cross_borders_and_sample_zero_outside():
    # Every tap pushed 100 px outside the image reads zeros: the output is the bias.
    x, offset, mask, weight, bias = make_inputs(1, 1, 2, 3, 6, 6, 3, 1, 1, 1)
    far = torch.full_like(offset, 100.0)
    out = pdf_conv_reference(x, far, mask, weight, bias, padding=1)
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand_as(out), rtol=0, atol=0)


def test_zero_offset_and_unit_mask_is_convolution():
    x, offset, mask, weight, bias = make_inputs(2, 2, 3, 4, 8, 9, 3, 1, 1, 1)
    out = pdf_conv_reference(x, offset * 0, torch.ones_like(mask), weight, bias, padding=1)
    torch.testing.assert_close(
        out, torch.nn.functional.conv2d(x, weight, bias, padding=1), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("backend", ["reference", "gridsample"])
def test_gradcheck_float64(backend):
    x, offset, mask, weight, bias = make_inputs(3, 1, 2, 2, 5, 4, 3, 1, 1, 1, dtype=torch.float64)
    offset = offset + 0.37  # keep samples off integer coordinates, where bilinear has kinks
    args = [t.clone().requires_grad_(True) for t in (x, offset, mask, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda *a: pdf_conv(*a, padding=1, backend=backend), args, eps=1e-6, atol=1e-5
    )


def test_gridsample_tap_groups_bound_memory_and_agree(monkeypatch):
    # saphnet.ops.pdf_conv is also the function's name; fetch the module itself.
    module = importlib.import_module("saphnet.ops.pdf_conv")

    inputs = make_inputs(8, 2, 3, 4, 10, 12, 5, 1, 2, 1)
    whole = module.pdf_conv_gridsample(*inputs, padding=2)
    monkeypatch.setattr(module, "_GRID_BUDGET", 2 * 3 * 10 * 12 * 3)  # 3 taps per group
    grouped = module.pdf_conv_gridsample(*inputs, padding=2)
    torch.testing.assert_close(grouped, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole, pdf_conv_reference(*inputs, padding=2), rtol=1e-5, atol=1e-5)


def test_auto_prefers_gridsample_for_float32_and_reference_for_half():
    from saphnet.ops.dispatch import select_backend
    from saphnet.ops.pdf_conv import pdf_conv_gridsample

    x, offset, mask, weight, _ = make_inputs(9, 1, 2, 2, 5, 5, 3, 1, 1, 1)
    chosen = select_backend("auto", x, offset, mask, weight)
    assert chosen is pdf_conv_gridsample or "torchvision" in available_backends()
    half = [t.half() for t in (x, offset, mask, weight)]
    assert select_backend("auto", *half) is pdf_conv_reference


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite_and_close(dtype):
    inputs = make_inputs(4, 1, 8, 8, 33, 47, 3, 1, 1, 1)
    ref = pdf_conv_reference(*inputs, padding=1)
    low = pdf_conv(*(t.to(dtype) for t in inputs), padding=1)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    rel = (low.float() - ref).abs().max() / ref.abs().max()
    tolerance = 2e-2 if dtype == torch.bfloat16 else 3e-3
    assert rel < tolerance, f"{dtype} relative error {rel:.3g}"


def test_sampling_coordinates_stay_float32_in_half():
    # A 1-px image feature at column 1500 + 0.25: float16 cannot hold 1500.25, float32 can.
    w = 1600
    x = torch.zeros(1, 1, 1, w)
    x[0, 0, 0, 1500] = 1.0
    offset = torch.zeros(1, 2, 1, w)
    offset[0, 1, 0, 1500] = 0.25  # sample at 1500.25 for output column 1500
    mask = torch.ones(1, 1, 1, w)
    weight = torch.ones(1, 1, 1, 1)
    out = pdf_conv(x.half(), offset, mask.half(), weight.half())
    assert out[0, 0, 0, 1500].item() == pytest.approx(0.75, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"offset": torch.zeros(1, 17, 6, 6)},
            r"offset has shape \(1, 17, 6, 6\).*need \(1, 18, 6, 6\)",
        ),
        ({"mask": torch.zeros(1, 9, 5, 6)}, r"mask has shape \(1, 9, 5, 6\).*need \(1, 9, 6, 6\)"),
        ({"weight": torch.zeros(4, 3, 3, 3)}, r"weight has 3 input channels but x has 2"),
        ({"bias": torch.zeros(5)}, r"bias has shape \(5,\) but weight has 4 output channels"),
        ({"x": torch.zeros(2, 6, 6)}, r"x must be 4-D, got shape \(2, 6, 6\)"),
    ],
)
def test_shape_errors_name_both_sizes(kwargs, message):
    args = dict(
        x=torch.zeros(1, 2, 6, 6),
        offset=torch.zeros(1, 18, 6, 6),
        mask=torch.zeros(1, 9, 6, 6),
        weight=torch.zeros(4, 2, 3, 3),
        bias=torch.zeros(4),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pdf_conv(**args, padding=1)


def test_dtype_mismatch_is_named():
    x, offset, mask, weight, _ = make_inputs(5, 1, 2, 2, 5, 5, 3, 1, 1, 1)
    with pytest.raises(TypeError, match=r"x is torch\.float32 but weight is torch\.float64"):
        pdf_conv(x, offset, mask, weight.double(), None, padding=1)


def test_unknown_backend_lists_the_available_ones():
    inputs = make_inputs(6, 1, 2, 2, 5, 5, 3, 1, 1, 1)
    with pytest.raises(ValueError, match=r"unknown backend .cudnn.; available: .*reference"):
        pdf_conv(*inputs, padding=1, backend="cudnn")
    assert "reference" in available_backends()


HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not installed (optional)")
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_reference_matches_torchvision(geometry):
    from torchvision.ops import deform_conv2d

    n, c_in, c_out, h, w, k, stride, padding, dilation = geometry
    x, offset, mask, weight, bias = make_inputs(
        7, n, c_in, c_out, h, w, k, stride, padding, dilation
    )
    got = pdf_conv_reference(x, offset, mask, weight, bias, stride, padding, dilation)
    want = deform_conv2d(
        x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
