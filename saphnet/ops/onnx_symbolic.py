"""The ``saphnet::PDFConv`` ONNX node, emitted by :func:`saphnet.ops.pdf_conv` during export.

One node per PDF convolution, in the custom domain ``saphnet``, with inputs
``(X, offset, mask, W, B)`` and attributes named like ONNX ``DeformConv``
(``kernel_shape``, ``pads`` as [top, left, bottom, right], ``strides``, ``dilations``)
plus ``plugin_namespace`` and ``plugin_version``, which TensorRT's ONNX parser uses to
find our plugin. The node's body (a model-local ONNX function) is attached after export
by :mod:`saphnet.export`; the exporter cannot carry it through its opset conversion.

Types: ``X``, ``mask``, ``W``, ``B`` and the output share the network's dtype (float32
or float16); ``offset`` is float32 in both precisions, because the model computes the
sampling offsets in float32 (float16 cannot hold sample coordinates of large feature
maps to sub-pixel precision).
"""

from __future__ import annotations

import torch

from ..pdf_identity import DOMAIN, OP_TYPE, OP_VERSION, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .pdf_conv import IntPair, PDFGeometry


def pdf_conv_attributes(
    kernel: tuple[int, int], geometry: PDFGeometry
) -> dict[str, list[int] | str]:
    """The node's attributes: DeformConv's names and layout plus the plugin's identity."""
    (ph, pw) = geometry.padding
    return {
        "kernel_shape": list(kernel),
        "pads": [ph, pw, ph, pw],
        "strides": list(geometry.stride),
        "dilations": list(geometry.dilation),
        "plugin_namespace": PLUGIN_NAMESPACE,
        "plugin_version": PLUGIN_VERSION,
    }


def pdf_conv_symbolic(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
) -> torch.Tensor:
    """Emit one ``saphnet::PDFConv`` node; its output shape is (N, C_out, Ho, Wo) with
    Ho, Wo taken from ``offset`` so symbolic (dynamic) sizes flow through unchanged."""
    geometry = PDFGeometry.of(stride, padding, dilation)
    c_out, _, kh, kw = weight.shape
    if bias is None:
        bias = weight.new_zeros(c_out)
    return torch.onnx.ops.symbolic(
        f"{DOMAIN}::{OP_TYPE}",
        (x, offset.float(), mask, weight, bias),
        attrs=pdf_conv_attributes((int(kh), int(kw)), geometry),
        dtype=x.dtype,
        shape=(x.shape[0], c_out, offset.shape[2], offset.shape[3]),
        version=OP_VERSION,
    )
