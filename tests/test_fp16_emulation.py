"""The CPU emulations of the two FP16 PDF implementations (saphnet.ops.fp16_emulation)
against hand-computed cases and, for ours, against the plugin's host build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saphnet import plugins
from saphnet.errors import SaphnetError
from saphnet.ops import pdf_conv_reference
from saphnet.ops.fp16_emulation import (
    half_accumulated_matmul,
    saphnet_fp16_pdf,
    tensorrt_fp16_pdf,
    to_half,
)


def _row(width: int, dx: float) -> tuple[torch.Tensor, ...]:
    """One row of ``width`` pixels holding ``j % 7``, a 1x1 identity filter and every
    sample shifted right by ``dx``: output column j samples the input at j + dx."""
    x = (torch.arange(width) % 7).float().reshape(1, 1, 1, width)
    offset = torch.zeros(1, 2, 1, width)
    offset[:, 1] = dx
    return x, offset, torch.ones(1, 1, 1, width), torch.ones(1, 1, 1, 1)


def test_tensorrt_coordinate_past_1024_rounds_as_half():
    x, offset, mask, weight = _row(1200, 0.3)
    trt = tensorrt_fp16_pdf(x, offset, mask, weight).float()[0, 0, 0]
    ours = saphnet_fp16_pdf(x, offset, mask, weight).float()[0, 0, 0]
    # 1100.3 in half is 1100 (spacing 1 in [1024, 2048)): the sample is pixel 1100 alone.
    assert trt[1100] == 1100 % 7 == 1
    # 500.3 in half is 500.25 (spacing 0.25 in [256, 512)): 0.75 * x[500] + 0.25 * x[501].
    assert trt[500] == 0.75 * 3 + 0.25 * 4
    # Ours samples at 1100.3 and 500.3 in float32; one rounding of the result to half.
    assert ours[1100] == to_half(torch.tensor(0.7 * 1 + 0.3 * 2))
    assert ours[500] == to_half(torch.tensor(0.7 * 3 + 0.3 * 4))


def test_tensorrt_coordinate_ties_round_to_even():
    x, offset, mask, weight = _row(1200, 0.5)
    trt = tensorrt_fp16_pdf(x, offset, mask, weight).float()[0, 0, 0]
    assert trt[1100] == x[0, 0, 0, 1100]  # 1100.5 -> 1100 (even)
    assert trt[1101] == x[0, 0, 0, 1102]  # 1101.5 -> 1102 (even)
    assert trt[100] == 0.5 * (x[0, 0, 0, 100] + x[0, 0, 0, 101])  # exact below 1024


def test_half_accumulation_loses_what_fp16_loses():
    # 2048 first, then ten blocks of 16 products that each sum to 1.
    a = torch.zeros(1, 176)
    a[0, 0] = 2048.0
    a[0, 16::16] = 1.0
    b = torch.ones(176, 1)
    # 2048 + 1 = 2049 lies halfway between the halves 2048 and 2050: ties to even, 2048.
    assert half_accumulated_matmul(a, b, block=16).item() == 2048.0
    assert (a @ b).item() == 2058.0
    # Within one block the sum is FP32: 2048 + 15 = 2063 -> 2064 (even) once.
    a[0, 1:16] = 1.0
    assert half_accumulated_matmul(a, b, block=16).item() == 2064.0
    # Rounding after every add (block 1) loses each 1 on its own: 2048.
    assert half_accumulated_matmul(a, b, block=1).item() == 2048.0


def test_tensorrt_gemm_accumulates_in_half():
    """Many channels: the op's output shows the FP16 accumulation (2048 + 1 ...)."""
    c_in = 176
    x = torch.ones(1, c_in, 1, 1)
    weight = torch.zeros(1, c_in, 1, 1)
    weight[0, 0] = 2048.0
    weight[0, 16::16] = 1.0
    zeros = torch.zeros(1, 2, 1, 1)
    ones = torch.ones(1, 1, 1, 1)
    assert tensorrt_fp16_pdf(x, zeros, ones, weight).item() == 2048.0
    assert saphnet_fp16_pdf(x, zeros, ones, weight).item() == 2058.0


def _dyadic_inputs(rng: np.random.Generator, n=2, c_in=6, c_out=5, h=9, w=11, k=3):
    """Inputs whose products and sums are all exact in FP32: then every summation order
    gives the same bits, and only the sampling and rounding rules can differ."""
    taps = k * k
    x = rng.integers(-16, 17, (n, c_in, h, w)) / 8.0
    offset = rng.integers(-12, 13, (n, 2 * taps, h, w)) / 4.0
    mask = rng.integers(0, 5, (n, taps, h, w)) / 4.0
    weight = rng.integers(-8, 9, (c_out, c_in, k, k)) / 16.0
    bias = rng.integers(-8, 9, c_out) / 8.0
    return x, offset, mask, weight, bias


@pytest.mark.parametrize("offset_dtype", [np.float32, np.float16])
def test_saphnet_emulation_matches_host_build_bit_for_bit(offset_dtype):
    try:
        plugins.library_path()
    except SaphnetError as exc:
        pytest.skip(f"plugin library not built: {exc}")
    x, offset, mask, weight, bias = _dyadic_inputs(np.random.default_rng(21))
    x16, m16, w16, b16 = (a.astype(np.float16) for a in (x, mask, weight, bias))
    host = plugins.host_forward(x16, offset.astype(offset_dtype), m16, w16, b16, padding=1)
    emulated = saphnet_fp16_pdf(
        *(torch.from_numpy(a) for a in (x16, offset.astype(offset_dtype), m16, w16, b16)),
        padding=1,
        round_samples=False,
    )
    assert host.dtype == np.float16 and emulated.dtype == torch.float16
    assert np.abs(host).max() > 1  # a real output, not all zeros
    assert np.array_equal(emulated.numpy().view(np.uint16), host.view(np.uint16))


def test_emulations_agree_with_the_reference_on_small_coordinates():
    """Away from large coordinates both stay within FP16 error of the FP32 op; ours
    (FP32 accumulation) is the closer one."""
    rng = np.random.default_rng(5)
    c_in, c_out, taps = 64, 8, 9
    x = torch.from_numpy(rng.standard_normal((1, c_in, 12, 12)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-2, 2, (1, 2 * taps, 12, 12)).astype(np.float32))
    mask = torch.from_numpy(rng.uniform(0, 1, (1, taps, 12, 12)).astype(np.float32))
    weight = torch.from_numpy((rng.standard_normal((c_out, c_in, 3, 3)) / 24.0).astype(np.float32))
    args = [to_half(t) for t in (x, offset, mask, weight)]
    reference = pdf_conv_reference(*(t.double() for t in args), padding=1)
    ours = (saphnet_fp16_pdf(*args, padding=1).double() - reference).abs().max().item()
    trt = (tensorrt_fp16_pdf(*args, padding=1).double() - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert ours <= 2e-3 * scale
    assert trt <= 2e-2 * scale
    assert ours < trt


def test_saphnet_emulation_on_random_inputs_differs_from_the_host_build_by_summation_order():
    """Off the dyadic grid only the FP32 summation order differs: almost every output
    has the same bits, the rest differ by a rounding step."""
    try:
        plugins.library_path()
    except SaphnetError as exc:
        pytest.skip(f"plugin library not built: {exc}")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 16, 14, 14)).astype(np.float16)
    offset = rng.uniform(-3, 3, (1, 18, 14, 14)).astype(np.float32)
    mask = rng.uniform(0, 1, (1, 9, 14, 14)).astype(np.float16)
    weight = (rng.standard_normal((8, 16, 3, 3)) / 12).astype(np.float16)
    host = plugins.host_forward(x, offset, mask, weight, padding=1)
    args = [torch.from_numpy(a) for a in (x, offset, mask, weight)]
    direct = saphnet_fp16_pdf(*args, padding=1, round_samples=False).numpy()
    assert (direct == host).mean() >= 0.99
    assert np.abs(direct - host.astype(np.float32)).max() <= 2**-11 * np.abs(host).max()
    # The fused kernel's half samples are another rounding: many outputs move.
    fused = saphnet_fp16_pdf(*args, padding=1).numpy()
    assert (fused == host).mean() < 0.9
