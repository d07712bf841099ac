"""``saphnet serve`` on PyTriton's tritonserver, started once for the module on free
loopback ports: real images over HTTP and gRPC (same bytes as ``saphnet deblur``),
batched and tiled requests, bad requests followed by a good one, health, metadata,
metrics, a 20-request load test, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="needs pip install 'saphnet[serve]'")
http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")
from PIL import Image  # noqa: E402

from saphnet.cli import main  # noqa: E402
from saphnet.serve.loadtest import load_images  # noqa: E402
from saphnet.serve.process import (  # noqa: E402
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ServerProcess,
    free_ports,
    serve_command,
    start,
)

pytestmark = pytest.mark.slow

MAX_SIZE = 320
MEMORY_BUDGET_MB = "128"
"""The smallest budget: with the tiny model, images over 256x256 are tiled on the
server (cheap to test)."""


@pytest.fixture(scope="module")
def server(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = serve_command("--model", str(tiny_onnx), "--max-size", str(MAX_SIZE))
    srv = start([*command, "--memory-budget", MEMORY_BUDGET_MB], log)
    yield srv
    srv.stop()


def _send(client, image: np.ndarray, datatype: str = "UINT8", module=http) -> np.ndarray:
    tensor = module.InferInput("image", list(image.shape), datatype)
    tensor.set_data_from_numpy(image)
    return client.infer("saphnet", [tensor]).as_numpy("deblurred")


def _local(
    tiny_onnx: Path, images: list[np.ndarray], folder: Path, *extra: str
) -> list[np.ndarray]:
    """``saphnet deblur`` on the same ONNX file, through PNG files, as a user runs it."""
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    out = folder / "out"
    assert main(["deblur", str(folder), "-o", str(out), "--model", str(tiny_onnx), *extra]) == 0
    return [np.asarray(Image.open(out / f"{i}.png")) for i in range(len(images))]


def test_health_metadata_and_metrics(server: ServerProcess) -> None:
    client = http.InferenceServerClient(server.http_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        meta = client.get_model_metadata("saphnet")
        assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
        assert meta["outputs"][0]["name"] == "deblurred"
        config = client.get_model_config("saphnet")
        assert config["max_batch_size"] == 4 and "dynamic_batching" in config
    finally:
        client.close()
    url = f"http://{HOST}:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert "nv_inference_count" in response.read().decode()


def test_real_images_match_saphnet_deblur(
    server: ServerProcess, tiny_onnx: Path, tmp_path: Path
) -> None:
    images = load_images((64, 80), 2) + load_images((48, 112), 1)
    expected = _local(tiny_onnx, images, tmp_path / "in")
    client = http.InferenceServerClient(server.http_url)
    gclient = grpc.InferenceServerClient(server.grpc_url)
    try:
        for image, want in zip(images, expected, strict=True):
            served = _send(client, image[None])[0]
            assert served.dtype == np.uint8 and np.array_equal(served, want)
            assert np.array_equal(_send(gclient, image[None], module=grpc)[0], want)
    finally:
        client.close()
        gclient.close()


def test_concurrent_requests_batch_with_the_same_bytes(
    server: ServerProcess, tiny_onnx: Path, tmp_path: Path
) -> None:
    images = load_images((64, 80), 4)
    expected = _local(tiny_onnx, images, tmp_path / "in")

    def one(i: int) -> np.ndarray:
        client = http.InferenceServerClient(server.http_url, network_timeout=60)
        try:
            return _send(client, images[i % 4][None])[0]
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        served = list(pool.map(one, range(16)))
    assert all(np.array_equal(s, expected[i % 4]) for i, s in enumerate(served))
    # A two-image request is a batch of its own: both come back, in order.
    client = http.InferenceServerClient(server.http_url)
    try:
        pair = _send(client, np.stack(images[:2]))
    finally:
        client.close()
    assert np.array_equal(pair[0], expected[0]) and np.array_equal(pair[1], expected[1])


def test_large_images_are_tiled_on_the_server(
    server: ServerProcess, tiny_onnx: Path, tmp_path: Path
) -> None:
    (image,) = load_images((288, 320), 1)  # over 256x256: tiled within 128 MB
    (expected,) = _local(tiny_onnx, [image], tmp_path / "in", "--memory-budget", MEMORY_BUDGET_MB)
    (untiled,) = _local(tiny_onnx, [image], tmp_path / "whole")
    assert not np.array_equal(expected, untiled)  # the budget really tiles it
    client = http.InferenceServerClient(server.http_url)
    try:
        assert np.array_equal(_send(client, image[None])[0], expected)
    finally:
        client.close()


BAD = [
    ("float32", np.zeros((1, 32, 32, 3), np.float32), "FP32", "expects 'UINT8'"),
    ("2-D", np.zeros((1, 32, 32), np.uint8), "UINT8", "unexpected shape"),
    ("4 channels", np.zeros((1, 32, 32, 4), np.uint8), "UINT8", "unexpected shape"),
    ("under 16 px", np.zeros((1, 8, 64, 3), np.uint8), "UINT8", "side under 16 px"),
    ("over max size", np.zeros((1, 16, MAX_SIZE + 16, 3), np.uint8), "UINT8", "--max-size"),
]


def _post(server: ServerProcess, shape: tuple[int, ...]) -> tuple[int, str]:
    """A raw KServe v2 JSON request of zeros: the HTTP status and body a client gets."""
    request = {"name": "image", "shape": list(shape), "datatype": "UINT8"}
    request["data"] = [0] * int(np.prod(shape))
    req = urllib.request.Request(
        f"http://{server.http_url}/v2/models/saphnet/infer",
        json.dumps({"inputs": [request]}).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 8, 8, 3), "image 8x8 has a side under 16 px; send at least 16x16"),
        ((1, 16, 9000, 3), f"has a side over this server's limit of {MAX_SIZE} px"),
        ((1, 0, 0, 3), "image 0x0 has a side under 16 px"),
    ],
)
def test_requests_the_model_cannot_take_are_400s_without_traceback(
    server: ServerProcess, shape: tuple[int, ...], message: str
) -> None:
    """They were 500s carrying the server's Python traceback and paths (issue 20, item 4)."""
    status, body = _post(server, shape)
    error = json.loads(body)["error"]
    assert status == 400, body
    assert message in error
    assert "Traceback" not in error and "\n" not in error and ".py" not in error
    assert str(Path(__file__).resolve().parent.parent) not in error
    assert _post(server, (1, 16, 16, 3))[0] == 200  # and the server goes on serving


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # not listening yet


def test_health_is_ready_only_once_the_model_is(tiny_onnx: Path, tmp_path: Path) -> None:
    """Polling both endpoints through start-up: /v2/health/ready never answers 200 while
    the model is not ready (a readiness probe on it would send failing traffic)."""
    http_port, grpc_port, metrics_port = free_ports(3)
    command = serve_command("--model", str(tiny_onnx), "--host", HOST)
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    command += ["--metrics-port", str(metrics_port)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            command, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    srv = ServerProcess(process, http_port, grpc_port, metrics_port, log)
    base = f"http://{srv.http_url}/v2"
    seen = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            health = _status(f"{base}/health/ready")
            model = _status(f"{base}/models/saphnet/ready")
            seen.append((health, model))
            assert not (health == 200 and model != 200), seen
            if model == 200:
                break
            time.sleep(0.05)
    finally:
        assert srv.stop() == 0, srv.log_tail()
    assert seen[-1] == (200, 200), srv.log_tail()
    assert seen[0] != (200, 200)  # polled from before the server listened


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_errors_and_the_server_keeps_serving(
    server: ServerProcess, protocol: str
) -> None:
    module = http if protocol == "http" else grpc
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    try:
        for name, array, datatype, message in BAD:
            with pytest.raises(Exception, match=message) as info:
                _send(client, array, datatype, module)
            assert type(info.value).__name__ == "InferenceServerException", name
        (good,) = load_images((32, 48), 1)
        assert _send(client, good[None], module=module).shape == (1, 32, 48, 3)
    finally:
        client.close()


def test_loadtest_20_requests(server: ServerProcess, tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    url = f"http://{server.http_url}"
    args = ["loadtest", url, "--concurrency", "1,4", "--requests", "10", "--duration", "120"]
    args += ["--size", "48x64", "--model", str(tiny_onnx), "-o", str(out)]
    assert main(args) == 0
    report = json.loads((out / "loadtest.json").read_text())
    assert report["check"] == {
        "shape": [48, 64, 3],
        "dtype": "uint8",
        "compared": True,
        "max_abs_diff": 0,
        "identical": True,
    }
    levels = report["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    assert sum(lv["requests"] for lv in levels) == 20
    assert all(lv["errors"] == 0 and lv["throughput"] > 0 for lv in levels)
    assert all(lv["p50_ms"] <= lv["p95_ms"] <= lv["p99_ms"] for lv in levels)
    assert (out / "loadtest.md").read_text().count("\n| ") == 3
    assert (out / "loadtest.png").read_bytes()[:4] == b"\x89PNG"


def test_loadtest_checks_tiled_answers_under_the_servers_budget(
    server: ServerProcess, tiny_onnx: Path
) -> None:
    """Over 256x256 the server tiles within its 128 MB: the local result matches only
    when loadtest is told that budget (by default it assumes serve's default)."""
    args = ["loadtest", f"http://{server.http_url}", "--concurrency", "1", "--requests", "1"]
    args += ["--size", "288x320", "--model", str(tiny_onnx)]
    assert main([*args, "--memory-budget", MEMORY_BUDGET_MB]) == 0
    assert main(args) == 1  # untiled locally: differs from the server's tiled answer


def test_sigterm_stops_the_server_cleanly(server: ServerProcess) -> None:
    assert server.stop() == 0
    text = server.log.read_text()
    assert "server stopped" in text
    assert "NVML" not in text  # tritonserver's own log is for -v; nothing to act on on a CPU


def test_ctrl_c_stops_the_server_cleanly(tiny_onnx: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole process group."""
    srv = start(serve_command("--model", str(tiny_onnx)), tmp_path / "serve.log")
    os.killpg(srv.process.pid, signal.SIGINT)
    try:
        code = srv.process.wait(STOP_TIMEOUT_S)
    finally:
        srv.stop()  # kills the group if it hung
    assert code == 0, srv.log_tail()
    assert "server stopped" in srv.log.read_text()


def test_pytorch_backend_serves_the_weights(
    tiny_weights: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    (image,) = load_images((48, 64), 1)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image).save(folder / "0.png")
    args = ["deblur", str(folder), "-o", str(tmp_path / "out"), "--backend", "torch"]
    assert main([*args, "--weights", str(tiny_weights), "--device", "cpu"]) == 0
    expected = np.asarray(Image.open(tmp_path / "out" / "0.png"))
    command = serve_command("--backend", "torch", "--weights", str(tiny_weights))
    srv = start([*command, "--device", "cpu"], tmp_path / "serve.log")
    try:
        client = http.InferenceServerClient(srv.http_url)
        try:
            assert np.array_equal(_send(client, image[None])[0], expected)
        finally:
            client.close()
    finally:
        assert srv.stop() == 0, srv.log_tail()
    assert "serving model 'saphnet' (torch," in srv.log.read_text()
