"""TensorRT backend: a serialized engine run on pycuda buffers; no torch.

Per call: the batch is copied into pinned host memory, uploaded, run with
``IExecutionContext.execute_async_v3`` on our stream and downloaded, all queued
asynchronously and synchronized once. Any shape inside the engine's optimization
profile works (``set_input_shape``); buffers only grow. A shape seen twice in a row
is captured into a CUDA graph and replayed from then on, which removes the per-layer
launch overhead that dominates small images; a new shape drops the graph and the
cycle starts again (TensorRT requires one plain enqueue after a shape change before
capture).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import SaphnetError
from ..files import sha256_file
from .profiles import Profile, format_shape
from .sidecar import check_sidecar, read_sidecar
from .trt_env import (
    environment,
    import_cuda_memory,
    import_tensorrt,
    init_builtin_plugins,
    load_plugin,
    resolve_plugin,
    tensorrt_logger,
)

log = logging.getLogger(__name__)


class TensorRTBackend:
    """A TensorRT engine behind the :class:`~saphnet.runtime.backend.Backend` protocol."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike[str],
        plugin_library: str | os.PathLike[str] | None = None,
        device: int = 0,
        cuda_graphs: bool = True,
    ) -> None:
        trt = import_tensorrt()
        cm = import_cuda_memory()
        self._trt = trt
        path = Path(engine_path)
        if not path.is_file():
            raise SaphnetError(
                f"engine {path} does not exist; build it with saphnet build MODEL.onnx -o {path}"
            )
        sidecar = read_sidecar(path)
        needs_plugin = sidecar is not None and sidecar.plugin_sha256 is not None
        plugin = (
            resolve_plugin(plugin_library, required=needs_plugin)
            if needs_plugin or plugin_library
            else None
        )
        plugin_sha = load_plugin(trt, plugin) if plugin is not None else None
        if sidecar is None:
            log.warning(
                "%s has no sidecar: GPU, TensorRT and plugin cannot be checked before loading",
                path.name,
            )
        else:
            check_sidecar(path, sidecar, environment(trt, plugin_sha, device), sha256_file(path))
        self.precision = sidecar.precision if sidecar else "fp32"

        self._gpu = cm.GpuContext(device)
        self._stream = cm.Stream()
        init_builtin_plugins(trt)  # engines may hold TensorRT's DeformConv plugin
        self._runtime = trt.Runtime(tensorrt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            self._gpu.close()
            raise SaphnetError(
                f"TensorRT could not load {path.name} (see its log above); rebuild it with saphnet build"
            )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SaphnetError(
                f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs; SAPHNet has one each"
            )
        self._in, self._out = inputs[0], outputs[0]
        lo, opt, hi = (
            tuple(int(v) for v in s) for s in self._engine.get_tensor_profile_shape(self._in, 0)
        )
        self.profile = Profile(self._in, lo, opt, hi)  # type: ignore[arg-type]
        self._context = self._engine.create_execution_context()
        self._in_buf = cm.HostDeviceBuffer(trt.nptype(self._engine.get_tensor_dtype(self._in)))
        self._out_buf = cm.HostDeviceBuffer(trt.nptype(self._engine.get_tensor_dtype(self._out)))
        self._cm = cm
        self._use_graphs = cuda_graphs
        self._graph = None
        self._shape: tuple[int, ...] | None = None
        self._out_shape: tuple[int, ...] = ()
        self._runs_at_shape = 0
        log.info(
            "loaded %s (%s, PDF layers: %s), shapes %s",
            path.name,
            self.precision,
            (sidecar.pdf_implementation if sidecar else None) or "not recorded",
            " ".join(self.profile.trtexec().values()),
        )

    @property
    def min_hw(self) -> tuple[int, int]:
        """Smallest H, W the profile takes (smaller tiles are padded up to it)."""
        return self.profile.min[2], self.profile.min[3]

    @property
    def max_hw(self) -> tuple[int, int]:
        """Largest H, W the profile takes (larger images are tiled)."""
        return self.profile.max[2], self.profile.max[3]

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        if not self.profile.contains(shape):  # type: ignore[arg-type]
            raise SaphnetError(
                f"shape {format_shape(shape)} is outside the engine's profile "  # type: ignore[arg-type]
                f"{format_shape(self.profile.min)}..{format_shape(self.profile.max)}; use tiling or rebuild with --shapes"
            )
        self._drop_graph()
        if not self._context.set_input_shape(self._in, shape):
            raise SaphnetError(
                f"TensorRT rejected input shape {format_shape(shape)}; see its log above"
            )  # type: ignore[arg-type]
        self._out_shape = tuple(int(v) for v in self._context.get_tensor_shape(self._out))
        self._in_buf.reserve(int(np.prod(shape)))
        self._out_buf.reserve(int(np.prod(self._out_shape)))
        self._context.set_tensor_address(self._in, self._in_buf.device_ptr)
        self._context.set_tensor_address(self._out, self._out_buf.device_ptr)
        self._shape = shape
        self._runs_at_shape = 0

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")

    def _capture(self) -> None:
        """Capture one enqueue into a CUDA graph; on failure run without graphs (the
        capture has been ended by then, so the stream takes plain work again)."""
        graph = self._cm.CudaGraph()
        try:
            graph.capture(self._stream, self._enqueue)
        except RuntimeError as exc:
            graph.close()
            self._use_graphs = False
            log.warning("CUDA graph capture failed (%s); running without graphs", exc)
            return
        self._graph = graph

    def infer(self, batch: np.ndarray) -> np.ndarray:
        shape = tuple(int(v) for v in batch.shape)
        if shape != self._shape:
            self._set_shape(shape)
        np.copyto(self._in_buf.host_view(shape), batch, casting="unsafe")
        self._in_buf.upload(shape, self._stream)
        if self._graph is None and self._use_graphs and self._runs_at_shape >= 1:
            self._capture()
        if self._graph is not None:
            self._graph.launch()
        else:
            self._enqueue()
        self._out_buf.download(self._out_shape, self._stream)
        self._stream.synchronize()
        self._runs_at_shape += 1
        return self._out_buf.host_view(self._out_shape).astype(np.float32, copy=True)

    @property
    def uses_cuda_graph(self) -> bool:
        return self._graph is not None

    def device_memory_bytes(self) -> int:
        """Engine activation memory plus our IO buffers (for the benchmarks)."""
        engine = self._engine
        size = getattr(engine, "device_memory_size_v2", None)
        if size is None:
            size = engine.device_memory_size
        return int(size) + self._in_buf.nbytes + self._out_buf.nbytes

    def close(self) -> None:
        if self._gpu is None:
            return
        self._drop_graph()
        self._in_buf.free()
        self._out_buf.free()
        self._context = None
        self._engine = None
        self._gpu.close()
        self._gpu = None
