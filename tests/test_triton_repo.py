"""``saphnet triton-repo``: every kind's config.pbtxt parses into Triton's ModelConfig
protobuf, the ONNX wrapper gives saphnet deblur's bytes, and the Python-backend
repository loads and answers in PyTriton's tritonserver."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="needs pip install 'saphnet[serve]'")
from PIL import Image

from saphnet.cli import main
from saphnet.runtime.profiles import Profile
from saphnet.runtime.sidecar import Sidecar, write_sidecar
from saphnet.serve.loadtest import load_images
from saphnet.serve.triton_repo import parse_config


def _repo(model: Path, out: Path, kind: str, *extra: str) -> Path:
    args = ["triton-repo", "--model", str(model), "-o", str(out), "--kind", kind, *extra]
    assert main(args) == 0
    return out


def _config(repo: Path):
    return parse_config((repo / "saphnet" / "config.pbtxt").read_text())


def _deblur(model: Path, images: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    assert main(["deblur", str(folder), "-o", str(folder / "out"), "--model", str(model)]) == 0
    return [np.asarray(Image.open(folder / "out" / f"{i}.png")) for i in range(len(images))]


def test_python_kind_config(tiny_onnx: Path, tmp_path: Path) -> None:
    repo = _repo(tiny_onnx, tmp_path / "repo", "python", "--max-batch", "8", "--instances", "2")
    config = _config(repo)
    assert (config.name, config.backend, config.max_batch_size) == ("saphnet", "python", 8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("image", [-1, -1, 3])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("deblurred", [-1, -1, 3])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.instance_group[0].count == 2
    assert config.parameters["model_file"].string_value == "model.onnx"
    assert (repo / "saphnet" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert "class TritonPythonModel" in (repo / "saphnet" / "1" / "model.py").read_text()
    assert "tritonserver --model-repository" in (repo / "README.md").read_text()


def test_onnx_kind_wraps_the_uint8_contract(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    repo = _repo(tiny_onnx, tmp_path / "repo", "onnx", "--max-batch", "1")
    config = _config(repo)
    assert (config.backend, config.max_batch_size) == ("onnxruntime", 1)
    assert not config.HasField("dynamic_batching")  # a batch of one: nothing to batch
    assert config.input[0].data_type == config.output[0].data_type == 2  # TYPE_UINT8
    session = ort.InferenceSession(str(repo / "saphnet" / "1" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["image"]
    images = load_images((48, 64), 2)
    expected = _deblur(tiny_onnx, images, tmp_path / "in")
    (served,) = session.run(["deblurred"], {"image": np.stack(images)})
    assert served.dtype == np.uint8
    assert np.array_equal(served, np.stack(expected))


def test_tensorrt_kind_takes_batch_and_dims_from_the_profile(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    profile = Profile("input", (1, 3, 64, 64), (2, 3, 720, 1280), (6, 3, 1088, 1920))
    fields = dict(tensorrt="10.3.0", gpu_name="Orin", compute_capability="8.7")
    sidecar = Sidecar(
        **fields, precision="fp16", strongly_typed=False, profile=profile.as_dict(),
        onnx_sha256="0", engine_sha256="0",
    )  # fmt: skip
    write_sidecar(engine, sidecar)
    repo = _repo(
        engine,
        tmp_path / "repo",
        "tensorrt",
        "--max-batch",
        "16",
        "--plugin-path",
        "/srv/lib/libsaphnet_plugins.so",
    )
    config = _config(repo)
    assert (config.backend, config.max_batch_size) == ("tensorrt", 6)  # the profile's N
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [3, -1, -1])]
    assert config.input[0].data_type == 11  # TYPE_FP32
    assert config.instance_group[0].kind == 1  # KIND_GPU
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert (repo / "saphnet" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    readme = (repo / "README.md").read_text()
    # Triton, LD_PRELOAD and --staticPlugins only dlopen: the self-registering library.
    auto, main_lib = "/srv/lib/libsaphnet_plugins_autoregister.so", "/srv/lib/libsaphnet_plugins.so"
    assert f'    --backend-config=tensorrt,plugins="{auto}" \\\n' in readme
    assert f"# or: LD_PRELOAD={auto} tritonserver --model-repository=$PWD\n" in readme
    check = "trtexec --loadEngine=saphnet/1/model.plan --shapes=input:2x3x720x1280 "
    assert f"{check}--staticPlugins={auto}\n" in readme
    assert f"{check}--dynamicPlugins={main_lib}\n" in readme
    assert f"plugins={main_lib}" not in readme and f"LD_PRELOAD={main_lib}" not in readme
    assert "must be built for the TensorRT inside that Triton release" in readme


def _engine_with_profile(tmp_path: Path, profile: Profile) -> Path:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    fields = dict(tensorrt="10.3.0", gpu_name="Orin", compute_capability="8.7")
    sidecar = Sidecar(
        **fields, precision="fp32", strongly_typed=False, profile=profile.as_dict(),
        onnx_sha256="0", engine_sha256="0",
    )  # fmt: skip
    write_sidecar(engine, sidecar)
    return engine


def test_tensorrt_kind_refuses_a_profile_without_batch_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Triton runs a lone request as a batch of 1: an engine whose profile starts at 2
    would fail every such request at run time, so the repository is refused."""
    profile = Profile("input", (2, 3, 64, 64), (4, 3, 256, 256), (8, 3, 512, 512))
    engine = _engine_with_profile(tmp_path, profile)
    args = ["triton-repo", "--model", str(engine), "-o", str(tmp_path / "r"), "--kind", "tensorrt"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batches of 2 to 8" in err
    assert "--shapes input:1x3x64x64:4x3x256x256:8x3x512x512" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["python", "onnx", "tensorrt"])
def test_every_kind_writes_a_config_that_parses_as_tritons_model_config(
    kind: str, tiny_onnx: Path, tmp_path: Path
) -> None:
    """Parsed here with tritonclient's ModelConfig and protobuf's text_format directly, not
    through the writer's own helper, and printed back to the same text."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    model = tiny_onnx
    if kind == "tensorrt":
        model = _engine_with_profile(
            tmp_path, Profile("input", (1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 64, 64))
        )
    repo = _repo(model, tmp_path / "repo", kind)
    text = (repo / "saphnet" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert text_format.MessageToString(config) == text
    assert config.name == "saphnet" and config.backend == {
        "python": "python", "onnx": "onnxruntime", "tensorrt": "tensorrt"
    }[kind]  # fmt: skip
    assert len(config.input) == len(config.output) == 1 and config.max_batch_size >= 1
    if kind == "tensorrt":
        assert list(config.input[0].dims) == [3, 64, 64] and config.max_batch_size == 4


def test_refusals(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _repo(tiny_onnx, tmp_path / "repo", "onnx")
    assert main(["triton-repo", "--model", str(tiny_onnx), "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    args = ["triton-repo", "--model", str(tiny_onnx), "-o", str(tmp_path / "t"), "--kind"]
    assert main([*args, "tensorrt"]) == 2
    assert "is an ONNX file, this takes a TensorRT engine; build" in capsys.readouterr().err
    engine = tmp_path / "bare.engine"
    engine.write_bytes(b"x")
    assert (
        main(
            ["triton-repo", "--model", str(engine), "-o", str(tmp_path / "u"), "--kind", "tensorrt"]
        )
        == 2
    )
    assert "has no sidecar" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() and not (tmp_path / "u").exists()
    assert _repo(tiny_onnx, out, "python", "--force") == out  # replaced whole
    assert _config(out).backend == "python"


@pytest.mark.slow
def test_python_repo_loads_in_pytritons_tritonserver(tiny_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("pytriton", reason="needs pip install 'saphnet[serve]'")
    import tritonclient.http as http
    from serve_helpers import start_tritonserver

    repo = _repo(tiny_onnx, tmp_path / "repo", "python", "--max-size", "256")
    images = load_images((64, 80), 2)
    expected = _deblur(tiny_onnx, images, tmp_path / "in")
    server = start_tritonserver(repo, tmp_path)
    try:
        client = http.InferenceServerClient(server.http_url)
        try:

            def send(array: np.ndarray) -> np.ndarray:
                tensor = http.InferInput("image", list(array.shape), "UINT8")
                tensor.set_data_from_numpy(array)
                return client.infer("saphnet", [tensor]).as_numpy("deblurred")

            assert client.get_model_metadata("saphnet")["platform"] == "python"
            assert np.array_equal(send(np.stack(images)), np.stack(expected))
            with pytest.raises(Exception, match="side under 16 px"):
                send(np.zeros((1, 8, 64, 3), np.uint8))
            with pytest.raises(Exception, match="server's limit of 256 px"):
                send(np.zeros((1, 16, 300, 3), np.uint8))
            assert np.array_equal(send(images[1][None])[0], expected[1])
        finally:
            client.close()
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log_tail()
