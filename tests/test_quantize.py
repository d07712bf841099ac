"""saphnet quantize: the Q/DQ layout of each target, the PDF inputs kept float, the
sensitivity search, calibration tiles, and every command that reads the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.export.calibration import calibration_tiles, folder_images, image_tiles
from saphnet.export.metadata import read_metadata
from saphnet.export.quantize import (
    QUANTIZATION_KEY,
    keep_pdf_inputs_float,
    layers_to_keep,
    pdf_inputs_through_qdq,
    quantize_onnx,
)
from saphnet.pdf_identity import DOMAIN, OP_TYPE

pytestmark = pytest.mark.slow


def _tiles(count: int = 2, side: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((1, 3, side, side), dtype=np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def quantized(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny export quantized once per target (every layer INT8)."""
    folder = tmp_path_factory.mktemp("int8")
    return {
        target: (
            quantize_onnx(tiny_onnx, folder / f"{target}.onnx", _tiles(), target, min_psnr=None),
            folder / f"{target}.onnx",
        )[1]
        for target in ("tensorrt", "cpu")
    }


def _layout(path: Path):
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    return model, inits, producers


def _dq_inputs(node, producers) -> list[onnx.NodeProto]:
    return [
        producers[i]
        for i in node.input
        if i in producers and producers[i].op_type == "DequantizeLinear"
    ]


def test_tensorrt_target_is_symmetric_int8_per_channel_weights_on_conv_convtranspose_matmul(
    quantized: dict[str, Path],
) -> None:
    model, inits, producers = _layout(quantized["tensorrt"])
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:  # zero point 0, int8, everywhere
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
    for op, axis in (("Conv", 0), ("ConvTranspose", 1), ("MatMul", None)):
        nodes = [n for n in model.graph.node if n.op_type == op]
        assert nodes, op
        for node in nodes:
            dqs = _dq_inputs(node, producers)
            activation = producers[node.input[0]]
            assert activation.op_type == "DequantizeLinear", node.name
            assert inits[activation.input[1]].ndim == 0  # per-tensor activation scale
            if axis is None:  # attention products: two activations, no weights
                assert len(dqs) == 2 and all(inits[d.input[1]].ndim == 0 for d in dqs)
                continue
            weight = producers[node.input[1]]
            assert weight.op_type == "DequantizeLinear" and weight.input[0] in inits
            w, scale = inits[weight.input[0]], inits[weight.input[1]]
            assert w.dtype == np.int8 and scale.shape == (w.shape[axis],)  # per channel
            attr = {a.name: helper.get_attribute_value(a) for a in weight.attribute}
            assert attr.get("axis", 1) == axis
            if len(node.input) > 2:  # TensorRT folds float biases itself
                assert node.input[2] in inits and inits[node.input[2]].dtype == np.float32


def test_cpu_target_is_u8s8_on_conv_only(quantized: dict[str, Path]) -> None:
    model, inits, producers = _layout(quantized["cpu"])
    for node in model.graph.node:
        if node.op_type in ("ConvTranspose", "MatMul"):
            assert not _dq_inputs(node, producers), node.name
        if node.op_type != "Conv":
            continue
        activation, weight = producers[node.input[0]], producers[node.input[1]]
        assert inits[activation.input[2]].dtype == np.uint8  # asymmetric activations
        w, zero = inits[weight.input[0]], inits[weight.input[2]]
        assert w.dtype == np.int8 and not zero.any() and zero.shape == (w.shape[0],)
        assert np.abs(w).max() <= 64  # 7-bit weights (reduce_range): no int16 saturation


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_pdfconv_offset_and_mask_stay_float(quantized: dict[str, Path], target: str) -> None:
    model, _, producers = _layout(quantized[target])
    pdf = [n for n in model.graph.node if (n.domain, n.op_type) == (DOMAIN, OP_TYPE)]
    assert pdf and pdf_inputs_through_qdq(model) == []
    for node in pdf:
        assert not _dq_inputs(node, producers), node.name  # features too
    assert any(f.name == OP_TYPE for f in model.functions)  # ONNX Runtime still runs it


def test_keep_pdf_inputs_float_rewires_a_dequantized_offset() -> None:
    """A tensor shared by a quantized Conv and the PDF op gets one Q/DQ pair for all its
    consumers from the quantizer; the PDF op must read the float tensor."""
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["off", "s", "z"], ["off_q"], name="q"),
        helper.make_node("DequantizeLinear", ["off_q", "s", "z"], ["off_dq"], name="dq"),
        helper.make_node("PDFConv", ["x", "off_dq", "m", "w", "b"], ["y"], domain=DOMAIN),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ["x", "m", "w", "b"]]
        + [helper.make_tensor_value_info("off", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [scale, zero],
    )
    model = helper.make_model(graph)
    assert pdf_inputs_through_qdq(model) == [":offset"]
    assert keep_pdf_inputs_float(model) == 1
    assert pdf_inputs_through_qdq(model) == []
    assert [n.op_type for n in model.graph.node] == ["PDFConv"]  # the orphaned pair is gone
    assert list(model.graph.node[0].input)[1] == "off"


def test_quantized_file_keeps_the_export_metadata(quantized: dict[str, Path], tiny_onnx) -> None:
    source, meta = read_metadata(tiny_onnx), read_metadata(quantized["tensorrt"])
    assert meta.precision == "int8"
    assert (meta.config, meta.weights_sha256, meta.pdf_op) == (
        source.config,
        source.weights_sha256,
        source.pdf_op,
    )
    props = {p.key: p.value for p in onnx.load(str(quantized["cpu"])).metadata_props}
    record = json.loads(props[QUANTIZATION_KEY])
    assert record["target"] == "cpu" and record["quantized_layers"] > 0
    assert record["psnr"] > 20 and record["tiles"] == 2


def test_layers_to_keep_removes_the_costliest_error_first() -> None:
    # Three layers alone at 40, 50, 60 dB (MSE 1e-4, 1e-5, 1e-6); all together 39.5 dB.
    sensitivity = {"a": 50.0, "b": 40.0, "c": 60.0}
    assert layers_to_keep(sensitivity, 39.5, 39.0) == 0  # met already
    assert layers_to_keep(sensitivity, 39.5, 45.0) == 1  # without b: ~49.6 dB predicted
    assert layers_to_keep(sensitivity, 39.5, 55.0) == 2
    assert layers_to_keep(sensitivity, 39.5, 80.0) == 3


def test_sensitivity_keeps_layers_float_until_min_psnr_is_met(
    tiny_onnx: Path, tmp_path: Path, quantized: dict[str, Path]
) -> None:
    props = {p.key: p.value for p in onnx.load(str(quantized["tensorrt"])).metadata_props}
    all_int8 = json.loads(props[QUANTIZATION_KEY])["psnr"]
    goal = all_int8 + 6.0  # four times less error than every layer in INT8
    out = tmp_path / "q.onnx"
    report = quantize_onnx(tiny_onnx, out, _tiles(), "tensorrt", min_psnr=goal)
    assert report.sensitivity and len(report.sensitivity) == report.quantized_layers + len(
        report.kept_float
    )
    assert report.kept_float and report.psnr >= goal
    worst = min(report.sensitivity, key=report.sensitivity.get)
    assert worst in report.kept_float  # the costliest layer alone is the first kept
    model, _, producers = _layout(out)
    for node in model.graph.node:
        if node.name in report.kept_float:
            assert not _dq_inputs(node, producers), node.name


def test_keep_fp_by_module_name_and_bad_names(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    report = quantize_onnx(
        tiny_onnx, out, _tiles(1), "cpu", keep_fp=["levels.0.decoder.head*"], min_psnr=None
    )
    assert len(report.kept_float) == 1
    model, _, producers = _layout(out)
    (head,) = [n for n in model.graph.node if n.name == report.kept_float[0]]
    assert not _dq_inputs(head, producers)
    with pytest.raises(SaphnetError, match="matches no Conv layer") as exc:
        quantize_onnx(tiny_onnx, tmp_path / "r.onnx", _tiles(1), "cpu", keep_fp=["nope"])
    assert "\n" not in str(exc.value)


def test_refuses_non_fp32_sources_and_existing_outputs(
    quantized: dict[str, Path], tiny_onnx: Path, tmp_path: Path
) -> None:
    with pytest.raises(SaphnetError, match="quantize an FP32 export"):
        quantize_onnx(quantized["cpu"], tmp_path / "x.onnx", _tiles(1))
    (tmp_path / "y.onnx").write_bytes(b"keep me")
    with pytest.raises(SaphnetError, match="--force"):
        quantize_onnx(tiny_onnx, tmp_path / "y.onnx", _tiles(1))
    assert (tmp_path / "y.onnx").read_bytes() == b"keep me"


def test_calibration_tiles_are_spread_round_robin(tmp_path: Path) -> None:
    from PIL import Image

    big = np.zeros((600, 800, 3), np.float32)
    tiles = image_tiles(big, 256)
    assert len(tiles) == 6 and all(t.shape == (1, 3, 256, 256) for t in tiles)
    small = image_tiles(np.zeros((100, 70, 3), np.float32), 256)
    assert [t.shape for t in small] == [(1, 3, 64, 64)]  # a multiple of 16 that fits
    taken = calibration_tiles([("a", big), ("b", big + 1)], 3)
    assert [float(t.max()) for t in taken] == [0.0, 1.0, 0.0]  # every image before a second
    with pytest.raises(SaphnetError, match="no PNG/JPEG"):
        folder_images(tmp_path)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "f.png")
    assert [name for name, _ in folder_images(tmp_path)] == ["f.png"]
    with pytest.raises(SaphnetError, match="does not exist"):
        folder_images(tmp_path / "missing")


def test_cli_quantize_then_deblur_eval_compare_and_bench_take_the_file(
    tiny_onnx: Path, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), np.uint8)).save(calib / "a.png")
    out = tmp_path / "int8.onnx"
    args = ["quantize", str(tiny_onnx), "-o", str(out), "--calibration", str(calib)]
    assert main([*args, "--images", "2", "--target", "cpu"]) == 0
    assert main([*args, "--images", "2"]) == 2  # exists: no overwrite without --force
    assert "--force" in capsys.readouterr().err
    assert read_metadata(out).precision == "int8"

    deblurred = tmp_path / "out.png"
    assert main(["deblur", str(calib / "a.png"), "-o", str(deblurred), "--model", str(out)]) == 0
    assert Image.open(deblurred).size == (96, 80)
    report = tmp_path / "eval.json"
    eval_args = ["eval", "--heldout", "--count", "1", "--model", str(out), "--json", str(report)]
    assert main([*eval_args, "--limit", "1", "--device", "cpu"]) == 0
    assert "int8" in json.loads(report.read_text())["model"]
    compare = tmp_path / "compare"
    compare_args = ["compare", str(out), "--weights", str(tiny_weights), "--max-side", "64"]
    code = main([*compare_args, "--images", str(calib / "a.png"), "-o", str(compare)])
    assert code in (0, 1)  # a verdict, not an error: the int8 thresholds exist
    assert json.loads((compare / "compare.json").read_text())["models"][0]["precision"] == "int8"
    bench = tmp_path / "bench"
    bench_args = ["bench", "--model", str(out), "--sizes", "32x32", "--iters", "1"]
    assert (
        main([*bench_args, "--warmup", "1", "-o", str(bench), "--weights", str(tiny_weights)]) == 0
    )
    (row,) = json.loads((bench / "bench.json").read_text())["results"]
    assert row["case"]["precision"] == "int8" and row["error"] is None
