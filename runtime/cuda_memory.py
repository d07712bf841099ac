"""The one small pycuda module: GPU context, device buffers, pinned host memory, a
stream, and CUDA graphs.

The TensorRT backend needs just these, and deployment hosts have no torch, so they
live on pycuda (installed with the ``tensorrt`` extra). pycuda has no stream-capture
API, so the four driver calls that CUDA graphs need are bound with ctypes from the
driver library that pycuda already loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pycuda.driver as cuda

log = logging.getLogger(__name__)

_CAPTURE_MODE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
_STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str
    total_memory: int


def gpu_info(device: int = 0) -> GpuInfo:
    """Name, compute capability ("8.7") and memory of a GPU; needs no context."""
    cuda.init()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return GpuInfo(dev.name(), f"{major}.{minor}", dev.total_memory())


class GpuContext:
    """The device's primary context, made current for this thread.

    TensorRT uses the CUDA runtime, which works in the primary context; sharing it
    (rather than creating a private pycuda context) keeps our buffers and TensorRT's
    memory in one address space.
    """

    def __init__(self, device: int = 0) -> None:
        cuda.init()
        self.device = cuda.Device(device)
        self._ctx = self.device.retain_primary_context()
        self._ctx.push()

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None


class Stream:
    """A non-blocking CUDA stream for TensorRT's work and its graph capture.

    CUDA graphs cannot capture the legacy default stream, and while a stream that
    synchronizes with it (a blocking one) captures, any use of the legacy stream in the
    context, another thread's included, is illegal and invalidates the capture. A
    non-blocking stream (``CU_STREAM_NON_BLOCKING``) does not synchronize with it.
    """

    def __init__(self) -> None:
        self._stream = cuda.Stream(flags=_STREAM_NON_BLOCKING)

    @property
    def handle(self) -> int:
        return int(self._stream.handle)

    def synchronize(self) -> None:
        self._stream.synchronize()


class HostDeviceBuffer:
    """A pinned host array and a device allocation of the same size, grown on demand.

    Pinned memory makes the host<->device copies truly asynchronous (and faster); the
    buffers only grow, so a run of same-size or smaller tiles allocates nothing.
    """

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.capacity = 0
        self._host: np.ndarray | None = None
        self._device: cuda.DeviceAllocation | None = None

    def reserve(self, count: int) -> bool:
        """Make room for ``count`` elements; True when the device address changed."""
        if count <= self.capacity:
            return False
        self.free()
        self._host = cuda.pagelocked_empty(count, self.dtype)
        self._device = cuda.mem_alloc(max(1, count * self.dtype.itemsize))
        self.capacity = count
        return True

    @property
    def device_ptr(self) -> int:
        assert self._device is not None, "reserve() first"
        return int(self._device)

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        assert self._host is not None, "reserve() first"
        return self._host[: int(np.prod(shape))].reshape(shape)

    def upload(self, shape: tuple[int, ...], stream: Stream) -> None:
        """Queue the copy of ``host_view(shape)`` to the device."""
        count = int(np.prod(shape))
        cuda.memcpy_htod_async(self._device, self._host[:count], stream._stream)

    def download(self, shape: tuple[int, ...], stream: Stream) -> None:
        """Queue the copy of the device data into ``host_view(shape)``."""
        count = int(np.prod(shape))
        cuda.memcpy_dtoh_async(self._host[:count], self._device, stream._stream)

    def free(self) -> None:
        if self._device is not None:
            self._device.free()
        self._device = None
        self._host = None
        self.capacity = 0

    @property
    def nbytes(self) -> int:
        return self.capacity * self.dtype.itemsize


def _driver() -> ctypes.CDLL:
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    return ctypes.CDLL(name)


class CudaGraph:
    """One captured sequence of stream work, replayed with a single launch.

    Usage: ``g.capture(stream, work)`` with ``work`` enqueuing on ``stream``, then
    ``g.launch()`` as often as the captured addresses and shapes stay valid.
    """

    def __init__(self) -> None:
        self._lib = _driver()
        self._graph = ctypes.c_void_p()
        self._exec = ctypes.c_void_p()
        self._stream: Stream | None = None

    def _call(self, fn: str, *args: object) -> None:
        status = getattr(self._lib, fn)(*args)
        if status != 0:
            raise RuntimeError(f"{fn} failed with CUDA driver error {status}")

    def capture(self, stream: Stream, work: Callable[[], object]) -> None:
        """Capture what ``work()`` enqueues on ``stream`` and instantiate the graph.

        Whatever fails (``work`` raising, an invalidated capture, instantiation), the
        capture is over when this raises: a stream left capturing would turn every
        later plain enqueue on it into a capture error.
        """
        self._stream = stream
        self._call(
            "cuStreamBeginCapture_v2",
            ctypes.c_void_p(stream.handle),
            ctypes.c_int(_CAPTURE_MODE_THREAD_LOCAL),
        )
        try:
            work()
        except BaseException:
            self._abort_capture()
            raise
        # An invalidated capture ends here too (the call fails and returns no graph).
        self._call("cuStreamEndCapture", ctypes.c_void_p(stream.handle), ctypes.byref(self._graph))
        self._call(
            "cuGraphInstantiateWithFlags",
            ctypes.byref(self._exec),
            self._graph,
            ctypes.c_ulonglong(0),
        )

    def _abort_capture(self) -> None:
        """End the capture ``work`` broke off and destroy the partial graph. The status
        is not checked: ending an invalidated capture reports an error, yet ends it."""
        assert self._stream is not None
        partial = ctypes.c_void_p()
        self._lib.cuStreamEndCapture(ctypes.c_void_p(self._stream.handle), ctypes.byref(partial))
        if partial.value:
            self._lib.cuGraphDestroy(partial)

    def launch(self) -> None:
        assert self._stream is not None and self._exec.value, "capture first"
        self._call("cuGraphLaunch", self._exec, ctypes.c_void_p(self._stream.handle))

    def close(self) -> None:
        if self._exec.value:
            self._lib.cuGraphExecDestroy(self._exec)
            self._exec = ctypes.c_void_p()
        if self._graph.value:
            self._lib.cuGraphDestroy(self._graph)
            self._graph = ctypes.c_void_p()
