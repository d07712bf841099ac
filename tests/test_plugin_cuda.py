"""Our CUDA kernels (direct and fused tensor-core implicit GEMM) against the PyTorch
reference, through the C API and the ``plugin`` backend of ``saphnet.ops.pdf_conv``."""

from __future__ import annotations

import ctypes

import pytest
import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.ops import pdf_conv, pdf_conv_reference

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
try:
    if not plugins.has_cuda():
        pytest.skip("libsaphnet_plugins.so was built without nvcc", allow_module_level=True)
except SaphnetError as exc:
    pytest.skip(f"plugin library not built: {exc}", allow_module_level=True)

DEVICE = torch.device("cuda")

CASES = [
    # (n, c_in, c_out, h, w, kernel, stride, padding, dilation): tails in every tile dimension
    (2, 40, 130, 19, 23, (5, 5), (1, 1), (2, 2), (1, 1)),
    (2, 128, 128, 24, 40, (5, 5), (1, 1), (2, 2), (1, 1)),
    (2, 7, 5, 13, 11, (3, 3), (2, 2), (1, 1), (1, 1)),
    (1, 16, 24, 12, 17, (2, 2), (1, 1), (0, 0), (2, 2)),
    (2, 33, 9, 10, 14, (3, 5), (1, 2), (1, 2), (2, 1)),
]
IDS = [f"c{c[1]}to{c[2]}k{c[5][0]}x{c[5][1]}s{c[6][0]}d{c[8][0]}" for c in CASES]


def _inputs(case, dtype, seed=0):
    n, c_in, c_out, h, w, (kh, kw), stride, padding, dilation = case
    g = torch.Generator(device="cpu").manual_seed(seed)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.randn(n, c_in, h, w, generator=g)
    offset = torch.rand(n, 2 * kh * kw, ho, wo, generator=g) * 6 - 3  # ±3 px, across borders
    mask = torch.rand(n, kh * kw, ho, wo, generator=g)
    weight = torch.randn(c_out, c_in, kh, kw, generator=g) / (c_in * kh * kw) ** 0.5
    bias = torch.randn(c_out, generator=g)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation}
    x, weight, bias, mask = (t.to(DEVICE, dtype) for t in (x, weight, bias, mask))
    return (x, offset.to(DEVICE), mask, weight, bias), geometry


def _reference64(tensors, geometry):
    return pdf_conv_reference(*(t.double() for t in tensors), **geometry)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_direct_float32_matches_reference(case):
    tensors, geometry = _inputs(case, torch.float32)
    expected = _reference64(tensors, geometry)
    got = plugins.cuda_forward(*tensors, **geometry, algo="direct")
    torch.cuda.synchronize()
    assert got.dtype == torch.float32
    scale = expected.abs().max()
    assert (got.double() - expected).abs().max() <= 1e-4 * scale


@pytest.mark.parametrize("algo", ["direct", "fused"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float16_within_fp16_rounding(case, algo):
    """FP16 error at most twice PyTorch's own FP16 error (plus half an ulp of the scale)."""
    tensors, geometry = _inputs(case, torch.float16, seed=1)
    expected = _reference64(tensors, geometry)
    torch16 = pdf_conv_reference(*tensors, **geometry)
    got = plugins.cuda_forward(*tensors, **geometry, algo=algo)
    assert got.dtype == torch.float16
    scale = expected.abs().max()
    ours = (got.double() - expected).abs().max()
    theirs = (torch16.double() - expected).abs().max()
    assert torch.isfinite(got).all()
    assert ours <= 2 * theirs + 2.0**-11 * scale, f"{algo}: {ours:.3g} vs torch fp16 {theirs:.3g}"


def _nhwc8(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) as TensorRT's kHWC8: channels last, padded to 8 with garbage."""
    n, c, h, w = t.shape
    padded = torch.full((n, h, w, (c + 7) // 8 * 8), 1e4, dtype=t.dtype, device=t.device)
    padded[..., :c] = t.permute(0, 2, 3, 1)
    return padded.contiguous()


@pytest.mark.parametrize("algo", [1, 2], ids=["direct", "fused"])
def test_nhwc8_layout_matches_nchw(algo):
    case = CASES[0]
    tensors, geometry = _inputs(case, torch.float16, seed=2)
    x, offset, mask, weight, bias = tensors
    expected = plugins.cuda_forward(*tensors, **geometry, algo="direct")
    params = plugins.make_params(
        x.shape, weight.shape, x.dtype, offset.dtype, mask.dtype, layout="nhwc8", **geometry
    )
    ho, wo = plugins.output_shape(params)
    c_out = weight.shape[0]
    xh = _nhwc8(x)
    y = torch.full((x.shape[0], ho, wo, (c_out + 7) // 8 * 8), 7.0, dtype=x.dtype, device=DEVICE)
    lib = plugins.load_library()
    size = ctypes.c_size_t()
    assert lib.pdfconv_workspace_size(ctypes.byref(params), algo, size) == 0
    workspace = torch.empty(max(size.value, 1), dtype=torch.uint8, device=DEVICE)
    status = lib.pdfconv_forward_cuda(
        ctypes.byref(params), algo, xh.data_ptr(), offset.data_ptr(), mask.data_ptr(),
        weight.data_ptr(), bias.data_ptr(), y.data_ptr(), workspace.data_ptr(), size.value,
        torch.cuda.current_stream().cuda_stream,
    )  # fmt: skip
    assert status == 0, lib.pdfconv_last_error()
    torch.cuda.synchronize()
    got = y[..., :c_out].permute(0, 3, 1, 2)
    assert (y[..., c_out:] == 0).all()  # padding channels written as zero
    scale = expected.float().abs().max()
    assert (got.float() - expected.float()).abs().max() <= 4 * 2.0**-11 * scale


def test_plugin_backend_is_chosen_and_runs_on_the_current_stream():
    tensors, geometry = _inputs(CASES[2], torch.float16, seed=3)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.no_grad():
        auto = pdf_conv(*tensors, **geometry)
        direct = plugins.cuda_forward(*tensors, **geometry)
    stream.synchronize()
    assert torch.equal(auto, direct)
    assert torch.equal(direct, pdf_conv(*tensors, **geometry, backend="plugin"))


def test_plugin_backend_declines_tensors_that_need_grad():
    tensors, geometry = _inputs(CASES[2], torch.float32, seed=4)
    x = tensors[0].clone().requires_grad_(True)
    out = pdf_conv(x, *tensors[1:], **geometry)
    assert out.requires_grad  # served by a differentiable backend, not by the kernel
    out.sum().backward()
    assert x.grad is not None


def test_workspace_too_small_is_reported():
    tensors, geometry = _inputs(CASES[1], torch.float16)
    x, offset, mask, weight, bias = tensors
    params = plugins.make_params(
        x.shape, weight.shape, x.dtype, offset.dtype, mask.dtype, **geometry
    )
    ho, wo = plugins.output_shape(params)
    y = torch.empty(x.shape[0], weight.shape[0], ho, wo, dtype=x.dtype, device=DEVICE)
    status = plugins.load_library().pdfconv_forward_cuda(
        ctypes.byref(params), 2, x.data_ptr(), offset.data_ptr(), mask.data_ptr(),
        weight.data_ptr(), bias.data_ptr(), y.data_ptr(), None, 0, None,
    )  # fmt: skip
    assert status == plugins.WORKSPACE_TOO_SMALL


def test_current_device_is_left_alone():
    """The kernels run on the caller's device and stream; the call never switches devices."""
    tensors, geometry = _inputs(CASES[2], torch.float32, seed=5)
    before = torch.cuda.current_device()
    plugins.cuda_forward(*tensors, **geometry)
    assert torch.cuda.current_device() == before


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_tensors_on_another_device_run_there_and_raw_call_is_refused():
    """cuda_forward makes x's device current for the call; the C API, given pointers of a
    device other than the current one, fails with a clear status instead of switching."""
    tensors, geometry = _inputs(CASES[2], torch.float32, seed=6)
    expected = plugins.cuda_forward(*tensors, **geometry)
    other = torch.device("cuda", 1)
    with torch.cuda.device(0):
        moved = [t.to(other) for t in tensors]
        got = plugins.cuda_forward(*moved, **geometry)
        torch.cuda.synchronize(other)
        assert torch.cuda.current_device() == 0
        assert torch.equal(got.cpu(), expected.cpu())
        x, offset, mask, weight, bias = moved
        params = plugins.make_params(
            x.shape, weight.shape, x.dtype, offset.dtype, mask.dtype, **geometry
        )
        status = plugins.load_library().pdfconv_forward_cuda(
            ctypes.byref(params), 1, x.data_ptr(), offset.data_ptr(), mask.data_ptr(),
            weight.data_ptr(), bias.data_ptr(), got.data_ptr(), None, 0, None,
        )  # fmt: skip
        assert status == plugins.INVALID_ARGUMENT
        message = plugins.load_library().pdfconv_last_error().decode()
        assert "x is on CUDA device 1 but the current device is 0" in message
        assert torch.cuda.current_device() == 0
