"""Engine build: trtexec-style profiles, precision rules, the CLI without TensorRT,
and a real FP32/FP16 build where TensorRT and a GPU exist."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from trt_marks import HAS_TRT, needs_trt

from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.runtime.engine_build import OnnxSummary, _precision_mode, default_profile, inspect_onnx
from saphnet.runtime.profiles import parse_profile


def _identity_onnx(
    path: Path, elem: int = TensorProto.FLOAT, dims=("batch", 3, "height", "width")
) -> Path:
    inp = helper.make_tensor_value_info("input", elem, list(dims))
    out = helper.make_tensor_value_info("output", elem, list(dims))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "g", [inp], [out]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


def test_profile_parses_trtexec_style_shapes() -> None:
    p = parse_profile("input:1x3x64x64:1x3x720x1280:2x3x1088x1920")
    assert (p.name, p.min, p.opt, p.max) == (
        "input",
        (1, 3, 64, 64),
        (1, 3, 720, 1280),
        (2, 3, 1088, 1920),
    )
    assert p.trtexec() == {
        "min": "input:1x3x64x64",
        "opt": "input:1x3x720x1280",
        "max": "input:2x3x1088x1920",
    }
    assert parse_profile("64x64:256x256:512x512", "x").min == (1, 3, 64, 64)
    assert p.contains((1, 3, 720, 720)) and not p.contains((1, 3, 2000, 720))


@pytest.mark.parametrize(
    "text,problem",
    [
        ("1x3x64x64:1x3x720x1280", "MIN:OPT:MAX"),
        ("1x3x64:1x3x64x64:1x3x64x64", "NxCxHxW"),
        ("1x3x65x64:1x3x80x80:1x3x96x96", "multiples of 16"),
        ("1x1x64x64:1x1x64x64:1x1x64x64", "channels"),
        ("1x3x128x128:1x3x64x64:1x3x256x256", "min <= opt <= max"),
        ("1x3xAx64:1x3x64x64:1x3x64x64", "NxCxHxW"),
    ],
)
def test_bad_profiles_fail_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(SaphnetError, match=problem) as exc:
        parse_profile(text)
    assert "\n" not in str(exc.value)


def test_inspect_onnx_reads_name_dims_and_precision(tmp_path: Path) -> None:
    s = inspect_onnx(_identity_onnx(tmp_path / "m.onnx"))
    assert (s.input_name, s.input_dims, s.fp16, s.custom_op) == (
        "input",
        ("batch", 3, "height", "width"),
        False,
        False,
    )
    assert default_profile(s).max == (1, 3, 1088, 1920)
    static = inspect_onnx(_identity_onnx(tmp_path / "s.onnx", dims=(1, 3, 256, 256)))
    assert default_profile(static).min == default_profile(static).max == (1, 3, 256, 256)
    assert inspect_onnx(_identity_onnx(tmp_path / "h.onnx", TensorProto.FLOAT16)).fp16


def test_inspect_onnx_rejects_non_onnx_and_escaping_external_data(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00not a protobuf at all\xff" * 10)
    with pytest.raises(SaphnetError, match="not an ONNX model"):
        inspect_onnx(tmp_path / "bad.onnx")
    model = onnx.load(str(_identity_onnx(tmp_path / "m.onnx")))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    weight.external_data.add(key="location", value="../../etc/passwd")
    model.graph.initializer.append(weight)
    onnx.save(model, str(tmp_path / "ext.onnx"))
    with pytest.raises(SaphnetError, match="outside the model's folder"):
        inspect_onnx(tmp_path / "ext.onnx")


def _fake_trt(version: str, fp16_flag: bool) -> types.SimpleNamespace:
    flags = types.SimpleNamespace(**({"FP16": 1} if fp16_flag else {}))
    return types.SimpleNamespace(__version__=version, BuilderFlag=flags)


def test_precision_rules_for_tensorrt_10_and_11() -> None:
    fp32 = OnnxSummary("input", (), fp16=False, custom_op=True)
    fp16 = OnnxSummary("input", (), fp16=True, custom_op=True)
    trt10, trt11 = _fake_trt("10.3.0", True), _fake_trt("11.1.0", False)
    path = Path("m.onnx")
    assert _precision_mode(trt10, fp32, "fp16", path) == (False, True)  # builder flag
    assert _precision_mode(trt10, fp32, "fp32", path) == (False, False)
    assert _precision_mode(trt10, fp16, "fp16", path) == (True, False)  # strongly typed
    assert _precision_mode(trt11, fp16, "fp16", path) == (True, False)
    assert _precision_mode(trt11, fp32, "fp32", path) == (True, False)
    with pytest.raises(SaphnetError, match="export --precision fp16"):
        _precision_mode(trt11, fp32, "fp16", path)
    with pytest.raises(SaphnetError, match="FP16 model"):
        _precision_mode(trt10, fp16, "fp32", path)


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_build_without_tensorrt_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["build", str(_identity_onnx(tmp_path / "m.onnx")), "-o", str(tmp_path / "m.engine")]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert (
        err.count("\n") == 1 and "pip install 'saphnet[tensorrt]'" in err and "Traceback" not in err
    )
    assert not (tmp_path / "m.engine").exists()


def test_build_checks_the_inputs_before_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing ONNX file or an engine that exists are named as such, not hidden behind
    "TensorRT is missing" (issue 15, item 5); runs with or without TensorRT."""
    missing = tmp_path / "missing.onnx"
    assert main(["build", str(missing), "-o", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "does not exist" in err
    assert "tensorrt" not in err.lower()
    model = _identity_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.engine").write_bytes(b"earlier engine")
    assert main(["build", str(model), "-o", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "tensorrt" not in err.lower()


def test_build_cli_rejects_bad_shapes_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "build",
            str(tmp_path / "m.onnx"),
            "-o",
            str(tmp_path / "m.engine"),
            "--shapes",
            "nonsense",
        ]
    )
    assert code == 2 and "error:" in capsys.readouterr().err


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_run_engine(tmp_path: Path, tiny_config, precision: str) -> None:
    """Export a tiny network, build an engine, load it, compare with PyTorch."""
    import torch

    from saphnet.export import export_onnx
    from saphnet.model import SAPHNet
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.sidecar import read_sidecar
    from saphnet.runtime.tensorrt_backend import TensorRTBackend
    from saphnet.runtime.trt_env import has_fp16_flag, import_tensorrt

    model = SAPHNet(tiny_config).eval()
    onnx_precision = (
        "fp16" if precision == "fp16" and not has_fp16_flag(import_tensorrt()) else "fp32"
    )
    onnx_path = export_onnx(model, tmp_path / "m.onnx", precision=onnx_precision)
    engine = build_engine(
        onnx_path,
        tmp_path / "m.engine",
        BuildOptions(precision, "1x3x32x32:1x3x64x64:1x3x128x128", tmp_path / "cache"),
    )
    sidecar = read_sidecar(engine)
    assert (
        sidecar is not None
        and sidecar.precision == precision
        and sidecar.profile["max"] == [1, 3, 128, 128]
    )
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    backend = TensorRTBackend(engine)
    try:
        for _ in range(3):  # plain, capture, replay
            out = backend.infer(x)
        assert backend.uses_cuda_graph
        tol = 1e-3 if precision == "fp32" else 5e-2
        np.testing.assert_allclose(out, ref, atol=tol)
        small = backend.infer(x[:, :, :32, :32])  # another shape inside the profile: graph rebuilt
        assert small.shape == (1, 3, 32, 32)
        with pytest.raises(SaphnetError, match="outside the engine's profile"):
            backend.infer(np.zeros((1, 3, 256, 256), np.float32))
    finally:
        backend.close()
    with pytest.raises(SaphnetError, match="exists"):
        build_engine(onnx_path, engine, BuildOptions(precision))
