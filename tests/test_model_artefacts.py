"""Every command that takes a model x every artefact the toolkit writes and every bad
file (issue 20, "Design"): each cell ends in exit 0, or exit 2 with one line on stderr,
with no traceback and nothing half-written.

Commands run in-process (``saphnet.cli.main``) on the tiny network and 48x80 images;
the artefacts are exported once per session. ``serve`` is checked up to the start of
Triton (a stand-in Triton that is "interrupted" as it starts), ``build`` without
TensorRT must name the input's problem before the missing TensorRT.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from safetensors.torch import load_file, save_file

from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.export.reference_weights import weights_tag
from saphnet.model import SAPHNet
from saphnet.runtime.artefacts import open_artefact
from saphnet.runtime.trt_env import TensorRTMissingError, import_tensorrt

OP_FORMS = ("custom", "deformconv", "decomposed")
STATIC = (64, 64)
GOOD_ONNX = tuple(
    f"{variant}-{form}.onnx" for variant in ("dynamic", "static", "fp16") for form in OP_FORMS
)
GOOD = (*GOOD_ONNX, "weights.safetensors")
BAD = (
    "missing.onnx",
    "missing.safetensors",
    "empty.onnx",
    "empty.safetensors",
    "corrupt.onnx",
    "corrupt.safetensors",
    "foreign.onnx",
    "random.safetensors",
    "nan.safetensors",
    "wrong-shape.safetensors",
)
COMMANDS = ("deblur", "compare", "eval", "bench", "serve", "triton-repo", "build")
TRIPWIRE_SUFFIX = ".partial"


def _has_tensorrt() -> bool:
    try:
        import_tensorrt()
    except TensorRTMissingError:
        return False
    return True


@pytest.fixture(scope="session")
def trace_once() -> Callable[..., onnx.ModelProto]:
    """``trace_to_onnx`` that traces each (precision, opset, shape) once per session:
    the trace takes a minute on a busy 2-core machine, the rest of an export does not.
    Exports made with it are ``export_onnx``'s own files."""
    from saphnet.export import onnx_export

    trace, traced = onnx_export.trace_to_onnx, {}

    def trace_cached(net, precision, opset, static):
        key = (precision, opset, static)
        if key not in traced:
            traced[key] = trace(net, precision, opset, static)
        return copy.deepcopy(traced[key])  # the exporter edits its proto in place

    return trace_cached


@pytest.fixture(scope="session")
def artefacts(
    tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory, trace_once
) -> dict[str, Path]:
    """Every good and bad file of the table, by name, built once (the three op forms
    of one precision and shape share one trace, as the exporter derives them from it)."""
    from saphnet.export import export_onnx, onnx_export

    folder = tmp_path_factory.mktemp("artefacts")
    model = SAPHNet.load(tiny_weights)
    tag = weights_tag(tiny_weights)
    files: dict[str, Path] = {"weights.safetensors": tiny_weights}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "trace_to_onnx", trace_once)
        for variant, precision, static in (
            ("dynamic", "fp32", None),
            ("static", "fp32", STATIC),
            ("fp16", "fp16", None),
        ):
            for form in OP_FORMS:
                path = folder / f"{variant}-{form}.onnx"
                files[path.name] = export_onnx(
                    model, path, form, precision, static_shape=static, weights_sha256=tag
                )
    for name in ("empty.onnx", "empty.safetensors"):
        (folder / name).write_bytes(b"")
    for name in ("corrupt.onnx", "corrupt.safetensors"):
        (folder / name).write_bytes(np.random.default_rng(0).bytes(4096))
    files.update({name: folder / name for name in BAD if name.split(".")[0] != "foreign"})
    files["foreign.onnx"] = _foreign_onnx(folder / "foreign.onnx")
    save_file({"w": torch.rand(4, 4)}, str(folder / "random.safetensors"))
    meta = {"format": "saphnet", "config": model.config.to_json()}
    state = load_file(str(tiny_weights))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    nan = dict(state)
    nan[name] = state[name].clone()
    nan[name].view(-1)[0] = float("nan")
    save_file(nan, str(folder / "nan.safetensors"), metadata=meta)
    wrong = dict(state)
    wrong[name] = torch.zeros(state[name].shape[0] + 1, *state[name].shape[1:])
    save_file(wrong, str(folder / "wrong-shape.safetensors"), metadata=meta)
    return files


def _foreign_onnx(path: Path) -> Path:
    """One Identity node with SAPHNet's I/O and no saphnet metadata: the file only the
    metadata tells apart."""
    dims = ["batch", 3, "height", "width"]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "g", [inp], [out]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 48x80 blurred-looking image and a GoPro-layout pair folder of it."""
    folder = tmp_path_factory.mktemp("inputs")
    rgb = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "img.png")
    for kind in ("blur", "sharp"):
        (folder / "gopro" / "seq" / kind).mkdir(parents=True)
        Image.fromarray(rgb).save(folder / "gopro" / "seq" / kind / "0.png")
    return {"image": folder / "img.png", "gopro": folder / "gopro"}


def _interrupted(*_: object, **__: object) -> None:
    """A stand-in for starting tritonserver: Ctrl-C as it starts, so serve stops after
    its checks (and after writing its model repository) with the exit status of Ctrl-C."""
    raise KeyboardInterrupt


def _argv(
    command: str, file: Path, out: Path, files: dict[str, Path], inputs: dict[str, Path]
) -> list[str]:
    """The command line that gives ``file`` to ``command`` the way a user would: ONNX
    files as the model, weights as --weights."""
    is_weights = file.suffix == ".safetensors"
    model = ["--weights", str(file), "--backend", "torch"] if is_weights else ["--model", str(file)]
    if command == "deblur":
        return ["deblur", str(inputs["image"]), "-o", str(out / "x.png"), *model]
    if command == "compare":
        pair = [str(files["dynamic-custom.onnx"]), "--weights", str(file)]
        onnx_file = [str(file), "--weights", str(files["weights.safetensors"])]
        images = ["--images", str(inputs["image"]), "-o", str(out)]
        return ["compare", *(pair if is_weights else onnx_file), *images]
    if command == "eval":
        return ["eval", "--data", str(inputs["gopro"]), "--json", str(out / "e.json"), *model]
    if command == "bench":
        return [
            "bench",
            *("--weights", str(file), "--backends", "torch", "--pdf-ops", "custom"),
            *("--sizes", "32x32", "--warmup", "1", "--iters", "1", "-o", str(out)),
        ]
    if command == "serve":
        ports = ("--http-port", "18000", "--grpc-port", "18001", "--metrics-port", "18002")
        return ["serve", *model, *ports]
    if command == "triton-repo":
        return ["triton-repo", "--model", str(file), "-o", str(out / "repo"), "--kind", "python"]
    return ["build", str(file), "-o", str(out / "m.engine")]


def _leftovers(out: Path) -> list[Path]:
    """Temporary files or folders an atomic write leaves when it is interrupted."""
    return [p for p in out.rglob("*") if p.name.startswith(".")]


def _takes(command: str, name: str) -> bool:
    """Whether ``command`` runs with the file ``name`` (else it refuses it, exit 2)."""
    if command == "bench":  # bench takes weights only
        return name == "weights.safetensors"
    if command == "triton-repo":  # a repository holds an ONNX file or an engine
        return name in GOOD_ONNX
    if command == "build":  # any ONNX file with SAPHNet's I/O builds
        return name in (*GOOD_ONNX, "foreign.onnx")
    return name in GOOD


@pytest.mark.parametrize("name", [*GOOD, *BAD])
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_what_the_toolkit_writes_and_refuses_the_rest(
    command: str,
    name: str,
    artefacts: dict[str, Path],
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    file = artefacts[name]
    out = tmp_path / "out"
    if command == "serve":
        import saphnet.serve.server as server

        monkeypatch.setattr(server.subprocess, "Popen", _interrupted)
    code = main(["-q", *_argv(command, file, out, artefacts, inputs)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert code in (0, 2), captured.err
    assert not _leftovers(tmp_path), _leftovers(tmp_path)
    takes_it = _takes(command, name)
    if command == "build" and takes_it and not _has_tensorrt():
        # checked and found good: then the missing TensorRT is named
        assert code == 2 and "tensorrt" in captured.err.lower(), captured.err
        return
    if takes_it:
        assert code == 0, captured.err
        return
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"saphnet {command}: error: "), captured.err
    if name in BAD:
        assert file.name in lines[0]  # names the file, not a runtime's internals
    # nothing written: a refused command leaves no output behind
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("missing.onnx", "does not exist"),
        ("empty.onnx", "is empty"),
        ("corrupt.onnx", "not an ONNX model"),
        ("foreign.onnx", "no saphnet metadata"),
        ("corrupt.safetensors", "not a safetensors file"),
        ("random.safetensors", "not SAPHNet weights"),
    ],
)
def test_open_artefact_says_what_is_wrong_in_one_line(
    name: str, problem: str, artefacts: dict[str, Path]
) -> None:
    with pytest.raises(SaphnetError, match=problem) as exc:
        open_artefact(artefacts[name])
    assert "\n" not in str(exc.value) and artefacts[name].name in str(exc.value)


def test_open_artefact_reads_static_shape_and_metadata(artefacts: dict[str, Path]) -> None:
    static = open_artefact(artefacts["static-decomposed.onnx"])
    assert (static.kind, static.static_hw, static.input_name) == ("onnx", STATIC, "input")
    assert static.metadata is not None and static.metadata.pdf_op == "decomposed"
    fp16 = open_artefact(artefacts["fp16-deformconv.onnx"])
    assert fp16.static_hw is None and fp16.metadata.precision == "fp16"  # type: ignore[union-attr]
    weights = open_artefact(artefacts["weights.safetensors"], ("weights",))
    assert weights.kind == "weights" and weights.config is not None


@pytest.mark.parametrize(
    ("name", "accept", "problem"),
    [
        ("weights.safetensors", ("onnx", "engine"), "saphnet export --weights"),
        ("dynamic-custom.onnx", ("weights",), "give a .safetensors file"),
        ("dynamic-custom.onnx", ("engine",), "saphnet build"),
    ],
)
def test_a_file_of_another_kind_is_named_with_what_to_do(
    name: str, accept: tuple[str, ...], problem: str, artefacts: dict[str, Path]
) -> None:
    with pytest.raises(SaphnetError, match=problem):
        open_artefact(artefacts[name], accept)


def test_foreign_onnx_builds_only_where_allowed(artefacts: dict[str, Path], tmp_path: Path) -> None:
    """``build`` takes any ONNX file with SAPHNet's I/O; its I/O is still checked."""
    assert open_artefact(artefacts["foreign.onnx"], foreign_onnx=True).metadata is None
    dims = ["batch", 4]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [inp], [out])
    onnx.save(helper.make_model(graph), str(tmp_path / "vector.onnx"))
    with pytest.raises(SaphnetError, match=r"input 'x' is FLOAT batchx4.*Nx3xHxW"):
        open_artefact(tmp_path / "vector.onnx", foreign_onnx=True)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["-q", *argv])
    return code, capsys.readouterr().err


Runner = Callable[[list[str]], tuple[int, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return lambda argv: _run(argv, capsys)


def test_triton_repo_refuses_what_deblur_refuses(
    artefacts: dict[str, Path], tmp_path: Path, run: Runner
) -> None:
    """Issue 20 item 3: a corrupt or foreign file is no longer copied into a repository
    (python kind), and a corrupt one no longer crashes the onnx kind."""
    for kind in ("python", "onnx"):
        for name in ("corrupt.onnx", "foreign.onnx"):
            out = tmp_path / f"{kind}-{name}"
            code, err = run(
                ["triton-repo", "--model", str(artefacts[name]), "-o", str(out), "--kind", kind]
            )
            assert code == 2 and err.count("\n") == 1 and name in err
            assert not out.exists()
            deblur = run(
                ["deblur", "x.png", "-o", str(tmp_path / "d"), "--model", str(artefacts[name])]
            )
            assert deblur[1].split(": error: ")[1] == err.split(": error: ")[1]


def test_triton_repo_onnx_kind_declares_a_static_files_size(
    artefacts: dict[str, Path], tmp_path: Path, run: Runner
) -> None:
    from saphnet.serve.triton_repo import parse_config

    out = tmp_path / "repo"
    code, err = run(
        [
            "triton-repo",
            "--model",
            str(artefacts["static-custom.onnx"]),
            "-o",
            str(out),
            "--kind",
            "onnx",
        ]
    )
    assert code == 0, err
    config = parse_config((out / "saphnet" / "config.pbtxt").read_text())
    assert [list(t.dims) for t in config.input] == [[*STATIC, 3]]
    wrapped = onnx.load(str(out / "saphnet" / "1" / "model.onnx"))
    dims = [d.dim_value or d.dim_param for d in wrapped.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [*STATIC, 3]


def test_compare_report_of_a_static_file_is_at_its_size(
    artefacts: dict[str, Path], inputs: dict[str, Path], tmp_path: Path, run: Runner
) -> None:
    """Issue 20 item 1: compare runs a static file at its own size (the 48x80 image is
    padded to 64 rows and cropped to 64 columns), beside a dynamic file at the image's."""
    files = [str(artefacts["static-custom.onnx"]), str(artefacts["dynamic-custom.onnx"])]
    weights = str(artefacts["weights.safetensors"])
    code, err = run(
        [
            "compare",
            *files,
            "--weights",
            weights,
            "--images",
            str(inputs["image"]),
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    report = json.loads((tmp_path / "compare.json").read_text())
    sizes = [(m["images"][0]["height"], m["images"][0]["width"]) for m in report["models"]]
    assert sizes == [STATIC, (48, 80)]


def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_deblur_runs_a_static_file_in_tiles_of_its_size(
    artefacts: dict[str, Path], tmp_path: Path, run: Runner
) -> None:
    """Issue 20 item 1: a static file is a fixed profile. A batch of a larger and a
    smaller image both come out (no INVALID_ARGUMENT, no aborted batch), the larger in
    64x64 tiles: the bytes a dynamic file gives with --tile 64 and the overlap that
    fits such tiles (a quarter of them, as the 64 px default does not)."""
    from saphnet.runtime.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(artefacts["static-custom.onnx"])
    assert backend.min_hw == backend.max_hw == STATIC
    backend.close()
    images = tmp_path / "in"
    images.mkdir()
    _png(images / "big.png", 100, 150)
    _png(images / "small.png", 40, 24, seed=1)
    static, dynamic = tmp_path / "static", tmp_path / "dynamic"
    code, err = run(
        ["deblur", str(images), "-o", str(static), "--model", str(artefacts["static-custom.onnx"])]
    )
    assert code == 0, err
    assert sorted(p.name for p in static.iterdir()) == ["big.png", "small.png"]
    tiles = ["--tile", "64", "--tile-overlap", "16"]
    code, err = run(
        [
            "deblur",
            str(images / "big.png"),
            "-o",
            str(dynamic),
            "--model",
            str(artefacts["dynamic-custom.onnx"]),
            *tiles,
        ]
    )
    assert code == 0, err
    a = np.asarray(Image.open(static / "big.png"), np.int16)
    b = np.asarray(Image.open(dynamic / "big.png"), np.int16)
    assert a.shape == (100, 150, 3) and np.abs(a - b).max() <= 1


@pytest.mark.parametrize("shape", ["7x7", "16x16", "100x100", "64x72"])
def test_export_refuses_a_static_shape_the_toolkit_cannot_run(
    shape: str, artefacts: dict[str, Path], tmp_path: Path, run: Runner
) -> None:
    """Issue 20 item 1: --static takes multiples of 16 of at least 32 (what an engine
    profile and a tile need); anything else is refused before the weights load."""
    out = tmp_path / "s.onnx"
    code, err = run(
        [
            "export",
            "--weights",
            str(artefacts["weights.safetensors"]),
            "-o",
            str(out),
            "--static",
            shape,
        ]
    )
    assert code == 2 and err.count("\n") == 1 and f"static shape {shape}" in err
    assert "multiples of 16 of at least 32" in err and not out.exists()


def test_export_to_a_folder_writes_a_file_inside_it(
    artefacts: dict[str, Path],
    trace_once,
    tmp_path: Path,
    run: Runner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20 item 9: ``-o out_dir/`` means a folder; a name without .onnx (which no
    other command would take as a model) is refused."""
    from saphnet.export import onnx_export

    monkeypatch.setattr(onnx_export, "trace_to_onnx", trace_once)
    weights = ["--weights", str(artefacts["weights.safetensors"])]
    code, err = run(["export", *weights, "-o", f"{tmp_path / 'out_dir'}/", "--static", "64x64"])
    assert code == 0, err
    written = tmp_path / "out_dir" / "saphnet_custom_fp32_64x64.onnx"
    assert [p.name for p in (tmp_path / "out_dir").iterdir()] == [written.name]
    assert open_artefact(written).static_hw == STATIC
    code, err = run(["export", *weights, "-o", str(tmp_path / "out_dir"), "--pdf-op", "decomposed"])
    assert code == 0, err
    assert (tmp_path / "out_dir" / "saphnet_decomposed_fp32.onnx").is_file()
    code, err = run(["export", *weights, "-o", str(tmp_path / "model")])
    assert code == 2 and "ends in .onnx" in err and not (tmp_path / "model").exists()


def test_compare_exits_2_not_1_on_a_file_it_cannot_read(artefacts: dict[str, Path]) -> None:
    """Issue 20 item 2: exit 1 means "a threshold was broken"; an unreadable file is
    exit 2 and one line, from a real process (what a release script sees)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "saphnet", "compare", str(artefacts["corrupt.onnx"])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "not an ONNX model" in result.stderr


def test_one_minimum_image_size_for_every_command(
    artefacts: dict[str, Path], tmp_path: Path, run: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20 item 9: bench --sizes 8x8 and inspect on a 1x1 image are refused as
    deblur refuses a 15 px image, with the same words, and inspect leaves no folder."""
    from saphnet import sizes
    from saphnet.serve import server

    assert server.MIN_SIDE is sizes.MIN_SIDE == 16
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--sizes", "32x32,8x8"])
    assert exit_info.value.code == 2
    problem = "8x8 is too small; SAPHNet needs at least 16 pixels per side"
    assert problem in capsys.readouterr().err
    out = tmp_path / "maps"
    tiny = _png(tmp_path / "tiny.png", 1, 1)
    code, err = run(
        ["inspect", str(tiny), "-o", str(out), "--weights", str(artefacts["weights.safetensors"])]
    )
    assert code == 2 and "1x1 is too small; SAPHNet needs at least 16 pixels per side" in err
    assert not out.exists()
    thin = str(_png(tmp_path / "thin.png", 15, 40))
    model = ["--model", str(artefacts["dynamic-custom.onnx"])]
    code, err = run(["deblur", thin, "-o", str(tmp_path / "d"), *model])
    assert code == 1 and "40x15 is too small; SAPHNet needs at least 16 pixels per side" in err


def test_a_static_file_given_another_size_says_so(artefacts: dict[str, Path]) -> None:
    from saphnet.runtime.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(artefacts["static-custom.onnx"])
    with pytest.raises(SaphnetError, match="static 64x64 export, given 48x80"):
        backend.infer(np.zeros((1, 3, 48, 80), np.float32))
    assert backend.infer(np.zeros((2, 3, *STATIC), np.float32)).shape == (2, 3, *STATIC)
