"""The plugin library's host build (the CUDA kernels' maths on the CPU) against the
PyTorch reference, through the C API that Python and TensorRT use."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.ops import pdf_conv_reference

try:
    LIBRARY = plugins.library_path()
except SaphnetError as exc:  # CI runs `make plugins` first, so there this never skips
    pytest.skip(f"plugin library not built: {exc}", allow_module_level=True)


def _inputs(rng, n, c_in, c_out, h, w, kernel, stride, padding, dilation):
    """Random inputs whose offsets (±3 px) push many taps across the image border."""
    kh, kw = kernel
    ph, pw = padding
    ho = (h + 2 * ph - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * pw - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = rng.standard_normal((n, c_in, h, w))
    offset = rng.uniform(-3.0, 3.0, (n, 2 * kh * kw, ho, wo))
    mask = rng.uniform(0.0, 1.0, (n, kh * kw, ho, wo))
    weight = rng.standard_normal((c_out, c_in, kh, kw)) / np.sqrt(c_in * kh * kw)
    bias = rng.standard_normal(c_out)
    return x, offset, mask, weight, bias


def _reference(x, offset, mask, weight, bias, stride, padding, dilation) -> np.ndarray:
    as64 = [torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (x, offset, mask, weight)]
    b64 = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=np.float64))
    out = pdf_conv_reference(*as64, b64, stride=stride, padding=padding, dilation=dilation)
    return out.numpy()


CASES = [
    # (n, c_in, c_out, h, w, kernel, stride, padding, dilation)
    (2, 5, 7, 9, 13, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 6, 4, 11, 8, (5, 5), (2, 2), (2, 2), (1, 1)),
    (2, 3, 5, 10, 12, (2, 2), (1, 1), (0, 0), (2, 2)),
    (2, 4, 3, 7, 15, (3, 5), (1, 2), (1, 2), (1, 1)),
    (2, 8, 8, 12, 9, (4, 4), (3, 1), (3, 1), (2, 1)),
    (1, 1, 1, 5, 5, (1, 1), (1, 1), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"k{c[5]}s{c[6]}p{c[7]}d{c[8]}")
def test_host_float32_matches_reference(case):
    n, c_in, c_out, h, w, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(sum(kernel) * 100 + c_in)
    x, offset, mask, weight, bias = _inputs(
        rng, n, c_in, c_out, h, w, kernel, stride, padding, dilation
    )
    expected = _reference(x, offset, mask, weight, bias, stride, padding, dilation)
    got = plugins.host_forward(
        *(a.astype(np.float32) for a in (x, offset, mask, weight, bias)),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-5 * scale


def test_host_without_bias_and_all_taps_outside_read_zero():
    rng = np.random.default_rng(3)
    x, offset, mask, weight, _ = _inputs(rng, 1, 3, 2, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1))
    far = np.full_like(offset, 50.0)  # every sample far outside the image
    got = plugins.host_forward(*(a.astype(np.float32) for a in (x, far, mask, weight)), padding=1)
    assert np.array_equal(got, np.zeros_like(got))


def test_host_asymmetric_pads_match_reference_crop():
    """ONNX pads (top, left, bottom, right): sampling uses top/left, bottom/right only size."""
    rng = np.random.default_rng(4)
    x, offset, mask, weight, bias = _inputs(rng, 2, 3, 4, 9, 10, (3, 3), (1, 1), (2, 1), (1, 1))
    expected = _reference(x, offset, mask, weight, bias, 1, (2, 1), 1)  # pads 2,1,2,1
    pads = (2, 1, 0, 0)  # two rows and one column fewer at the bottom/right
    ho, wo = expected.shape[2] - 2, expected.shape[3] - 1
    got = plugins.host_forward(
        x.astype(np.float32),
        np.ascontiguousarray(offset[:, :, :ho, :wo], dtype=np.float32),
        np.ascontiguousarray(mask[:, :, :ho, :wo], dtype=np.float32),
        weight.astype(np.float32),
        bias.astype(np.float32),
        padding=pads,
    )
    crop = expected[:, :, :ho, :wo]
    assert got.shape == crop.shape
    assert np.abs(got - crop).max() <= 1e-5 * np.abs(crop).max()


@pytest.mark.parametrize("offset_dtype", [np.float32, np.float16])
def test_host_float16_within_fp16_rounding(offset_dtype):
    """float16 x/weight/bias with float32 or float16 offsets, float16 mask (as the model)."""
    rng = np.random.default_rng(5)
    x, offset, mask, weight, bias = _inputs(rng, 2, 16, 12, 10, 14, (5, 5), (1, 1), (2, 2), (1, 1))
    x16, w16, b16, m16 = (a.astype(np.float16) for a in (x, weight, bias, mask))
    off = offset.astype(offset_dtype)
    got = plugins.host_forward(x16, off, m16, w16, b16, padding=2)
    assert got.dtype == np.float16
    expected = _reference(x16, off, m16, w16, b16, 1, 2, 1)  # the same rounded inputs, float64
    scale = np.abs(expected).max()
    # FP32 accumulation, one rounding to float16 at the end: half an FP16 ulp of the value.
    assert np.abs(got.astype(np.float64) - expected).max() <= 2.0**-11 * scale * 1.01


def test_version_and_build():
    assert plugins.version() >= 10000
    assert plugins.load_library() is plugins.load_library()
    assert isinstance(plugins.has_cuda(), bool)
    assert isinstance(plugins.has_tensorrt(), bool)
    # What register_tensorrt_plugin asks before TensorRT sees the library.
    assert plugins.built_with_tensorrt(LIBRARY) is plugins.has_tensorrt()


def _raw_params(**overrides) -> plugins.PdfConvParams:
    params = plugins.make_params((1, 2, 8, 8), (3, 2, 3, 3), np.float32, np.float32, np.float32)
    for name, value in overrides.items():
        setattr(params, name, value)
    return params


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"stride_h": 0}, plugins.INVALID_ARGUMENT),
        ({"dilation_w": -1}, plugins.INVALID_ARGUMENT),
        ({"pad_left": -1}, plugins.INVALID_ARGUMENT),
        ({"in_channels": 0}, plugins.INVALID_ARGUMENT),
        ({"kernel_h": 9}, plugins.INVALID_ARGUMENT),  # 8x8 input too small for 9 rows
        ({"dtype": 7}, plugins.UNSUPPORTED),
        ({"layout": 5}, plugins.UNSUPPORTED),
    ],
)
def test_bad_params_return_status_and_message(overrides, status):
    lib = plugins.load_library()
    ho, wo = ctypes.c_int32(), ctypes.c_int32()
    got = lib.pdfconv_output_shape(ctypes.byref(_raw_params(**overrides)), ho, wo)
    assert got == status
    assert lib.pdfconv_last_error().decode().startswith("pdfconv:")
    with pytest.raises(plugins.PluginError) as info:
        plugins.output_shape(_raw_params(**overrides))
    assert info.value.status == status


def test_null_pointers_and_fused_float32_are_rejected():
    lib = plugins.load_library()
    params = _raw_params()
    y = np.empty((1, 3, 6, 6), np.float32)
    status = lib.pdfconv_forward_host(
        ctypes.byref(params), None, None, None, None, None, y.ctypes.data
    )
    assert status == plugins.INVALID_ARGUMENT
    size = ctypes.c_size_t()
    assert lib.pdfconv_workspace_size(ctypes.byref(params), 2, size) == plugins.UNSUPPORTED
    assert "float16" in lib.pdfconv_last_error().decode()
    assert lib.pdfconv_workspace_size(ctypes.byref(params), 1, size) == plugins.SUCCESS
    assert size.value == 0


def test_fused_workspace_holds_packed_weights():
    params = plugins.make_params((1, 40, 8, 8), (130, 40, 5, 5), np.float16, np.float32, np.float16)
    size = ctypes.c_size_t()
    assert plugins.load_library().pdfconv_workspace_size(ctypes.byref(params), 0, size) == 0
    assert size.value >= 25 * 256 * 64 * 2  # C_out padded to 256, C_in to 64, float16


def _workspace_status(params: plugins.PdfConvParams, algo: int) -> tuple[int, str]:
    lib = plugins.load_library()
    status = lib.pdfconv_workspace_size(ctypes.byref(params), algo, ctypes.c_size_t())
    return status, lib.pdfconv_last_error().decode() if status else ""


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "dtype", "layout", "algo", "refused"),
    [
        # gridDim.z = batch, for every kernel; the host implementation has no such limit.
        ((65536, 1, 1, 1), (1, 1, 1, 1), np.float32, "nchw", 1, "batch 65536 exceeds the 65535"),
        ((65535, 1, 1, 1), (1, 1, 1, 1), np.float32, "nchw", 1, None),
        # gridDim.y = output channel tiles: 16 per block (direct), 128 (fused).
        ((1, 1, 1, 1), (65535 * 16 + 1, 1, 1, 1), np.float32, "nchw", 1, "output channels"),
        ((1, 1, 1, 1), (65535 * 16, 1, 1, 1), np.float32, "nchw", 1, None),
        ((1, 1, 1, 1), (65535 * 16 + 1, 1, 1, 1), np.float16, "nhwc8", 2, None),
        ((1, 1, 1, 1), (65535 * 128 + 1, 1, 1, 1), np.float16, "nhwc8", 2, "output channels"),
        # gridDim.y of the fused kernel's NCHW -> NHWC8 copy: 32 input channels per block.
        ((1, 65535 * 32 + 1, 1, 1), (1, 65535 * 32 + 1, 1, 1), np.float16, "nchw", 2, "input"),
        ((1, 65535 * 32 + 1, 1, 1), (1, 65535 * 32 + 1, 1, 1), np.float16, "nhwc8", 2, None),
    ],
)
def test_cuda_launch_limits_are_checked_by_the_plan(x_shape, w_shape, dtype, layout, algo, refused):
    """planForward (workspace query, CUDA forward, TensorRT configurePlugin) refuses shapes
    the kernels cannot launch, before anything runs; pdfconv_output_shape (host) does not."""
    params = plugins.make_params(x_shape, w_shape, dtype, np.float32, dtype, layout=layout)
    status, message = _workspace_status(params, algo)
    if refused is None:
        assert status == plugins.SUCCESS, message
    else:
        assert status == plugins.INVALID_ARGUMENT
        assert refused in message and "CUDA kernels launch" in message
        assert "\n" not in message
    assert plugins.output_shape(params) == (1, 1)


def test_pads_and_dilations_overflowing_int32_are_refused():
    params = _raw_params(pad_top=2**30, pad_bottom=2**30)
    with pytest.raises(plugins.PluginError, match=r"padded input \(2147483656 x 8\)"):
        plugins.output_shape(params)
    with pytest.raises(plugins.PluginError, match=r"dilated kernel \(3 x 2147483649\)"):
        plugins.output_shape(_raw_params(dilation_w=2**30, kernel_w=3))


def test_shape_mismatch_names_both_sizes():
    rng = np.random.default_rng(6)
    x, offset, mask, weight, _ = _inputs(rng, 1, 2, 3, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1))
    arrays = [a.astype(np.float32) for a in (x, offset[:, :-2], mask, weight)]
    with pytest.raises(plugins.PluginError, match=r"offset has shape \(1, 16, 8, 8\)"):
        plugins.host_forward(*arrays, padding=1)


def test_cuda_forward_without_gpu_reports_the_reason():
    """A host-only build says how to get CUDA; a CUDA build on a machine without a GPU
    returns a CUDA error with the runtime's message (and never touches the pointers)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; tests/test_plugin_cuda.py runs the kernels")
    lib = plugins.load_library()
    params = _raw_params()
    status = lib.pdfconv_forward_cuda(
        ctypes.byref(params), 0, 16, 16, 16, 16, None, 16, None, 0, None
    )
    message = lib.pdfconv_last_error().decode()
    if plugins.has_cuda():
        assert status == plugins.CUDA_ERROR
        assert "launch failed" in message
    else:
        assert status == plugins.NO_CUDA
        assert "make plugins" in message


@pytest.mark.slow
def test_cuda_kernels_run_on_cpu_match_host_build():
    """The kernels' own source (direct, fused, packing, NHWC8 copy) under plugins/tests'
    CUDA emulation, against the host build: their indexing and barriers without a GPU."""
    program = LIBRARY.parent / "pdfconv_kernels_emulated"
    if not program.is_file():
        pytest.skip(f"{program} not built (needs the CUDA headers; make plugins)")
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all kernels agree with the host build" in result.stdout


def test_missing_library_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(SaphnetError) as info:
        plugins.library_path()
    assert "\n" not in str(info.value)
    assert str(tmp_path / "nope.so") in str(info.value)
