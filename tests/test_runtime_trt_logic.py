"""The TensorRT backend's bookkeeping, run against fakes of TensorRT, pycuda and the CUDA
driver so it is checked on every machine: sidecar check before loading, TensorRT's own
plugins registered before deserializing, profile limits, buffers that grow only, one
plain enqueue per new shape, then a CUDA graph captured (by the real
:class:`~saphnet.runtime.cuda_memory.CudaGraph` on a fake driver) and replayed, dropped
when the shape changes, and a failed capture ended before plain execution takes over.
(Real TensorRT: test_build, test_runtime.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fake_trt import FakeRegistry, fake_tensorrt

from saphnet.errors import SaphnetError
from saphnet.runtime import tensorrt_backend
from saphnet.runtime.profiles import Profile
from saphnet.runtime.sidecar import EngineMismatchError, Sidecar, write_sidecar

PROFILE = [(1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 128)]


CUDA_ERROR_ILLEGAL_STATE = 401
CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901


class FakeDevice:
    """Device memory, a log of what ran on the stream, and the CUDA driver's graph calls
    as :class:`CudaGraph` makes them through ctypes: work enqueued while the stream
    captures is recorded, not run, as on a real GPU."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next = 1
        self.capturing: list | None = None
        self.log: list[str] = []
        self.graphs: dict[int, list] = {}
        self.live_graphs: set[int] = set()
        self.fail_capture = False
        """TensorRT fails the enqueue it is asked to capture."""

    def _handle(self) -> int:
        self.next += 1
        return self.next

    def cuStreamBeginCapture_v2(self, stream, mode) -> int:
        if self.capturing is not None:
            return CUDA_ERROR_ILLEGAL_STATE
        self.capturing = []
        return 0

    def cuStreamEndCapture(self, stream, graph_out) -> int:
        if self.capturing is None:
            return CUDA_ERROR_ILLEGAL_STATE
        handle = self._handle()
        self.graphs[handle], self.capturing = self.capturing, None
        self.live_graphs.add(handle)
        graph_out._obj.value = handle
        return 0

    def cuGraphInstantiateWithFlags(self, exec_out, graph, flags) -> int:
        handle = self._handle()
        self.graphs[handle] = self.graphs[graph.value]
        exec_out._obj.value = handle
        self.log.append("capture")
        return 0

    def cuGraphLaunch(self, graph_exec, stream) -> int:
        self.log.append("graph")
        for op in self.graphs[graph_exec.value]:
            op()
        return 0

    def cuGraphExecDestroy(self, graph_exec) -> int:
        self.log.append("drop graph")
        return 0

    def cuGraphDestroy(self, graph) -> int:
        self.live_graphs.discard(graph.value)
        return 0


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
            if DEV.fail_capture:
                return False
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
    trt = fake_tensorrt("10.3.0")

    def deserialize(data: bytes) -> FakeEngine | None:
        """An engine holding TensorRT's DeformConv plugin needs the built-in plugins."""
        trt.events.append("deserialize")
        if b"ModulatedDeformConv2d" in data and not trt.registry.builtin:
            return None
        return FakeEngine()

    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=deserialize)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dt: dt
    cm = types.SimpleNamespace(
        GpuContext=lambda device: types.SimpleNamespace(close=lambda: None),
        Stream=lambda: types.SimpleNamespace(handle=7, synchronize=lambda: None),
        HostDeviceBuffer=FakeBuffer,
        CudaGraph=_cuda_memory_on(DEV, monkeypatch).CudaGraph,
        gpu_info=lambda device=0: types.SimpleNamespace(name="Fake GPU", compute_capability="9.0"),
    )
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_backend, "import_cuda_memory", lambda: cm)
    monkeypatch.setattr("saphnet.runtime.trt_env.import_cuda_memory", lambda: cm)
    return trt


def _cuda_memory_on(driver: FakeDevice, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A private copy of :mod:`saphnet.runtime.cuda_memory` on a fake pycuda (the module
    imports it) whose CUDA driver calls go to ``driver``."""
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = types.ModuleType("pycuda.driver")
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.driver)
    path = Path(tensorrt_backend.__file__).with_name("cuda_memory.py")
    spec = importlib.util.spec_from_file_location("_cuda_memory_on_fake_driver", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "_driver", lambda: driver)
    return module


def _engine(tmp_path: Path, data: bytes = b"fake engine", **fields: object) -> Path:
    engine = tmp_path / "m.engine"
    engine.write_bytes(data)
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
            **fields,  # type: ignore[arg-type]
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


@pytest.mark.parametrize(
    ("loads", "has_creator", "message"),
    [(True, True, None), (False, False, "could not load"), (True, False, "holds no TensorRT")],
)
def test_plugin_registration_loads_once_or_says_why(tmp_path, loads, has_creator, message) -> None:
    from saphnet.plugins import register_tensorrt_plugin

    registry = FakeRegistry(loads, has_creator)
    trt = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    library = tmp_path / "libsaphnet_plugins.so"
    if message is None:
        assert register_tensorrt_plugin(library, trt) == library
        assert register_tensorrt_plugin(library, trt) == library
        assert registry.loaded == [str(library)]  # idempotent: loaded once
    else:
        with pytest.raises(SaphnetError, match=message):
            register_tensorrt_plugin(library, trt)


def test_a_failed_capture_is_ended_and_plain_execution_takes_over(fakes, tmp_path: Path) -> None:
    """TensorRT fails the enqueue being captured: the capture must be ended and its
    partial graph destroyed, or every later plain enqueue would only be recorded."""
    backend = tensorrt_backend.TensorRTBackend(_engine(tmp_path))
    DEV.fail_capture = True
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    for _ in range(3):  # plain, failed capture then plain, plain
        np.testing.assert_allclose(backend.infer(x), x * 0.5)
    assert DEV.capturing is None and not DEV.live_graphs
    assert DEV.log == ["enqueue"] * 3 and not backend.uses_cuda_graph
    backend.close()


def test_builtin_plugins_are_registered_before_deserializing(fakes, tmp_path: Path) -> None:
    """An engine holding TensorRT's own DeformConv plugin loads in a fresh process."""
    engine = _engine(
        tmp_path, b"engine with ModulatedDeformConv2d", pdf_implementation="tensorrt-deformconv"
    )
    tensorrt_backend.TensorRTBackend(engine).close()
    assert fakes.events.index("builtin plugins") < fakes.events.index("deserialize")


def _no_plugin_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Path:
        raise SaphnetError("libsaphnet_plugins.so not found; build it with `make plugins`")

    monkeypatch.setattr("saphnet.plugins.library_path", missing)


def test_the_plugin_library_is_demanded_only_by_engines_that_use_it(
    fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_plugin_library(monkeypatch)
    function = _engine(tmp_path, pdf_implementation="function-deformconv", pdf_ops=6)
    tensorrt_backend.TensorRTBackend(function).close()  # no library needed, none looked up
    assert fakes.registry.loaded == []
    (tmp_path / "plugin").mkdir()
    plugin = _engine(
        tmp_path / "plugin",
        pdf_implementation="plugin",
        plugin_sha256="p" * 64,
        plugin_file="lib.so",
    )
    with pytest.raises(SaphnetError, match=r"libsaphnet_plugins\.so not found"):
        tensorrt_backend.TensorRTBackend(plugin)


def test_a_sidecar_from_before_pdf_implementation_is_read_as_before(
    fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older sidecars lack the PDF fields: they load, and one naming a plugin library
    still demands it."""
    from saphnet.runtime.sidecar import read_sidecar, sidecar_path

    engine = _engine(tmp_path, plugin_sha256="p" * 64, plugin_file="lib.so")
    data = json.loads(sidecar_path(engine).read_text())
    for key in ("pdf_implementation", "pdf_ops", "pdf_plugin_layers"):
        del data[key]
    sidecar_path(engine).write_text(json.dumps(data))
    assert read_sidecar(engine).pdf_implementation is None
    _no_plugin_library(monkeypatch)
    with pytest.raises(SaphnetError, match=r"libsaphnet_plugins\.so not found"):
        tensorrt_backend.TensorRTBackend(engine)
    del data["plugin_sha256"], data["plugin_file"]
    sidecar_path(engine).write_text(json.dumps(data))
    tensorrt_backend.TensorRTBackend(engine).close()


def test_tensorrt_backend_and_engine_builder_import_no_torch() -> None:
    """Engines are built and run on hosts without PyTorch (Jetson, servers)."""
    code = (
        "import sys; import saphnet.runtime.tensorrt_backend, saphnet.runtime.engine_build; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_backend_runs_on_the_process_wide_logger(fakes, tmp_path: Path) -> None:
    """The runtime and ``init_libnvinfer_plugins`` (which keeps the pointer) get the one
    logger that the engine builder uses too."""
    from saphnet.runtime.trt_env import tensorrt_logger

    runtimes = []

    def runtime(logger: object) -> types.SimpleNamespace:
        fakes.used("runtime", logger)
        runtimes.append(logger)
        return types.SimpleNamespace(deserialize_cuda_engine=lambda data: FakeEngine())

    fakes.Runtime = runtime
    engine = _engine(tmp_path)
    for _ in range(2):
        tensorrt_backend.TensorRTBackend(engine).close()
    assert [who for who, _ in fakes.logger_uses].count("runtime") == 2
    assert all(ref() is tensorrt_logger(fakes) for _, ref in fakes.logger_uses)


def test_the_capture_stream_is_non_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a blocking stream captures, another thread's use of the legacy stream
    invalidates the capture; a CU_STREAM_NON_BLOCKING stream does not synchronize with it."""
    cm = _cuda_memory_on(FakeDevice(), monkeypatch)
    made = []

    class DriverStream:  # pycuda.driver.Stream(flags=0) calls cuStreamCreate(&s, flags)
        def __init__(self, flags: int = 0) -> None:
            made.append(flags)
            self.handle = 7

    monkeypatch.setattr(cm.cuda, "Stream", DriverStream, raising=False)
    assert cm.Stream().handle == 7
    assert made == [1]  # CU_STREAM_NON_BLOCKING


def test_a_library_without_tensorrt_never_reaches_tensorrt(tmp_path: Path, monkeypatch) -> None:
    """TensorRT's load_library fails on a library without getCreators with an error of its
    own; the library's pdfconv_has_tensorrt() says why first."""
    from saphnet import plugins

    registry = FakeRegistry(loads=False, has_creator=False)
    trt = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    library = tmp_path / "libsaphnet_plugins.so"
    library.write_bytes(b"not a shared library")
    assert plugins.built_with_tensorrt(library) is None  # cannot be asked: TensorRT tries
    with pytest.raises(SaphnetError, match="could not load"):
        plugins.register_tensorrt_plugin(library, trt)
    assert registry.loaded == [str(library)]
    registry.loaded.clear()
    monkeypatch.setattr(plugins, "built_with_tensorrt", lambda path: False)
    with pytest.raises(plugins.NoTensorRTPluginError, match="built without TensorRT") as exc:
        plugins.register_tensorrt_plugin(library, trt)
    assert registry.loaded == [] and "\n" not in str(exc.value)
    companion = tmp_path / plugins.AUTOREGISTER_LIBRARY_NAME
    with pytest.raises(SaphnetError, match=r"give saphnet libsaphnet_plugins\.so from the same"):
        plugins.register_tensorrt_plugin(companion, trt)  # never dlopened here
    assert registry.loaded == []


def test_the_autoregister_library_is_looked_up_beside_the_main_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saphnet import plugins

    main, companion = tmp_path / "custom-name.so", tmp_path / plugins.AUTOREGISTER_LIBRARY_NAME
    main.write_bytes(b"main")
    monkeypatch.setenv(plugins.ENV_VAR, str(main))
    assert plugins.library_path() == main
    with pytest.raises(SaphnetError, match=r"libsaphnet_plugins_autoregister\.so") as exc:
        plugins.autoregister_library_path()
    assert "\n" not in str(exc.value) and plugins.ENV_VAR in str(exc.value)
    companion.write_bytes(b"companion")
    assert plugins.autoregister_library_path() == companion
    monkeypatch.delenv(plugins.ENV_VAR)
    assert [p.name for p in plugins.candidate_paths(plugins.AUTOREGISTER_LIBRARY_NAME)] == [
        plugins.AUTOREGISTER_LIBRARY_NAME
    ] * 2
    assert plugins.candidate_paths(plugins.AUTOREGISTER_LIBRARY_NAME)[0].parent == (
        plugins.candidate_paths()[0].parent
    )
