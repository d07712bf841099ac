"""Engine build: trtexec-style profiles, precision rules, the CLI without TensorRT,
and a real FP32/FP16 build where TensorRT and a GPU exist."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_trt import fake_tensorrt, version_tuple
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
    fp32 = OnnxSummary("input", (), fp16=False)
    fp16 = OnnxSummary("input", (), fp16=True)
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
    # the plugin library is named exactly when the engine's PDF layers are our plugin
    assert (sidecar.pdf_implementation == "plugin") == (sidecar.plugin_sha256 is not None)
    _check_failed_capture_falls_back(TensorRTBackend(engine), x, out, tol)
    with pytest.raises(SaphnetError, match="exists"):
        build_engine(onnx_path, engine, BuildOptions(precision))


def _check_failed_capture_falls_back(backend, x: np.ndarray, expected: np.ndarray, tol: float):
    """Make the enqueue that is being captured fail (the first plain one runs): the
    capture must end, and this and later calls run plain on the same stream."""
    calls = []
    enqueue = backend._enqueue

    def enqueue_failing_in_capture() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("TensorRT execute_async_v3 failed (test)")
        enqueue()

    backend._enqueue = enqueue_failing_in_capture
    try:
        for _ in range(3):  # plain, failed capture then plain, plain
            np.testing.assert_allclose(backend.infer(x), expected, atol=tol)
        assert not backend.uses_cuda_graph and len(calls) == 4
    finally:
        backend.close()


class _RecordingParser:
    """A real ONNX parser that keeps the model it was handed (``.received``)."""

    def __init__(self, parser: object) -> None:
        self.parser, self.received, self.path = parser, None, None

    def parse(self, model: bytes, path: str | None = None) -> bool:
        self.received, self.path = onnx.load_from_string(bytes(model)), path
        return self.parser.parse(model, path)

    def parse_from_file(self, path: str) -> bool:
        self.received, self.path = onnx.load(path, load_external_data=False), path
        return self.parser.parse_from_file(path)

    def __getattr__(self, name: str) -> object:
        return getattr(self.parser, name)


class _ParserSpy:
    """Real TensorRT with its ONNX parsers recorded (``.parsers``), so one test body
    checks what the parser was handed against the fake and the real one."""

    def __init__(self, trt: types.ModuleType) -> None:
        self._trt, self.parsers = trt, []

    def __getattr__(self, name: str) -> object:
        return getattr(self._trt, name)

    def OnnxParser(self, network: object, logger: object) -> _RecordingParser:
        self.parsers.append(_RecordingParser(self._trt.OnnxParser(network, logger)))
        return self.parsers[-1]


@pytest.fixture(params=["10.3.0", "10.7.0", "11.1.0", "real"])
def trt_build(request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """(tensorrt, plugin library) for build_engine: a fake TensorRT of the given version,
    Polygraphy's build step replaced (see fake_trt), or the real one with our plugin."""
    from saphnet.runtime import engine_build

    if request.param == "real":
        if not HAS_TRT:
            pytest.skip("needs tensorrt and pycuda with an NVIDIA GPU")
        from saphnet import plugins
        from saphnet.runtime.trt_env import import_tensorrt

        try:
            if not plugins.has_tensorrt():
                pytest.skip("libsaphnet_plugins.so was built without TensorRT")
        except SaphnetError as exc:
            pytest.skip(f"plugin library not built: {exc}")
        trt = _ParserSpy(import_tensorrt())
        library = plugins.library_path()
    else:
        trt = fake_tensorrt(request.param)
        library = tmp_path / "libsaphnet_plugins.so"
        library.write_bytes(b"our plugin library")
        gpu = types.SimpleNamespace(name="Fake GPU", compute_capability="8.7")
        cm = types.SimpleNamespace(gpu_info=lambda device=0: gpu)
        monkeypatch.setattr("saphnet.runtime.trt_env.import_cuda_memory", lambda: cm)
        monkeypatch.setattr(engine_build, "serialize_network", lambda *a: memoryview(b"engine"))
    monkeypatch.setattr(engine_build, "import_tensorrt", lambda: trt)
    return trt, library


SMALL = "1x3x32x32:1x3x64x64:1x3x64x64"


def test_with_the_plugin_the_parser_gets_the_model_without_the_function(
    trt_build, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from saphnet.export.op_forms import count_pdf_nodes, pdf_function_body
    from saphnet.files import sha256_file
    from saphnet.runtime.sidecar import read_sidecar

    trt, library = trt_build
    on_disk = sha256_file(tiny_onnx)
    engine = tmp_path / "m.engine"
    args = [
        "build",
        str(tiny_onnx),
        "-o",
        str(engine),
        "--shapes",
        SMALL,
        "--plugins",
        str(library),
    ]
    assert main(args) == 0
    assert "(PDF layers: our saphnet PDFConv plugin)" in capsys.readouterr().out
    received = trt.parsers[-1].received
    nodes = count_pdf_nodes(onnx.load(str(tiny_onnx), load_external_data=False))
    assert nodes > 0 and count_pdf_nodes(received) == nodes
    assert pdf_function_body(received) is None  # the parser never saw the function
    assert trt.parsers[-1].path == str(tiny_onnx.resolve())  # external data resolves beside it
    assert sha256_file(tiny_onnx) == on_disk  # the file stays as exported
    sidecar = read_sidecar(engine)
    assert (sidecar.pdf_implementation, sidecar.pdf_ops, sidecar.pdf_plugin_layers) == (
        "plugin",
        nodes,
        nodes,
    )
    assert sidecar.plugin_sha256 == sha256_file(library)


def test_a_build_whose_pdf_layers_are_not_our_plugin_is_refused(
    trt_build, tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hand the parser the function as the build did before: TensorRT <= 10.6 imports it
    ahead of our registered plugin, and the build must say so instead of writing an
    engine whose sidecar claims our kernels; >= 10.7 prefers the plugin."""
    from saphnet.runtime import engine_build
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.sidecar import read_sidecar

    trt, library = trt_build
    monkeypatch.setattr(engine_build, "strip_pdf_function", lambda model: model)
    engine = tmp_path / "m.engine"
    options = BuildOptions(shapes=SMALL, plugins=library)
    if version_tuple(trt.__version__) >= (10, 7):
        assert read_sidecar(build_engine(tiny_onnx, engine, options)).pdf_implementation == "plugin"
        return
    with pytest.raises(SaphnetError) as exc:
        build_engine(tiny_onnx, engine, options)
    message = str(exc.value)
    assert "\n" not in message
    assert f"TensorRT {trt.__version__} made 0 of the" in message
    assert "ModulatedDeformConv2d plugin layers" in message
    assert not engine.exists() and not (tmp_path / "m.engine.json").exists()


def test_without_the_plugin_the_function_builds_and_says_so_once(
    trt_build, tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from saphnet import plugins
    from saphnet.export.op_forms import pdf_function_body
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.pdf_layers import OUR_PLUGIN
    from saphnet.runtime.sidecar import read_sidecar

    trt, _ = trt_build
    if trt.get_plugin_registry().get_creator(*OUR_PLUGIN) is not None:
        pytest.skip("our plugin is registered in this process already; needs a fresh one")

    def no_library() -> Path:
        raise SaphnetError("libsaphnet_plugins.so not found")

    monkeypatch.setattr(plugins, "library_path", no_library)
    with caplog.at_level("WARNING"):
        engine = build_engine(tiny_onnx, tmp_path / "m.engine", BuildOptions(shapes=SMALL))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = [w for w in warnings if "no saphnet plugin library" in w]
    assert len(said) == 1 and "\n" not in said[0] and "DeformConv" in said[0]
    assert pdf_function_body(trt.parsers[-1].received) == "deformconv"
    sidecar = read_sidecar(engine)
    assert sidecar.pdf_implementation == "function-deformconv"
    assert sidecar.plugin_sha256 is None and sidecar.pdf_plugin_layers == 0


def _found_library_without_tensorrt(monkeypatch: pytest.MonkeyPatch, library: Path) -> None:
    """``library`` is the one the lookup finds, built without TensorRT (plain ``make
    plugins``): it answers ``pdfconv_has_tensorrt() == 0`` and exports no getCreators."""
    from saphnet import plugins

    monkeypatch.setattr(plugins, "library_path", lambda name=plugins.LIBRARY_NAME: library)
    monkeypatch.setattr(plugins, "built_with_tensorrt", lambda path: False)


def test_a_found_library_without_tensorrt_builds_the_function_with_one_warning(
    trt_build, tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.pdf_layers import OUR_PLUGIN
    from saphnet.runtime.sidecar import read_sidecar

    trt, library = trt_build
    if trt.get_plugin_registry().get_creator(*OUR_PLUGIN) is not None:
        pytest.skip("our plugin is registered in this process already; needs a fresh one")
    _found_library_without_tensorrt(monkeypatch, library)
    with caplog.at_level("WARNING"):
        engine = build_engine(tiny_onnx, tmp_path / "m.engine", BuildOptions(shapes=SMALL))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("no saphnet plugin library with TensorRT")
    assert f"{library} was built without it" in warnings[0]
    assert getattr(trt.get_plugin_registry(), "loaded", []) == []  # never handed to TensorRT
    sidecar = read_sidecar(engine)
    assert sidecar.pdf_implementation == "function-deformconv"
    assert sidecar.plugin_sha256 is None and sidecar.plugin_file is None


def test_a_given_library_without_tensorrt_is_refused_in_one_line(
    trt_build, tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _, library = trt_build
    _found_library_without_tensorrt(monkeypatch, library)
    engine = tmp_path / "m.engine"
    args = ["build", str(tiny_onnx), "-o", str(engine), "--shapes", SMALL]
    assert main([*args, "--plugins", str(library)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{library} holds no TensorRT plugin (built without TensorRT)" in err
    assert "-DTENSORRT_ROOT" in err
    assert not engine.exists()


def test_one_process_wide_logger_for_every_tensorrt_object(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init_libnvinfer_plugins`` keeps its logger's pointer inside TensorRT: the
    builder, the parser and it get one logger, which outlives ``build_engine``."""
    import gc

    from saphnet.runtime import engine_build
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.trt_env import tensorrt_logger

    trt = fake_tensorrt("10.3.0")
    gpu = types.SimpleNamespace(name="Fake GPU", compute_capability="8.7")
    cm = types.SimpleNamespace(gpu_info=lambda device=0: gpu)
    monkeypatch.setattr("saphnet.runtime.trt_env.import_cuda_memory", lambda: cm)
    monkeypatch.setattr(engine_build, "serialize_network", lambda *a: memoryview(b"engine"))
    monkeypatch.setattr(engine_build, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(engine_build, "resolve_plugin", lambda path, required: None)
    for name in ("a", "b"):
        build_engine(tiny_onnx, tmp_path / f"{name}.engine", BuildOptions(shapes=SMALL))
    gc.collect()
    who = [w for w, _ in trt.logger_uses]
    assert who.count("init_libnvinfer_plugins") == 2 and {"builder", "parser"} <= set(who)
    alive = [ref() for _, ref in trt.logger_uses]
    assert all(logger is tensorrt_logger(trt) for logger in alive)  # one, still alive


def test_pdfconv_nodes_without_unique_names_still_count_as_our_plugin(
    trt_build, tiny_onnx: Path, tmp_path: Path
) -> None:
    """A file whose PDFConv nodes are unnamed or share a name (not one of ours): TensorRT
    invents or suffixes the layer names, so on 10.0-10.3, where the layer name is all
    that identifies our plugin, the build names the nodes uniquely before parsing."""
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.sidecar import read_sidecar

    trt, library = trt_build
    model = onnx.load(str(tiny_onnx))
    pdf = [n for n in model.graph.node if n.op_type == "PDFConv"]
    pdf[0].name = pdf[1].name = ""
    pdf[2].name = pdf[3].name = "twice"
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    options = BuildOptions(shapes=SMALL, plugins=library)
    sidecar = read_sidecar(build_engine(path, tmp_path / "m.engine", options))
    assert (sidecar.pdf_implementation, sidecar.pdf_plugin_layers) == ("plugin", len(pdf))
    received = [n.name for n in trt.parsers[-1].received.graph.node if n.op_type == "PDFConv"]
    assert all(received) and len(set(received)) == len(pdf)
    assert [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "PDFConv"][:4] == [
        "", "", "twice", "twice"
    ]  # fmt: skip


def test_int8_precision_rules_for_tensorrt_10_and_11() -> None:
    int8 = OnnxSummary("input", (), fp16=False, qdq="int8")
    trt10, trt11 = _fake_trt("10.3.0", True), _fake_trt("11.1.0", False)
    path = Path("m.onnx")
    assert _precision_mode(trt10, int8, "int8", path) == (False, True)  # INT8 + FP16 flags
    assert _precision_mode(trt11, int8, "int8", path) == (True, False)  # from the Q/DQ types
    with pytest.raises(SaphnetError, match=r"saphnet quantize m\.onnx"):
        _precision_mode(trt10, OnnxSummary("input", (), fp16=False), "int8", path)
    with pytest.raises(SaphnetError, match="--target tensorrt"):
        _precision_mode(trt11, OnnxSummary("input", (), fp16=False, qdq="uint8"), "int8", path)
    with pytest.raises(SaphnetError, match="--precision int8"):
        _precision_mode(trt10, int8, "fp16", path)


@pytest.fixture(scope="module")
def tiny_int8(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny export quantized for each target (every layer INT8, one random tile)."""
    from saphnet.export.quantize import quantize_onnx

    tile = [np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)]
    folder = tmp_path_factory.mktemp("int8")
    for target in ("tensorrt", "cpu"):
        quantize_onnx(tiny_onnx, folder / f"{target}.onnx", tile, target, min_psnr=None)
    return {target: folder / f"{target}.onnx" for target in ("tensorrt", "cpu")}


def test_int8_build_keeps_our_plugin_and_sets_the_precision(
    trt_build, tiny_int8: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saphnet.export.op_forms import count_pdf_nodes
    from saphnet.runtime import engine_build
    from saphnet.runtime.sidecar import read_sidecar

    trt, library = trt_build
    seen = {}
    if hasattr(trt, "events"):  # the fake: record what the build step would be given

        def serialize(trt_, parsed, profile, options, fp16_flag, name):
            seen.update(precision=options.precision, fp16_flag=fp16_flag, flags=parsed[1].flags)
            return memoryview(b"engine")

        monkeypatch.setattr(engine_build, "serialize_network", serialize)
    engine = tmp_path / "m.engine"
    args = ["build", str(tiny_int8["tensorrt"]), "-o", str(engine), "--shapes", SMALL]
    assert main([*args, "--plugins", str(library), "--precision", "int8"]) == 0
    nodes = count_pdf_nodes(onnx.load(str(tiny_int8["tensorrt"])))
    sidecar = read_sidecar(engine)
    assert sidecar.precision == "int8"
    assert (sidecar.pdf_implementation, sidecar.pdf_plugin_layers) == ("plugin", nodes)
    if seen:
        strongly_typed = version_tuple(trt.__version__) >= (11,)
        assert seen["fp16_flag"] is not strongly_typed and seen["precision"] == "int8"
        assert bool(seen["flags"]) is strongly_typed
        assert sidecar.strongly_typed is strongly_typed
    cpu = ["build", str(tiny_int8["cpu"]), "-o", str(tmp_path / "c.engine"), "--shapes", SMALL]
    assert main([*cpu, "--plugins", str(library), "--precision", "int8"]) == 2


def test_serialize_network_asks_polygraphy_for_int8_and_fp16(monkeypatch) -> None:
    """TensorRT 10: explicit Q/DQ with the INT8 and FP16 flags and no calibrator."""
    import polygraphy.backend.trt as poly

    from saphnet.runtime import engine_build
    from saphnet.runtime.engine_build import BuildOptions

    made = {}

    def create_config(**kwargs):
        made.update(kwargs)
        return kwargs

    monkeypatch.setattr(poly, "CreateConfig", create_config)
    monkeypatch.setattr(poly, "EngineBytesFromNetwork", lambda parsed, config, **k: lambda: b"e")
    profile = parse_profile(SMALL, "input")
    for precision, fp16_flag, int8 in (("int8", True, True), ("int8", False, False)):
        engine_build.serialize_network(
            types.SimpleNamespace(), (None,) * 3, profile, BuildOptions(precision), fp16_flag, "m"
        )
        assert (made["fp16"], made["int8"]) == (fp16_flag, int8)
        assert "calibrator" not in made


def test_fp16_cost_reads_the_narrowest_measured_width_at_least_the_profiles() -> None:
    from saphnet.runtime.fp16_cost import deformconv_cost, table_from_rows

    rows = [
        {"network": "paper", "size": s, "implementation": i, "psnr_db": p}
        for s, i, p in [
            ("720x1280", "saphnet-plugin", 76.0),
            ("720x1280", "tensorrt-deformconv", 52.5),
            ("2160x3840", "saphnet-plugin", 75.0),
            ("2160x3840", "tensorrt-deformconv", 41.25),
        ]
    ]
    table = table_from_rows(rows)
    assert [e["width"] for e in table] == [1280, 3840]
    assert "at 720x1280: 52.5 dB PSNR against FP32 (our plugin 76.0 dB)" in deformconv_cost(
        1280, table
    )
    assert "at 2160x3840: 41.2 dB" in deformconv_cost(1281, table)
    assert "at 2160x3840: 41.2 dB" in deformconv_cost(8192, table)  # widest measured
    assert deformconv_cost(1280, []) is None


@pytest.mark.parametrize("with_plugin", [False, True])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_fp16_build_on_tensorrt_deformconv_warns_with_the_measured_cost(
    tiny_onnx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog,
    precision: str,
    with_plugin: bool,
) -> None:
    """Without our plugin the PDFConv function body runs on TensorRT's DeformConv: an
    FP16 build says what that cost in the benchmark, at the profile's largest width."""
    from saphnet import plugins
    from saphnet.runtime import engine_build, fp16_cost
    from saphnet.runtime.engine_build import BuildOptions, build_engine

    table = fp16_cost.load_table()
    assert {e["network"] for e in table} >= {"shipped"}  # the committed benchmark results
    trt = fake_tensorrt("10.7.0")  # TensorRT 10: FP16 from the FP32 file's builder flag
    gpu = types.SimpleNamespace(name="Fake GPU", compute_capability="8.7")
    cm = types.SimpleNamespace(gpu_info=lambda device=0: gpu)
    monkeypatch.setattr("saphnet.runtime.trt_env.import_cuda_memory", lambda: cm)
    monkeypatch.setattr(engine_build, "serialize_network", lambda *a: memoryview(b"engine"))
    monkeypatch.setattr(engine_build, "import_tensorrt", lambda: trt)
    library = tmp_path / "libsaphnet_plugins.so"
    library.write_bytes(b"our plugin library")
    if not with_plugin:

        def no_library() -> Path:
            raise SaphnetError("libsaphnet_plugins.so not found")

        monkeypatch.setattr(plugins, "library_path", no_library)
    options = BuildOptions(
        precision=precision,
        shapes="1x3x64x64:1x3x720x1280:1x3x720x1280",
        plugins=library if with_plugin else None,
    )
    with caplog.at_level("WARNING"):
        build_engine(tiny_onnx, tmp_path / "m.engine", options)
    said = [r.getMessage() for r in caplog.records if "keep sample coordinates" in r.getMessage()]
    if precision == "fp32" or with_plugin:
        assert said == []
        return
    assert len(said) == 1 and "\n" not in said[0]
    assert "up to 1280 px wide" in said[0]
    assert fp16_cost.deformconv_cost(1280, table) in said[0]
    assert "--plugins" in said[0]


@pytest.mark.parametrize(
    ("implementation", "warns"),
    [("tensorrt-deformconv", True), ("function-deformconv", True), ("plugin", False)],
)
def test_fp16_warning_names_each_deformconv_path(implementation: str, warns: bool, caplog) -> None:
    """The deformconv export form builds on TensorRT's DeformConv with or without our
    plugin library: it warns too; our plugin never does."""
    from saphnet.runtime.fp16_cost import warn_deformconv_fp16

    for precision in ("fp16", "int8"):  # INT8 builds run their float layers in FP16
        caplog.clear()
        with caplog.at_level("WARNING"):
            warn_deformconv_fp16(precision, implementation, 1920)
        assert any("TensorRT's DeformConv" in r.getMessage() for r in caplog.records) == warns
