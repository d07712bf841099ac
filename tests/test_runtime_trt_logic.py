"""The TensorRT backend's bookkeeping, run against fakes of TensorRT and pycuda so it
is checked on every machine: sidecar check before loading, profile limits, buffers
that grow only, one plain enqueue per new shape, then a CUDA graph captured and
replayed, and dropped when the shape changes. (Real TensorRT: test_build, test_runtime.)"""

from __future__ import annotations

import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from saphnet.errors import SaphnetError
from saphnet.runtime import tensorrt_backend
from saphnet.runtime.profiles import Profile
from saphnet.runtime.sidecar import EngineMismatchError, Sidecar, write_sidecar

PROFILE = [(1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 128)]


class FakeDevice:
    """Device memory and a log of what ran on the stream."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next = 1
        self.capturing: list | None = None
        self.log: list[str] = []


DEV = FakeDevice()


class FakeBuffer:
    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self.capacity, self.nbytes, self._host, self.ptr = (
            np.dtype(dtype),
            0,
            0,
            None,
            0,
        )

    def reserve(self, count: int) -> bool:
        if count <= self.capacity:
            return False
        self.ptr, DEV.next = DEV.next, DEV.next + 1
        DEV.memory[self.ptr] = np.zeros(count, self.dtype)
        self._host, self.capacity, self.nbytes = (
            np.zeros(count, self.dtype),
            count,
            count * self.dtype.itemsize,
        )
        return True

    @property
    def device_ptr(self) -> int:
        return self.ptr

    def host_view(self, shape):
        return self._host[: int(np.prod(shape))].reshape(shape)

    def upload(self, shape, stream) -> None:
        n = int(np.prod(shape))
        DEV.memory[self.ptr][:n] = self._host[:n]

    def download(self, shape, stream) -> None:
        n = int(np.prod(shape))
        self._host[:n] = DEV.memory[self.ptr][:n]

    def free(self) -> None:
        self.capacity = 0


class FakeGraph:
    def begin(self, stream) -> None:
        DEV.capturing = []

    def end(self) -> None:
        self.ops, DEV.capturing = DEV.capturing, None
        DEV.log.append("capture")

    def launch(self) -> None:
        DEV.log.append("graph")
        for op in self.ops:
            op()

    def close(self) -> None:
        DEV.log.append("drop graph")


class FakeContext:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["input"]

    def set_tensor_address(self, name, ptr) -> None:
        self.addresses[name] = ptr

    def execute_async_v3(self, stream) -> bool:
        n = int(np.prod(self.shapes["input"]))
        src, dst = self.addresses["input"], self.addresses["output"]

        def run() -> None:
            DEV.memory[dst][:n] = DEV.memory[src][:n] * 0.5

        if DEV.capturing is not None:
            DEV.capturing.append(run)
        else:
            DEV.log.append("enqueue")
            run()
        return True


class FakeEngine:
    num_io_tensors = 2
    device_memory_size_v2 = 1 << 20

    def get_tensor_name(self, i):
        return ["input", "output"][i]

    def get_tensor_mode(self, name):
        return name

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_profile_shape(self, name, index):
        return PROFILE

    def create_execution_context(self):
        return FakeContext()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch):
    DEV.__init__()
    trt = types.SimpleNamespace(
        __version__="10.3.0",
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Runtime=lambda logger: types.SimpleNamespace(
            deserialize_cuda_engine=lambda data: FakeEngine()
        ),
        TensorIOMode=types.SimpleNamespace(INPUT="input", OUTPUT="output"),
        nptype=lambda dt: dt,
    )
    cm = types.SimpleNamespace(
        GpuContext=lambda device: types.SimpleNamespace(close=lambda: None),
        Stream=lambda: types.SimpleNamespace(handle=7, synchronize=lambda: None),
        HostDeviceBuffer=FakeBuffer,
        CudaGraph=FakeGraph,
        gpu_info=lambda device=0: types.SimpleNamespace(name="Fake GPU", compute_capability="9.0"),
    )
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_backend, "import_cuda_memory", lambda: cm)
    monkeypatch.setattr("saphnet.runtime.trt_env.import_cuda_memory", lambda: cm)
    return trt


def _engine(tmp_path: Path) -> Path:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"fake engine")
    from saphnet.files import sha256_file

    profile = Profile("input", *PROFILE)
    write_sidecar(
        engine,
        Sidecar(
            "10.3.0",
            "Fake GPU",
            "9.0",
            "fp32",
            False,
            profile.as_dict(),
            "o" * 64,
            sha256_file(engine),
        ),
    )
    return engine


def test_graph_is_captured_on_the_second_call_and_replayed(fakes, tmp_path: Path) -> None:
    backend = tensorrt_backend.TensorRTBackend(_engine(tmp_path))
    assert (
        backend.max_hw == (128, 128) and backend.min_hw == (32, 32) and backend.precision == "fp32"
    )
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    outs = [backend.infer(x) for _ in range(3)]
    assert DEV.log == ["enqueue", "capture", "graph", "graph"]
    for out in outs:
        np.testing.assert_allclose(out, x * 0.5)
    assert backend.uses_cuda_graph
    y = np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32)
    np.testing.assert_allclose(
        backend.infer(y), y * 0.5
    )  # smaller shape: same buffers, no graph yet
    assert DEV.log[-2:] == ["drop graph", "enqueue"] and not backend.uses_cuda_graph
    np.testing.assert_allclose(backend.infer(y), y * 0.5)
    assert DEV.log[-2:] == ["capture", "graph"]
    with pytest.raises(SaphnetError, match="outside the engine's profile"):
        backend.infer(np.zeros((1, 3, 256, 64), np.float32))
    assert backend.device_memory_bytes() == (1 << 20) + 2 * 3 * 64 * 64 * 4
    backend.close()


def test_without_graphs_every_call_enqueues(fakes, tmp_path: Path) -> None:
    backend = tensorrt_backend.TensorRTBackend(_engine(tmp_path), cuda_graphs=False)
    x = np.ones((1, 3, 64, 64), np.float32)
    for _ in range(3):
        backend.infer(x)
    assert DEV.log == ["enqueue"] * 3


def test_sidecar_is_checked_before_the_engine_loads(fakes, tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    from saphnet.runtime.sidecar import read_sidecar

    write_sidecar(
        engine, replace(read_sidecar(engine), compute_capability="8.7", gpu_name="Orin"), force=True
    )
    with pytest.raises(EngineMismatchError, match="built for Orin"):
        tensorrt_backend.TensorRTBackend(engine)
    assert DEV.log == []


def test_missing_engine_says_how_to_build_it(fakes, tmp_path: Path) -> None:
    with pytest.raises(SaphnetError, match="saphnet build"):
        tensorrt_backend.TensorRTBackend(tmp_path / "none.engine")


class _FakeRegistry:
    """TensorRT's plugin registry as far as registration uses it."""

    def __init__(self, loads: bool, has_creator: bool) -> None:
        self.loads, self.has_creator, self.loaded = loads, has_creator, []

    def get_creator(self, name: str, version: str, namespace: str) -> object | None:
        found = self.has_creator and bool(self.loaded)
        return object() if found and (name, namespace) == ("PDFConv", "saphnet") else None

    def load_library(self, path: str) -> object | None:
        self.loaded.append(path)
        return object() if self.loads else None


@pytest.mark.parametrize(
    ("loads", "has_creator", "message"),
    [(True, True, None), (False, False, "could not load"), (True, False, "holds no TensorRT")],
)
def test_plugin_registration_loads_once_or_says_why(tmp_path, loads, has_creator, message) -> None:
    from saphnet.plugins import register_tensorrt_plugin

    registry = _FakeRegistry(loads, has_creator)
    trt = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    library = tmp_path / "libsaphnet_plugins.so"
    if message is None:
        assert register_tensorrt_plugin(library, trt) == library
        assert register_tensorrt_plugin(library, trt) == library
        assert registry.loaded == [str(library)]  # idempotent: loaded once
    else:
        with pytest.raises(SaphnetError, match=message):
            register_tensorrt_plugin(library, trt)
