"""The TensorRT plugin saphnet::PDFConv: registration, creation from fields, an engine
round trip through serialization, and engines built from the custom-op ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="needs the tensorrt package")
torch = pytest.importorskip("torch")

from saphnet import plugins  # noqa: E402
from saphnet.errors import SaphnetError  # noqa: E402
from saphnet.ops import pdf_conv_reference  # noqa: E402
from saphnet.runtime.trt_env import tensorrt_logger  # noqa: E402

pytestmark = pytest.mark.tensorrt

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
try:
    if not plugins.has_tensorrt():
        pytest.skip(
            "libsaphnet_plugins.so was built without TensorRT "
            "(make plugins CMAKE_ARGS=-DTENSORRT_ROOT=...)",
            allow_module_level=True,
        )
except SaphnetError as exc:
    pytest.skip(f"plugin library not built: {exc}", allow_module_level=True)

LOGGER = tensorrt_logger(trt)  # the process's one logger, as saphnet's own objects use
STRONGLY_TYPED = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@pytest.fixture(scope="module")
def creator():
    plugins.register_tensorrt_plugin()
    found = trt.get_plugin_registry().get_creator(
        plugins.PLUGIN_NAME, plugins.PLUGIN_VERSION, plugins.PLUGIN_NAMESPACE
    )
    assert found is not None
    return found


def _fields(kernel=(3, 3), pads=(1, 1, 1, 1), strides=(1, 1), dilations=(1, 1)):
    ints = {"kernel_shape": kernel, "pads": pads, "strides": strides, "dilations": dilations}
    fields = [
        trt.PluginField(name, np.array(values, dtype=np.int32), trt.PluginFieldType.INT32)
        for name, values in ints.items()
    ]
    fields.append(trt.PluginField("plugin_namespace", b"saphnet", trt.PluginFieldType.CHAR))
    fields.append(trt.PluginField("plugin_version", b"1", trt.PluginFieldType.CHAR))
    return trt.PluginFieldCollection(fields)


def test_creator_is_registered_under_name_version_namespace(creator):
    assert creator.name == "PDFConv"
    assert creator.plugin_version == "1"
    assert creator.plugin_namespace == "saphnet"
    names = {f.name for f in creator.field_names}
    assert {"kernel_shape", "pads", "strides", "dilations"} <= names
    assert {"plugin_namespace", "plugin_version"} <= names
    plugins.register_tensorrt_plugin()  # idempotent


def test_plugin_from_fields_and_bad_fields_give_none(creator):
    plugin = creator.create_plugin("pdf", _fields(), trt.TensorRTPhase.BUILD)
    assert plugin is not None
    bad = _fields(strides=(0, 1))
    assert creator.create_plugin("pdf_bad", bad, trt.TensorRTPhase.BUILD) is None


def _run(engine, feeds: dict[str, torch.Tensor], output: str, shape, dtype) -> torch.Tensor:
    context = engine.create_execution_context()
    out = torch.empty(shape, dtype=dtype, device="cuda")
    for name, tensor in feeds.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    context.set_tensor_address(output, out.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_engine_round_trip_matches_reference(creator, dtype):
    """Plugin from fields -> network -> serialized engine -> new runtime -> same maths."""
    g = torch.Generator().manual_seed(0)
    n, c_in, c_out, h, w, k = 2, 16, 24, 20, 28, 3
    x = torch.randn(n, c_in, h, w, generator=g)
    offset = torch.rand(n, 2 * k * k, h, w, generator=g) * 6 - 3
    mask = torch.rand(n, k * k, h, w, generator=g)
    weight = torch.randn(c_out, c_in, k, k, generator=g) / (c_in * k * k) ** 0.5
    bias = torch.randn(c_out, generator=g)
    trt_dtype = trt.float32 if dtype == torch.float32 else trt.float16
    np_dtype = np.float32 if dtype == torch.float32 else np.float16

    builder = trt.Builder(LOGGER)
    network = builder.create_network(STRONGLY_TYPED)
    tx = network.add_input("x", trt_dtype, (-1, c_in, -1, -1))
    toff = network.add_input("offset", trt.float32, (-1, 2 * k * k, -1, -1))
    tmask = network.add_input("mask", trt_dtype, (-1, k * k, -1, -1))
    wconst = weight.numpy().astype(np_dtype)
    bconst = bias.numpy().astype(np_dtype)
    tw = network.add_constant(wconst.shape, trt.Weights(wconst)).get_output(0)
    tb = network.add_constant(bconst.shape, trt.Weights(bconst)).get_output(0)
    plugin = creator.create_plugin("pdf", _fields(), trt.TensorRTPhase.BUILD)
    layer = network.add_plugin_v3([tx, toff, tmask, tw, tb], [], plugin)
    layer.get_output(0).name = "y"
    network.mark_output(layer.get_output(0))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, c in (("x", c_in), ("offset", 2 * k * k), ("mask", k * k)):
        profile.set_shape(name, (1, c, 8, 8), (n, c, h, w), (4, c, 64, 64))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    assert blob is not None

    engine = trt.Runtime(LOGGER).deserialize_cuda_engine(bytes(blob))  # createPlugin(RUNTIME)
    assert engine is not None
    feeds = {
        "x": x.to("cuda", dtype),
        "offset": offset.cuda(),
        "mask": mask.to("cuda", dtype),
    }
    got = _run(engine, feeds, "y", (n, c_out, h, w), dtype)
    inputs = (feeds["x"], feeds["offset"], feeds["mask"], weight.to("cuda", dtype))
    expected = pdf_conv_reference(*(t.double() for t in inputs), bias.cuda().double(), padding=1)
    scale = expected.abs().max()
    tol = 1e-4 if dtype == torch.float32 else 4e-3
    assert (got.double() - expected).abs().max() <= tol * scale


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_from_custom_op_onnx_matches_pytorch(creator, tmp_path, precision, tiny_weights):
    import onnx

    from saphnet.export import export_onnx
    from saphnet.model import SAPHNet
    from saphnet.runtime.engine_build import parse_onnx
    from saphnet.runtime.pdf_layers import count_plugin_layers, pdf_ops

    model = SAPHNet.load(tiny_weights)
    path = tmp_path / f"tiny_{precision}.onnx"
    export_onnx(model, path, pdf_op="custom", precision=precision, opset=19)

    # As saphnet build parses it: without the function (TensorRT <= 10.6 imports it first).
    builder, network, _ = parse_onnx(trt, path, True, without_pdf_function=True)
    ops = pdf_ops(onnx.load(str(path)))
    assert count_plugin_layers(trt, network, ops.node_names)[0] == ops.custom > 0
    image = torch.rand(1, 3, 64, 96)
    input_name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1, 3, 32, 32), (1, 3, 64, 96), (1, 3, 128, 128))
    build_config = builder.create_builder_config()
    build_config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, build_config)
    assert blob is not None
    engine = trt.Runtime(LOGGER).deserialize_cuda_engine(bytes(blob))
    in_dtype = torch.float16 if network.get_input(0).dtype == trt.float16 else torch.float32
    out_dtype = torch.float16 if network.get_output(0).dtype == trt.float16 else torch.float32
    got = _run(
        engine,
        {input_name: image.to("cuda", in_dtype)},
        network.get_output(0).name,
        (1, 3, 64, 96),
        out_dtype,
    )
    with torch.no_grad():
        expected = model(image)
    err = (got.float().cpu() - expected).abs().max().item()
    assert err <= (1e-3 if precision == "fp32" else 2e-2), err
