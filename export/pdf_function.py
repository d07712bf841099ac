"""Bodies of the ``saphnet::PDFConv`` ONNX function, in standard ONNX ops.

Two bodies compute the same maths as :func:`saphnet.ops.pdf_conv_reference`:

* :func:`deformconv_function`: one ``DeformConv`` (opset 19) with the mask input;
  TensorRT's parser maps it to its built-in ModulatedDeformConv2d plugin and ONNX
  Runtime (>= 1.25) runs it on CPU.
* :func:`decomposed_function`: ``GridSample`` (opset 16) samples all K*K taps in one
  call, the mask scales them and a 1x1 ``Conv`` applies W: the im2col formulation, for
  runtimes that have neither our plugin nor ``DeformConv``.

Both take the node's attributes by reference (``kernel_shape``, ``pads``, ``strides``,
``dilations``), so one function serves every PDF node of a model, and both are
polymorphic in the dtype of ``X``: in a float16 graph ``DeformConv`` runs in float16
(offsets cast to float16; they are bounded by the model's ``offset_max``), while the
decomposition keeps the sample coordinates and the bilinear sampling in float32 (the
``offset`` input is float32 in both precisions) and casts to float16 for the ``Conv``.
"""

from __future__ import annotations

from onnx import AttributeProto, FunctionProto, NodeProto, TensorProto, helper

from ..pdf_identity import DOMAIN, OP_TYPE

INPUTS = ["X", "offset", "mask", "W", "B"]
OUTPUTS = ["Y"]
GEOMETRY_ATTRIBUTES = ["kernel_shape", "pads", "strides", "dilations"]
ATTRIBUTES = [*GEOMETRY_ATTRIBUTES, "plugin_namespace", "plugin_version"]

DEFORMCONV_OPSET = 19
GRIDSAMPLE_OPSET = 16
GRIDSAMPLE_LINEAR_OPSET = 20  # GridSample renamed mode "bilinear" to "linear"


def _node(op_type: str, inputs: list[str], outputs: list[str], **attrs: object) -> NodeProto:
    return helper.make_node(op_type, inputs, outputs, **attrs)


def _with_refs(node: NodeProto, refs: dict[str, str]) -> NodeProto:
    """Add attributes that refer to the calling node's INTS attributes (name -> ref)."""
    for name, ref in refs.items():
        node.attribute.append(
            helper.make_attribute_ref(name, AttributeProto.INTS, ref_attr_name=ref)
        )
    return node


def _function(nodes: list[NodeProto], opset: int, doc: str) -> FunctionProto:
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        INPUTS,
        OUTPUTS,
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=ATTRIBUTES,
        doc_string=doc,
    )


def deformconv_function(opset: int) -> FunctionProto:
    """``Y = DeformConv(X, W, offset, B, mask)`` with offset and mask cast to X's type."""
    nodes = [
        _node("CastLike", ["offset", "X"], ["offset_t"]),
        _node("CastLike", ["mask", "X"], ["mask_t"]),
        _with_refs(
            _node("DeformConv", ["X", "W", "offset_t", "B", "mask_t"], ["Y"]),
            {name: name for name in GEOMETRY_ATTRIBUTES},
        ),
    ]
    return _function(nodes, opset, "PDF convolution as ONNX DeformConv with its mask input.")


def decomposed_function(opset: int) -> FunctionProto:
    """GridSample + Mul + 1x1 Conv.

    Tap k = (ky, kx) of output pixel (i, j) samples X at
    ``y = i*stride_h - pad_top + ky*dilation_h + offset[2k]`` (x likewise), normalised
    for ``GridSample(align_corners=0, padding_mode="zeros")`` as ``(2*y + 1)/H - 1``,
    which reads zero outside the image exactly like DeformConv. The K*K taps are
    stacked along the grid's height so one GridSample samples all of them.
    """
    mode = "linear" if opset >= GRIDSAMPLE_LINEAR_OPSET else "bilinear"
    f32 = TensorProto.FLOAT
    i64 = TensorProto.INT64

    def const(name: str, value: int | float) -> NodeProto:
        dtype = i64 if isinstance(value, int) else f32
        return _node("Constant", [], [name], value=helper.make_tensor(name, dtype, [], [value]))

    def const_1d(name: str, values: list[int]) -> NodeProto:
        return _node(
            "Constant", [], [name], value=helper.make_tensor(name, i64, [len(values)], values)
        )

    def attr_tensor(name: str) -> NodeProto:
        return _with_refs(_node("Constant", [], [f"{name}_t"]), {"value_ints": name})

    def pick(out: str, src: str, index: str) -> NodeProto:
        return _node("Gather", [src, index], [out], axis=0)

    nodes = [
        *(attr_tensor(name) for name in GEOMETRY_ATTRIBUTES),
        const("c0", 0),
        const("c1", 1),
        const("c2", 2),
        const("c3", 3),
        const("one_f", 1.0),
        const("two_f", 2.0),
        const_1d("ax0", [0]),
        const_1d("ax1", [1]),
        const_1d("ax_last", [-1]),
        const_1d("ax01", [0, 1]),
        const_1d("ax02", [0, 2]),
        const_1d("ax12", [1, 2]),
        const_1d("copy", [0]),  # Reshape: keep this dim
        const_1d("copy2", [0, 0]),
        const_1d("minus1", [-1]),
        const_1d("one_1d", [1]),
        const_1d("pair", [2]),
        # sizes: X (N, C, H, W), offset (N, 2*K*K, Ho, Wo)
        _node("Shape", ["X"], ["x_shape"]),
        _node("Shape", ["offset"], ["o_shape"]),
        pick("h_i", "x_shape", "c2"),
        pick("w_i", "x_shape", "c3"),
        _node("Cast", ["h_i"], ["h_f"], to=f32),
        _node("Cast", ["w_i"], ["w_f"], to=f32),
        pick("ho", "o_shape", "c2"),
        pick("wo", "o_shape", "c3"),
        _node("Unsqueeze", ["ho", "ax0"], ["ho_1d"]),
        _node("Unsqueeze", ["wo", "ax0"], ["wo_1d"]),
        # tap positions: k = ky * kw + kx, row-major
        _node("ReduceProd", ["kernel_shape_t"], ["taps"], keepdims=0),
        _node("Unsqueeze", ["taps", "ax0"], ["taps_1d"]),
        pick("kw", "kernel_shape_t", "c1"),
        _node("Range", ["c0", "taps", "c1"], ["tap"]),
        _node("Div", ["tap", "kw"], ["ky"]),
        _node("Mod", ["tap", "kw"], ["kx"]),
        pick("pad_h", "pads_t", "c0"),
        pick("pad_w", "pads_t", "c1"),
        pick("stride_h", "strides_t", "c0"),
        pick("stride_w", "strides_t", "c1"),
        pick("dil_h", "dilations_t", "c0"),
        pick("dil_w", "dilations_t", "c1"),
        # y of (tap, i): (K*K, Ho, 1); x of (tap, j): (K*K, 1, Wo)
        _node("Range", ["c0", "ho", "c1"], ["rows"]),
        _node("Mul", ["rows", "stride_h"], ["rows_s"]),
        _node("Sub", ["rows_s", "pad_h"], ["rows_p"]),
        _node("Mul", ["ky", "dil_h"], ["ky_d"]),
        _node("Unsqueeze", ["ky_d", "ax12"], ["ky_3d"]),
        _node("Unsqueeze", ["rows_p", "ax02"], ["rows_3d"]),
        _node("Add", ["ky_3d", "rows_3d"], ["base_y_i"]),
        _node("Cast", ["base_y_i"], ["base_y"], to=f32),
        _node("Range", ["c0", "wo", "c1"], ["cols"]),
        _node("Mul", ["cols", "stride_w"], ["cols_s"]),
        _node("Sub", ["cols_s", "pad_w"], ["cols_p"]),
        _node("Mul", ["kx", "dil_w"], ["kx_d"]),
        _node("Unsqueeze", ["kx_d", "ax12"], ["kx_3d"]),
        _node("Unsqueeze", ["cols_p", "ax01"], ["cols_3d"]),
        _node("Add", ["kx_3d", "cols_3d"], ["base_x_i"]),
        _node("Cast", ["base_x_i"], ["base_x"], to=f32),
        # offsets (N, K*K, 2, Ho, Wo): channel 2k = dy, 2k+1 = dx; all float32
        _node("Concat", ["copy", "minus1", "pair", "ho_1d", "wo_1d"], ["o5_shape"], axis=0),
        _node("Cast", ["offset"], ["offset_f"], to=f32),
        _node("Reshape", ["offset_f", "o5_shape"], ["offset5"]),
        _node("Gather", ["offset5", "c0"], ["dy"], axis=2),
        _node("Gather", ["offset5", "c1"], ["dx"], axis=2),
        _node("Add", ["base_y", "dy"], ["sy"]),
        _node("Add", ["base_x", "dx"], ["sx"]),
        # GridSample coordinates (align_corners=0): (2*s + 1) / size - 1
        _node("Mul", ["sx", "two_f"], ["sx2"]),
        _node("Add", ["sx2", "one_f"], ["sx21"]),
        _node("Div", ["sx21", "w_f"], ["gx0"]),
        _node("Sub", ["gx0", "one_f"], ["gx"]),
        _node("Mul", ["sy", "two_f"], ["sy2"]),
        _node("Add", ["sy2", "one_f"], ["sy21"]),
        _node("Div", ["sy21", "h_f"], ["gy0"]),
        _node("Sub", ["gy0", "one_f"], ["gy"]),
        _node("Unsqueeze", ["gx", "ax_last"], ["gx5"]),
        _node("Unsqueeze", ["gy", "ax_last"], ["gy5"]),
        _node("Concat", ["gx5", "gy5"], ["grid5"], axis=-1),  # (N, K*K, Ho, Wo, 2)
        _node("Concat", ["copy", "minus1", "wo_1d", "pair"], ["grid_shape"], axis=0),
        _node("Reshape", ["grid5", "grid_shape"], ["grid"]),  # (N, K*K*Ho, Wo, 2)
        # sample every tap in float32: (N, C, K*K*Ho, Wo) -> (N, C, K*K, Ho, Wo)
        _node("Cast", ["X"], ["x_f"], to=f32),
        _node(
            "GridSample",
            ["x_f", "grid"],
            ["sampled"],
            align_corners=0,
            mode=mode,
            padding_mode="zeros",
        ),
        _node("Concat", ["copy2", "taps_1d", "ho_1d", "wo_1d"], ["s5_shape"], axis=0),
        _node("Reshape", ["sampled", "s5_shape"], ["sampled5"]),
        _node("Cast", ["mask"], ["mask_f"], to=f32),
        _node("Unsqueeze", ["mask_f", "ax1"], ["mask5"]),
        _node("Mul", ["sampled5", "mask5"], ["modulated5"]),
        # (N, C*K*K, Ho, Wo), channel-major like W.reshape(C_out, C_in*K*K)
        _node("Concat", ["copy", "minus1", "ho_1d", "wo_1d"], ["cols_shape"], axis=0),
        _node("Reshape", ["modulated5", "cols_shape"], ["columns_f"]),
        _node("CastLike", ["columns_f", "X"], ["columns"]),
        _node("Concat", ["copy", "minus1", "one_1d", "one_1d"], ["w_shape"], axis=0),
        _node("Reshape", ["W", "w_shape"], ["w_1x1"]),
        _node("Conv", ["columns", "w_1x1", "B"], ["Y"]),
    ]
    return _function(
        nodes, opset, "PDF convolution as GridSample of all taps, mask, and a 1x1 Conv."
    )


def pdf_function(body: str, opset: int) -> FunctionProto:
    """The function for ``body`` ("deformconv" or "decomposed") at ``opset``."""
    if body == "deformconv":
        return deformconv_function(opset)
    if body == "decomposed":
        return decomposed_function(opset)
    raise ValueError(f"unknown PDFConv body {body!r}")
