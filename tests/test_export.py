"""ONNX export: the saphnet::PDFConv contract, the three op forms, FP16, metadata, errors.

One traced graph per precision serves every form (forms are rewrites of the traced
custom node), so the file stays within a minute on a 2-core CPU.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.export import export_onnx, read_metadata
from saphnet.export.op_forms import apply_op_form
from saphnet.export.pdf_function import ATTRIBUTES, pdf_function
from saphnet.export.reference_weights import RANDOM_WEIGHTS, random_model
from saphnet.model import SAPHNet
from saphnet.ops import pdf_conv_reference

SIZES = [(256, 256), (250, 333)]
TOLERANCE = 1e-4


def _session(model: onnx.ModelProto | Path, tmp_path: Path | None = None) -> ort.InferenceSession:
    if isinstance(model, onnx.ModelProto):
        assert tmp_path is not None
        path = tmp_path / "model.onnx"
        onnx.save(model, str(path))
        model = path
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def _max_error(session: ort.InferenceSession, model: SAPHNet, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = model(x).numpy()
    out = session.run(None, {"input": x.numpy()})[0]
    assert out.shape == ref.shape and out.dtype == np.float32
    return float(np.abs(out - ref).max())


@pytest.fixture(scope="module")
def tiny_model(tiny_weights: Path) -> SAPHNet:
    return SAPHNet.load(tiny_weights)


@pytest.fixture(scope="module")
def traced(tiny_onnx: Path) -> onnx.ModelProto:
    """The tiny network's custom-op graph; every form is a rewrite of it (see op_forms)."""
    return onnx.load(str(tiny_onnx))


def _pdf_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if (n.domain, n.op_type) == ("saphnet", "PDFConv")]


def test_custom_node_and_function_carry_the_contract(traced: onnx.ModelProto) -> None:
    model = apply_op_form(copy.deepcopy(traced), "custom", 19)
    onnx.checker.check_model(model, full_check=True)
    nodes = _pdf_nodes(model)
    assert len(nodes) == 6  # 3 levels x (1 encoder + 1 decoder) content-aware blocks
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {
            "kernel_shape": [3, 3],
            "pads": [1, 1, 1, 1],
            "strides": [1, 1],
            "dilations": [1, 1],
            "plugin_namespace": b"saphnet",
            "plugin_version": b"1",
        }
        assert len(node.input) == 5
    (function,) = model.functions
    assert (function.domain, function.name) == ("saphnet", "PDFConv")
    assert list(function.input) == ["X", "offset", "mask", "W", "B"]
    assert list(function.attribute) == ATTRIBUTES
    assert [n.op_type for n in function.node] == ["CastLike", "CastLike", "DeformConv"]
    assert {(o.domain, o.version) for o in model.opset_import} >= {("", 19), ("saphnet", 1)}
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3], f"batch, H and W must be dynamic, got {dims}"


@pytest.fixture(scope="module")
def two_sizes(tiny_model: SAPHNet) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, PyTorch output) at 256x256 and 250x333, computed once for every form."""
    pairs = []
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            pairs.append((x.numpy(), tiny_model(x).numpy()))
    return pairs


@pytest.mark.parametrize("form", ["custom", "deformconv", "decomposed"])
def test_every_form_matches_pytorch_at_two_sizes(
    form: str,
    traced: onnx.ModelProto,
    two_sizes: list[tuple[np.ndarray, np.ndarray]],
    tmp_path: Path,
) -> None:
    model = apply_op_form(copy.deepcopy(traced), form, 19)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ("PDFConv" in ops) == (form == "custom")
    assert ("DeformConv" in ops) == (form == "deformconv")
    assert ("GridSample" in ops) == (form == "decomposed")
    session = _session(model, tmp_path)
    for x, ref in two_sizes:
        out = session.run(None, {"input": x})[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= TOLERANCE


def test_batch_is_dynamic(traced: onnx.ModelProto, tiny_model: SAPHNet, tmp_path: Path) -> None:
    session = _session(apply_op_form(copy.deepcopy(traced), "custom", 19), tmp_path)
    assert _max_error(session, tiny_model, torch.rand(3, 3, 48, 80)) <= TOLERANCE


def test_opset_18_custom_uses_the_decomposition(traced: onnx.ModelProto) -> None:
    model = apply_op_form(copy.deepcopy(traced), "custom", 18)
    assert "GridSample" in {n.op_type for n in model.functions[0].node}


def _single_pdf_model(
    body: str, geometry: tuple[int, int, int, int], opset: int, half: bool = False
) -> onnx.ModelProto:
    """A graph holding one PDFConv node with its function, inputs fed directly; with
    ``half`` every input but the offsets is float16, as in the FP16 export."""
    kernel, stride, pad, dilation = geometry
    node = helper.make_node(
        "PDFConv",
        ["X", "offset", "mask", "W", "B"],
        ["Y"],
        domain="saphnet",
        kernel_shape=[kernel, kernel],
        pads=[pad] * 4,
        strides=[stride] * 2,
        dilations=[dilation] * 2,
        plugin_namespace="saphnet",
        plugin_version="1",
    )
    t = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    types = {"X": t, "offset": TensorProto.FLOAT, "mask": t, "W": t, "B": t}
    inputs = [
        helper.make_tensor_value_info(n, types[n], ["c"] if n == "B" else list("abcd"))
        for n in types
    ]
    output = helper.make_tensor_value_info("Y", t, list("aopq"))
    graph = helper.make_graph([node], "pdf", inputs, [output])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("saphnet", 1)]
    )
    model.functions.append(pdf_function(body, opset))
    onnx.checker.check_model(model, full_check=True)
    return model


def _pdf_feeds(geometry: tuple[int, int, int, int]) -> dict[str, torch.Tensor]:
    kernel, stride, pad, dilation = geometry
    n, c_in, c_out, h, w = 2, 4, 5, 13, 17
    ho = (h + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    taps = kernel * kernel
    return {
        "X": torch.randn(n, c_in, h, w),
        "offset": 4 * torch.randn(n, 2 * taps, ho, wo),  # many samples fall outside
        "mask": torch.rand(n, taps, ho, wo),
        "W": torch.randn(c_out, c_in, kernel, kernel),
        "B": torch.randn(c_out),
    }


def _reference(feeds: dict[str, torch.Tensor], geometry: tuple[int, int, int, int]) -> np.ndarray:
    _, stride, pad, dilation = geometry
    out = pdf_conv_reference(*feeds.values(), stride=stride, padding=pad, dilation=dilation)
    return out.numpy()


GEOMETRIES = [(3, 1, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2)]  # kernel, stride, pad, dilation


@pytest.mark.parametrize(
    "body, opset", [("deformconv", 19), ("decomposed", 18), ("decomposed", 20)]
)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_function_bodies_match_the_reference(
    body: str, opset: int, geometry: tuple[int, int, int, int], tmp_path: Path
) -> None:
    feeds = _pdf_feeds(geometry)
    session = _session(_single_pdf_model(body, geometry, opset), tmp_path)
    out = session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    np.testing.assert_allclose(out, _reference(feeds, geometry), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("body", ["deformconv", "decomposed"])
def test_function_bodies_run_in_fp16(body: str, tmp_path: Path) -> None:
    geometry = GEOMETRIES[0]
    feeds = _pdf_feeds(geometry)
    halves = {k: (v if k == "offset" else v.half()) for k, v in feeds.items()}
    ref = _reference({k: v.float() for k, v in halves.items()}, geometry)
    session = _session(_single_pdf_model(body, geometry, 19, half=True), tmp_path)
    out = session.run(None, {k: v.numpy() for k, v in halves.items()})[0]
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref, atol=2e-2 * np.abs(ref).max(), rtol=0)


def test_export_writes_a_checked_file_with_metadata(
    tiny_onnx: Path, tiny_weights: Path, tiny_model: SAPHNet
) -> None:
    onnx.checker.check_model(str(tiny_onnx), full_check=True)
    meta = read_metadata(tiny_onnx)
    from saphnet import __version__
    from saphnet.files import sha256_file

    assert meta.version == __version__
    assert meta.config == tiny_model.config.to_json()
    assert meta.weights_sha256 == sha256_file(tiny_weights)
    assert (meta.pdf_op, meta.precision, meta.opset) == ("custom", "fp32", 19)


def test_export_keeps_an_existing_file_without_force(tiny_onnx: Path, tiny_model: SAPHNet) -> None:
    before = tiny_onnx.read_bytes()
    with pytest.raises(SaphnetError, match="--force"):
        export_onnx(tiny_model, tiny_onnx)
    assert tiny_onnx.read_bytes() == before


@pytest.fixture(scope="module")
def fp16_path(tiny_model: SAPHNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = export_onnx(tiny_model, tmp_path_factory.mktemp("fp16") / "fp16.onnx", precision="fp16")
    onnx.checker.check_model(str(path), full_check=True)
    assert read_metadata(path).precision == "fp16"
    return path


def _psnr(out: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((out - ref) ** 2), 1e-20)))


def test_fp16_is_finite_and_close_to_fp32(fp16_path: Path, tiny_model: SAPHNet) -> None:
    session = _session(fp16_path)
    images = [torch.rand(1, 3, h, w) for h, w in SIZES]
    images += [torch.full((1, 3, 64, 96), v) for v in (0.0, 0.5, 1.0)]  # flat and saturated
    images.append((torch.rand(1, 3, 64, 64) > 0.5).float())  # saturated edges everywhere
    for x in images:
        with torch.no_grad():
            ref = tiny_model(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert np.isfinite(out).all()
        assert _psnr(out, ref) >= 45.0


def test_fp16_graph_is_strongly_typed_with_fp32_islands(fp16_path: Path) -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp16_path)))
    types = {
        v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]
    }
    types.update({t.name: t.data_type for t in model.graph.initializer})
    fp16, fp32 = TensorProto.FLOAT16, TensorProto.FLOAT

    def input_types(op: str, index: int = 0) -> set[int]:
        return {types[n.input[index]] for n in model.graph.node if n.op_type == op}

    assert input_types("Conv") == {fp16}
    assert input_types("ConvTranspose") == {fp16}
    assert input_types("PDFConv") == {fp16}
    assert input_types("PDFConv", 1) == {fp32}  # sampling offsets stay float32
    assert input_types("Softmax") == {fp32}
    assert input_types("ReduceMean") == {fp32}
    assert input_types("MatMul") == {fp32}
    assert model.graph.input[0].type.tensor_type.elem_type == fp32
    assert model.graph.output[0].type.tensor_type.elem_type == fp32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pdf_op": "deformconv", "opset": 18}, "opset >= 19"),
        ({"opset": 17}, "opset >= 18"),
        ({"opset": 99}, "newer than this onnx"),
        ({"pdf_op": "im2col"}, "unknown PDF op form"),
        ({"precision": "int8"}, "unknown precision"),
        ({"static_shape": (0, 64)}, "static shape"),
    ],
)
def test_bad_arguments_fail_in_one_line(
    kwargs: dict[str, object], message: str, tiny_model: SAPHNet, tmp_path: Path
) -> None:
    with pytest.raises(SaphnetError, match=message) as info:
        export_onnx(tiny_model, tmp_path / "x.onnx", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


def test_not_a_saphnet_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SaphnetError, match="SAPHNet model"):
        export_onnx(torch.nn.Conv2d(3, 3, 3), tmp_path / "x.onnx")  # type: ignore[arg-type]


def test_unwritable_path_is_refused(tiny_model: SAPHNet, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SaphnetError, match="cannot create folder"):
        export_onnx(tiny_model, blocker / "x.onnx")


@pytest.mark.parametrize("content", [None, b"not safetensors", "foreign"])
def test_cli_rejects_missing_or_foreign_weights(
    content: bytes | str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.safetensors"
    if content == "foreign":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(weights))
    elif content is not None:
        weights.write_bytes(content)
    code = main(["export", "--weights", str(weights), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("saphnet export: error:") and "\n" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_cli_refuses_existing_output_before_exporting(
    tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "-o", str(tiny_onnx)]) == 2
    assert "--force" in capsys.readouterr().err


def test_cli_checks_the_opset_before_loading_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--opset 17 fails in argparse; deformconv at 18 fails in one line before the
    (here unreadable) weights are even opened."""
    out = tmp_path / "x.onnx"
    with pytest.raises(SystemExit) as exc:
        main(["export", "--opset", "17", "-o", str(out)])
    assert exc.value.code == 2 and "--opset" in capsys.readouterr().err
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not safetensors")
    argv = ["export", "--pdf-op", "deformconv", "--opset", "18", "--weights", str(weights)]
    assert main([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs opset >= 19" in err and "safetensors" not in err
    assert not out.exists()


@pytest.mark.slow
def test_default_config_exports_and_matches(tmp_path: Path) -> None:
    model = random_model()
    path = export_onnx(model, tmp_path / "default.onnx", weights_sha256=RANDOM_WEIGHTS)
    assert len(_pdf_nodes(onnx.load(str(path)))) == 18
    assert _max_error(_session(path), model, torch.rand(1, 3, 64, 80)) <= TOLERANCE
