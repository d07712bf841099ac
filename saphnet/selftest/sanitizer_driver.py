"""A tiny program for compute-sanitizer: both kernels on a few small cases.

``python -m saphnet.selftest.sanitizer_driver`` allocates device memory through the CUDA
driver API (ctypes on libcuda, no torch), so under compute-sanitizer the only kernels
that run, and are instrumented, are ours: the direct kernel (FP32 and FP16), the fused
tensor-core kernel with its weight packing, in NCHW and NHWC8. Each result is checked
against the host build. Exit status 0 when every case matches, 3 when one does not.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from .. import plugins
from .kernel_check import TOLERANCES
from .shapes import OpShape

DONE = "sanitizer driver: every case matches the host build"
MISMATCH = 3

CASES = [
    OpShape("k3", 2, 13, 19, 11, 17, (3, 3), pads=(1, 1, 1, 1)),
    OpShape("k5 C 37->130", 1, 37, 130, 9, 13, (5, 5), pads=(2, 2, 2, 2)),
    OpShape(
        "k3 stride 2 dilation 2 pads 2,1,0,3",
        2,
        24,
        20,
        15,
        18,
        (3, 3),
        (2, 2),
        (2, 1, 0, 3),
        (2, 2),
    ),
]
# (x dtype, algo, layout); the offsets are FP32 and the mask FP16 as in the exported model.
VARIANTS = [
    ("float32", "direct", "nchw"),
    ("float16", "direct", "nchw"),
    ("float16", "fused", "nchw"),
    ("float16", "fused", "nhwc8"),
]
_ALGO = {"direct": 1, "fused": 2}


class Driver:
    """The CUDA driver API calls the program needs, on the primary context of GPU 0
    (the one the plugin's CUDA runtime uses)."""

    def __init__(self) -> None:
        self.cuda = ctypes.CDLL("libcuda.so.1")
        u64, size = ctypes.c_uint64, ctypes.c_size_t
        signatures = {
            "cuInit": [ctypes.c_uint],
            "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
            "cuDevicePrimaryCtxRetain": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int],
            "cuCtxSetCurrent": [ctypes.c_void_p],
            "cuCtxSynchronize": [],
            "cuMemAlloc_v2": [ctypes.POINTER(u64), size],
            "cuMemFree_v2": [u64],
            "cuMemcpyHtoD_v2": [u64, ctypes.c_void_p, size],
            "cuMemcpyDtoH_v2": [ctypes.c_void_p, u64, size],
        }
        for name, args in signatures.items():
            getattr(self.cuda, name).argtypes = args
            getattr(self.cuda, name).restype = ctypes.c_int
        self.call("cuInit", 0)
        device = ctypes.c_int()
        self.call("cuDeviceGet", ctypes.byref(device), 0)
        context = ctypes.c_void_p()
        self.call("cuDevicePrimaryCtxRetain", ctypes.byref(context), device)
        self.call("cuCtxSetCurrent", context)
        self.allocations: list[int] = []

    def call(self, name: str, *args: object) -> None:
        status = getattr(self.cuda, name)(*args)
        if status != 0:
            raise RuntimeError(f"{name} failed with CUDA driver error {status}")

    def upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        pointer = self.alloc(array.nbytes)
        self.call("cuMemcpyHtoD_v2", pointer, array.ctypes.data, array.nbytes)
        return pointer

    def alloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64()
        self.call("cuMemAlloc_v2", ctypes.byref(pointer), max(nbytes, 256))
        self.allocations.append(pointer.value)
        return pointer.value

    def download(self, pointer: int, out: np.ndarray) -> np.ndarray:
        self.call("cuCtxSynchronize")
        self.call("cuMemcpyDtoH_v2", out.ctypes.data, pointer, out.nbytes)
        return out

    def free_all(self) -> None:
        for pointer in self.allocations:
            self.call("cuMemFree_v2", pointer)
        self.allocations.clear()


def inputs(shape: OpShape, dtype: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    kh, kw = shape.kernel
    ho, wo = shape.out_size
    taps = kh * kw
    x = rng.standard_normal((shape.batch, shape.c_in, shape.height, shape.width)).astype(dtype)
    offset = rng.uniform(-3, 3, (shape.batch, 2 * taps, ho, wo)).astype(np.float32)
    mask = rng.uniform(0, 1, (shape.batch, taps, ho, wo)).astype(np.float16)
    weight = rng.standard_normal((shape.c_out, shape.c_in, kh, kw)) / np.sqrt(shape.c_in * taps)
    bias = rng.standard_normal(shape.c_out)
    return [x, offset, mask, weight.astype(dtype), bias.astype(dtype)]


def run_case(driver: Driver, shape: OpShape, dtype: str, algo: str, layout: str) -> float:
    """Max |device - host build| / max |host build| of one case."""
    x, offset, mask, weight, bias = inputs(shape, dtype, seed=len(shape.label))
    geometry = {"stride": shape.stride, "padding": shape.pads, "dilation": shape.dilation}
    expected = plugins.host_forward(x, offset, mask, weight, bias, **geometry, layout=layout)
    params = plugins.make_params(
        x.shape, weight.shape, x.dtype, offset.dtype, mask.dtype, **geometry, layout=layout
    )
    lib = plugins.load_library()
    size = ctypes.c_size_t()
    plugins._check(
        lib.pdfconv_workspace_size(ctypes.byref(params), _ALGO[algo], size),
        "pdfconv_workspace_size",
    )
    device_x = plugins.pack_nhwc8(x) if layout == "nhwc8" else x
    n, ho, wo = shape.batch, *shape.out_size
    c_out = plugins._round8(shape.c_out) if layout == "nhwc8" else shape.c_out
    y = np.empty((n, ho, wo, c_out) if layout == "nhwc8" else (n, c_out, ho, wo), dtype=dtype)
    pointers = [driver.upload(a) for a in (device_x, offset, mask, weight, bias)]
    out, workspace = driver.alloc(y.nbytes), driver.alloc(size.value)
    status = lib.pdfconv_forward_cuda(
        ctypes.byref(params), _ALGO[algo], *pointers, out, workspace, size.value, None
    )
    plugins._check(status, "pdfconv_forward_cuda")
    got = driver.download(out, y)
    driver.free_all()
    if layout == "nhwc8":
        got = got[..., : shape.c_out].transpose(0, 3, 1, 2)
    scale = float(np.abs(expected.astype(np.float64)).max())
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return float(diff.max()) / scale if np.isfinite(got).all() else float("inf")


def main() -> int:
    driver = Driver()
    worst_ok = True
    for shape in CASES:
        for dtype, algo, layout in VARIANTS:
            rel = run_case(driver, shape, dtype, algo, layout)
            # Against the host build both sides round: twice the reference tolerance.
            ok = rel <= 2 * TOLERANCES[dtype].max_rel
            worst_ok &= ok
            print(f"{shape.label:<38} {dtype} {algo:<6} {layout:<5} rel {rel:.2e} "
                  f"{'ok' if ok else 'MISMATCH'}")  # fmt: skip
    if not worst_ok:
        return MISMATCH
    print(DONE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
