"""The shapes and variants the kernels are checked on.

The grid is the network's own PDF layers (the shipped and the paper configuration, at
256x256 and 720x1280, each patch level at its batch) plus geometry the model never uses
but the ONNX contract allows (odd sizes, strides, dilations, asymmetric pads, channel
counts off every tile multiple) and one 3840x2160 map, where sample coordinates pass
2048 and FP16 can no longer hold them to sub-pixel precision.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..model import SAPHNetConfig, read_config
from ..model.complexity import pdf_layer_shapes
from ..weights import default_weights

MODEL_SIZES_FULL = ((256, 256), (720, 1280))
MODEL_SIZES_QUICK = ((256, 256),)
SPEED_SIZE = (720, 1280)


@dataclass(frozen=True)
class OpShape:
    """One PDF convolution: input (N, C_in, H, W), weight (C_out, C_in, Kh, Kw), geometry.
    ``pads`` are ONNX's (top, left, bottom, right)."""

    label: str
    batch: int
    c_in: int
    c_out: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    @property
    def out_size(self) -> tuple[int, int]:
        """(Ho, Wo), ONNX DeformConv's formula with asymmetric pads."""
        top, left, bottom, right = self.pads
        sizes = []
        for size, k, s, d, pad in zip(
            (self.height, self.width), self.kernel, self.stride, self.dilation,
            (top + bottom, left + right), strict=True,
        ):  # fmt: skip
            sizes.append((size + pad - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    @property
    def flop(self) -> float:
        """2 x MACs of the GEMM the op is (C_out x pixels x C_in*Kh*Kw)."""
        ho, wo = self.out_size
        kh, kw = self.kernel
        return 2.0 * self.batch * self.c_out * ho * wo * self.c_in * kh * kw

    @property
    def dims(self) -> str:
        kh, kw = self.kernel
        return f"{self.batch}x{self.c_in}x{self.height}x{self.width} -> {self.c_out}, k{kh}x{kw}"


def shipped_config() -> SAPHNetConfig:
    """The shipped weights' config (the paper's when no weights are shipped)."""
    weights = default_weights()
    return read_config(weights) if weights else SAPHNetConfig()


@functools.cache
def model_shapes(sizes: tuple[tuple[int, int], ...]) -> tuple[OpShape, ...]:
    """Every distinct PDF layer shape of the shipped and the paper configs at ``sizes``
    (traced once per process)."""
    shapes = []
    for name, config in (("shipped", shipped_config()), ("paper", SAPHNetConfig())):
        for h, w in sizes:
            for n, c, fh, fw, k in dict.fromkeys(pdf_layer_shapes(config, h, w)):
                label = f"{name} {h}x{w} {n}x{c}x{fh}x{fw}"
                shapes.append(OpShape(label, n, c, c, fh, fw, (k, k), pads=(k // 2,) * 4))
    return tuple(shapes)


GEOMETRY = [
    OpShape("odd 37x53, stride 2", 1, 24, 40, 37, 53, (3, 3), (2, 2), (1, 1, 1, 1)),
    OpShape("dilation 2", 2, 20, 12, 31, 29, (3, 3), pads=(2, 2, 2, 2), dilation=(2, 2)),
    OpShape("asymmetric pads 2,1,0,3", 1, 13, 19, 23, 41, (5, 5), pads=(2, 1, 0, 3)),
    OpShape(
        "k3x5, stride 1x2, dilation 2x1", 2, 33, 9, 10, 14, (3, 5), (1, 2), (2, 2, 2, 2), (2, 1)
    ),
    OpShape("batch 4, C 7->5", 4, 7, 5, 13, 11, (3, 3), pads=(1, 1, 1, 1)),
    OpShape("C 37->130, k5", 2, 37, 130, 19, 23, (5, 5), pads=(2, 2, 2, 2)),
    OpShape("k1x1", 1, 3, 1, 5, 5, (1, 1)),
]
UHD = OpShape("3840x2160, C 16", 1, 16, 16, 2160, 3840, (3, 3), pads=(1, 1, 1, 1))


def cuda_grid(quick: bool) -> list[OpShape]:
    """The GPU grid: the model's shapes, the geometry cases and (full run) the 4K map."""
    sizes = MODEL_SIZES_QUICK if quick else MODEL_SIZES_FULL
    return [*model_shapes(sizes), *GEOMETRY, *([] if quick else [UHD])]


def host_grid() -> list[OpShape]:
    """What the host build checks on a CPU in seconds: the geometry cases and the shipped
    network's full-resolution layer at 256x256."""
    shipped = [s for s in model_shapes(MODEL_SIZES_QUICK) if s.label.startswith("shipped")]
    return GEOMETRY + shipped[-1:]


@dataclass(frozen=True)
class Variant:
    """Data types, memory layout and kernel of one check."""

    dtype: str
    offset_dtype: str
    mask_dtype: str
    layout: str
    algo: str
    """``direct`` or ``fused`` for the CUDA kernels, ``host`` for the host build."""

    @property
    def label(self) -> str:
        short = {"float32": "f32", "float16": "f16"}
        return (
            f"{self.algo} {short[self.dtype]} off {short[self.offset_dtype]} "
            f"mask {short[self.mask_dtype]} {self.layout}"
        )


F32, F16 = "float32", "float16"
# FP16 data with FP16 offsets and mask, with FP32 offsets (the exported model's), and with both FP32.
_F16_SIDES = ((F16, F16), (F32, F16), (F32, F32))


def host_variants() -> list[Variant]:
    found = [Variant(F32, F32, F32, layout, "host") for layout in ("nchw", "nhwc8")]
    found += [Variant(F16, off, mask, "nchw", "host") for off, mask in _F16_SIDES]
    found.append(Variant(F16, F16, F16, "nhwc8", "host"))
    return found


def cuda_variants() -> list[Variant]:
    found = [Variant(F32, F32, F32, layout, "direct") for layout in ("nchw", "nhwc8")]
    for algo in ("fused", "direct"):
        found += [Variant(F16, off, mask, "nchw", algo) for off, mask in _F16_SIDES]
        found.append(Variant(F16, F16, F16, "nhwc8", algo))
    found.append(Variant(F16, F32, F16, "nhwc8", "fused"))
    return found
