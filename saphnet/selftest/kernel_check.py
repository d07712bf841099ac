"""Our PDFConv kernels (CUDA) and their host build (CPU) against the float64 reference.

Every input is drawn so that its values are exact in float16 (offsets on a 1/64 px grid),
so one float64 reference per shape serves every variant: a difference is the kernel's
arithmetic and never the rounding of its inputs. The error is measured against the
output's scale (its largest magnitude), the way a reader judges a feature map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ..plugins import PluginError
from .report import FAILED, Stage
from .shapes import OpShape, Variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    max_rel: float
    """Largest allowed max |error| / max |reference|."""
    why: str


TOLERANCES = {
    "float32": Tolerance(
        1e-5,
        "FP32 data: max |error| <= 1e-5 x max |reference| (FP32 accumulation of up to "
        "C_in*K^2 = 3,200 products rounds at ~1e-6; the host build measured 5.8e-7)",
    ),
    "float16": Tolerance(
        2.0**-9,
        "FP16 data: max |error| <= 2^-9 = 1.95e-3 x max |reference|, four FP16 half-ulps "
        "(the output's own rounding is one; the fused kernel also rounds each bilinear "
        "sample to FP16 before the tensor-core MMA)",
    ),
}
NONFINITE = "every output finite: any NaN or Inf fails the case"
OFFSET_RANGE = 3.0
"""Offsets within +-3 px: many taps land across the image border."""


def make_inputs(shape: OpShape, device: str, seed: int = 0):
    """float64 tensors (x, offset, mask, weight, bias) whose values are exact in float16."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    kh, kw = shape.kernel
    ho, wo = shape.out_size
    taps = kh * kw
    f64 = {"device": device, "dtype": torch.float64, "generator": g}

    def exact16(t: torch.Tensor) -> torch.Tensor:
        return t.half().double()

    x = exact16(torch.randn(shape.batch, shape.c_in, shape.height, shape.width, **f64))
    offset = torch.rand(shape.batch, 2 * taps, ho, wo, **f64) * (2 * OFFSET_RANGE) - OFFSET_RANGE
    offset = torch.round(offset * 64) / 64
    mask = exact16(torch.rand(shape.batch, taps, ho, wo, **f64))
    weight = exact16(
        torch.randn(shape.c_out, shape.c_in, kh, kw, **f64) / math.sqrt(shape.c_in * taps)
    )
    bias = exact16(torch.randn(shape.c_out, **f64))
    return x, offset, mask, weight, bias


def reference(shape: OpShape, x, offset, mask, weight, bias):
    """float64 reference output; asymmetric pads as an explicit zero border, which samples
    exactly as pads do (every corner there reads zero)."""
    import torch.nn.functional as F

    from ..ops import pdf_conv_reference

    top, left, bottom, right = shape.pads
    padded = F.pad(x, (left, right, top, bottom))
    return pdf_conv_reference(
        padded, offset, mask, weight, bias, stride=shape.stride, padding=0,
        dilation=shape.dilation,
    )  # fmt: skip


def errors(expected, got) -> dict[str, float | int]:
    """max/mean abs error, the output's scale (max |reference|), both errors relative to
    it, NaN/Inf count."""
    import torch

    got64 = got.double()
    finite = torch.isfinite(got64)
    nonfinite = int((~finite).sum())
    diff = (got64 - expected).abs()
    scale = float(expected.abs().max())
    max_abs = float(diff[finite].max()) if bool(finite.any()) else math.inf
    mean_abs = float(diff[finite].mean()) if bool(finite.any()) else math.inf
    return {
        "max_abs": max_abs,
        "mean_abs": mean_abs,
        "scale": scale,
        "max_rel": max_abs / scale if scale > 0 else max_abs,
        "mean_rel": mean_abs / scale if scale > 0 else mean_abs,
        "nonfinite": nonfinite,
    }


def verdict(variant: Variant, metrics: dict[str, float | int]) -> tuple[bool, float]:
    """(passed, error/tolerance) of one case."""
    tol = TOLERANCES[variant.dtype].max_rel
    ratio = float(metrics["max_rel"]) / tol
    return (metrics["nonfinite"] == 0 and ratio <= 1.0), ratio


def _run_host(variant: Variant, shape: OpShape, tensors):
    import torch

    from .. import plugins

    x, offset, mask, weight, bias = (t.numpy() for t in tensors)
    y = plugins.host_forward(
        x.astype(variant.dtype), offset.astype(variant.offset_dtype),
        mask.astype(variant.mask_dtype), weight.astype(variant.dtype),
        bias.astype(variant.dtype), stride=shape.stride, padding=shape.pads,
        dilation=shape.dilation, layout=variant.layout,
    )  # fmt: skip
    return torch.from_numpy(y)


def _run_cuda(variant: Variant, shape: OpShape, tensors):
    import torch

    from .. import plugins

    dt = {"float32": torch.float32, "float16": torch.float16}
    x, offset, mask, weight, bias = tensors
    y = plugins.cuda_forward(
        x.to(dt[variant.dtype]), offset.to(dt[variant.offset_dtype]),
        mask.to(dt[variant.mask_dtype]), weight.to(dt[variant.dtype]),
        bias.to(dt[variant.dtype]), stride=shape.stride, padding=shape.pads,
        dilation=shape.dilation, algo=variant.algo, layout=variant.layout,
    )  # fmt: skip
    torch.cuda.synchronize()
    return y


def check(
    stage: Stage, shapes: list[OpShape], variants: list[Variant], device: str, progress=None
) -> None:
    """Run every (shape, variant) on ``device`` ("cpu": the host build; "cuda": the
    kernels); one row each; the stage fails when any case misses its tolerance."""
    import torch

    run = _run_host if device == "cpu" else _run_cuda
    stage.tolerances = {dt: t.why for dt, t in TOLERANCES.items()}
    stage.tolerances["NaN/Inf"] = NONFINITE
    stage.tolerances["inputs"] = (
        f"x ~ N(0, 1), weight ~ N(0, 1/(C_in K^2)), mask ~ U(0, 1), offsets ~ U(-{OFFSET_RANGE:g}, "
        f"{OFFSET_RANGE:g}) px on a 1/64 grid; every value exact in FP16"
    )
    failed = 0
    for index, shape in enumerate(shapes):
        try:
            tensors = make_inputs(shape, device, seed=index)
            expected = reference(shape, *tensors)
        except torch.cuda.OutOfMemoryError:
            stage.rows.append({"shape": shape.label, "dims": shape.dims, "status": "skipped: "
                               "the float64 reference is out of GPU memory"})  # fmt: skip
            torch.cuda.empty_cache()
            continue
        for variant in variants:
            row: dict[str, object] = {"shape": shape.label, "dims": shape.dims}
            row["variant"] = variant.label
            try:
                metrics = errors(expected, run(variant, shape, tensors))
            except torch.cuda.OutOfMemoryError:
                row["status"] = "skipped: out of GPU memory"
                torch.cuda.empty_cache()
                stage.rows.append(row)
                continue
            except PluginError as exc:  # the C API refused or a launch failed: a finding
                row["status"] = f"FAILED: {exc}"[:200]
                failed += 1
                stage.rows.append(row)
                log.warning("kernel check failed: %s %s: %s", shape.label, variant.label, exc)
                continue
            passed, ratio = verdict(variant, metrics)
            row.update(metrics)
            row["error/tolerance"] = ratio
            row["status"] = "passed" if passed else "FAILED"
            failed += not passed
            stage.rows.append(row)
            if not passed:
                log.warning("kernel check failed: %s %s %s", shape.label, variant.label, metrics)
        del tensors, expected
        if progress is not None:
            progress(1)
    cases = sum(1 for r in stage.rows if not str(r["status"]).startswith("skipped"))
    stage.info.update({"cases": cases, "failed": failed, "shapes": len(shapes)})
    worst = max((r["error/tolerance"] for r in stage.rows if "error/tolerance" in r), default=None)
    stage.info["worst error/tolerance"] = worst
    if failed:
        stage.status = FAILED
        stage.reason = f"{failed} of {cases} cases failed (outside tolerance, or refused)"
