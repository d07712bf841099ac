"""ctypes binding of ``libsaphnet_plugins.so``: the PDFConv kernels, their host build and
the TensorRT plugin (``plugins/pdfconv``).

The numpy parts (:func:`host_forward`, :func:`version`, ...) import no torch, because
TensorRT deployment hosts have numpy only; :func:`cuda_forward` and the ``plugin``
backend of :func:`saphnet.ops.pdf_conv` import torch when they are called.

The library is searched, in order, at ``$SAPHNET_PLUGIN_LIB``, at
``<repo>/plugins/build/libsaphnet_plugins.so`` (``make plugins``) and in ``saphnet/lib/``
(an installed package). Only these places are searched: a library path is never taken
from a model, engine or sidecar file. Its small companion
``libsaphnet_plugins_autoregister.so``, which registers the creator when merely
``dlopen``ed (Triton's ``plugins=``, ``trtexec --staticPlugins``, ``LD_PRELOAD``), is
searched in the same places, beside the main library (:func:`autoregister_library_path`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import SaphnetError
from .pdf_identity import OP_TYPE as PLUGIN_NAME  # the creator's name is the node's op type
from .pdf_identity import PLUGIN_NAMESPACE, PLUGIN_VERSION

if TYPE_CHECKING:
    from types import ModuleType

    import torch

log = logging.getLogger(__name__)

ENV_VAR = "SAPHNET_PLUGIN_LIB"
LIBRARY_NAME = "libsaphnet_plugins.so"
AUTOREGISTER_LIBRARY_NAME = "libsaphnet_plugins_autoregister.so"
"""Registers ``PDFConv`` from a static initializer when ``dlopen``ed; exports no
``getCreators``, so it is for hosts that only ``dlopen`` (Triton, ``trtexec
--staticPlugins``), never for :func:`register_tensorrt_plugin`."""
# PDFCONV_VERSION of the pdfconv_api.h this module's ctypes declarations follow.
API_VERSION = 10000
_PACKAGE_DIR = Path(__file__).resolve().parent

# Status codes of pdfconv_api.h.
SUCCESS = 0
INVALID_ARGUMENT = 1
UNSUPPORTED = 2
CUDA_ERROR = 3
NO_CUDA = 4
WORKSPACE_TOO_SMALL = 5

_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
_LAYOUTS = {"nchw": 0, "nhwc8": 1}
_ALGOS = {"auto": 0, "direct": 1, "fused": 2}

IntPair = int | Sequence[int]


class PluginError(SaphnetError):
    """A call into the plugin library failed; ``status`` is the C API's status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NoTensorRTPluginError(SaphnetError):
    """The plugin library was built without TensorRT (plain ``make plugins``)."""


class PdfConvParams(ctypes.Structure):
    """``PdfConvParams`` of pdfconv_api.h, field for field."""

    _fields_ = [
        (name, ctypes.c_int32)
        for name in (
            "batch",
            "in_channels",
            "in_height",
            "in_width",
            "out_channels",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "pad_bottom",
            "pad_right",
            "dilation_h",
            "dilation_w",
            "dtype",
            "offset_dtype",
            "mask_dtype",
            "layout",
        )
    ]


def candidate_paths(name: str = LIBRARY_NAME) -> list[Path]:
    """Where :func:`library_path` looks for ``name``, in order (``$SAPHNET_PLUGIN_LIB``
    names the main library; its companions are looked for beside it)."""
    paths = []
    if os.environ.get(ENV_VAR):
        given = Path(os.environ[ENV_VAR]).expanduser()
        paths.append(given if name == LIBRARY_NAME else given.with_name(name))
    paths.append(_PACKAGE_DIR.parent / "plugins" / "build" / name)
    paths.append(_PACKAGE_DIR / "lib" / name)
    return paths


def library_path(name: str = LIBRARY_NAME) -> Path:
    """The plugin library ``name`` (by default the one :func:`load_library` loads);
    SaphnetError when none is built."""
    candidates = candidate_paths(name)
    if os.environ.get(ENV_VAR) and not candidates[0].is_file():
        raise SaphnetError(
            f"{ENV_VAR}={os.environ[ENV_VAR]}: {candidates[0]} is not a file; point it at "
            f"{LIBRARY_NAME} (with {AUTOREGISTER_LIBRARY_NAME} beside it) or unset it"
        )
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in candidates)
    raise SaphnetError(
        f"{name} not found (searched {searched}); build it with `make plugins` or set {ENV_VAR}"
    )


def autoregister_library_path() -> Path:
    """``libsaphnet_plugins_autoregister.so``, the library to hand hosts that only
    ``dlopen`` plugin libraries (Triton, ``trtexec --staticPlugins``, ``LD_PRELOAD``)."""
    return library_path(AUTOREGISTER_LIBRARY_NAME)


def _declare(lib: ctypes.CDLL) -> None:
    params = ctypes.POINTER(PdfConvParams)
    i32, vp, cvp = ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "pdfconv_version": (i32, []),
        "pdfconv_has_cuda": (i32, []),
        "pdfconv_has_tensorrt": (i32, []),
        "pdfconv_output_shape": (i32, [params, ctypes.POINTER(i32), ctypes.POINTER(i32)]),
        "pdfconv_workspace_size": (i32, [params, i32, ctypes.POINTER(ctypes.c_size_t)]),
        "pdfconv_forward_host": (i32, [params, cvp, cvp, cvp, cvp, cvp, vp]),
        "pdfconv_forward_cuda": (
            i32,
            [params, i32, cvp, cvp, cvp, cvp, cvp, vp, vp, ctypes.c_size_t, vp],
        ),
        "pdfconv_last_error": (ctypes.c_char_p, []),
        "pdfconv_status_string": (ctypes.c_char_p, [i32]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


@functools.cache
def load_library() -> ctypes.CDLL:
    """Load the library once per process (SaphnetError naming the path when it fails)."""
    path = library_path()
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, AttributeError) as exc:
        raise SaphnetError(
            f"cannot load {path}: {exc}; rebuild it with `make plugins` (clean plugins/build first)"
        ) from exc
    found = lib.pdfconv_version()
    if found // 100 != API_VERSION // 100:
        raise SaphnetError(
            f"{path} has PDFConv API version {found} but saphnet needs {API_VERSION}; "
            "rebuild it with `make plugins`"
        )
    log.debug("loaded %s (version %d)", path, found)
    return lib


def version() -> int:
    """The library's ``PDFCONV_VERSION``: major * 10000 + minor * 100 + patch."""
    return int(load_library().pdfconv_version())


def has_cuda() -> bool:
    """Whether the loaded library holds the CUDA kernels (False for a host-only build)."""
    return bool(load_library().pdfconv_has_cuda())


def has_tensorrt() -> bool:
    """Whether the loaded library holds the TensorRT plugin (built with TensorRT's headers)."""
    return bool(load_library().pdfconv_has_tensorrt())


def _check(status: int, call: str) -> None:
    if status != SUCCESS:
        lib = load_library()
        detail = lib.pdfconv_last_error().decode(errors="replace")
        name = lib.pdfconv_status_string(status).decode()
        raise PluginError(f"{call} failed ({name}): {detail}", status)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise SaphnetError(f"{name} must be an int or a pair, got {value!r}")
    return pair[0], pair[1]


def _pads(value: IntPair) -> tuple[int, int, int, int]:
    """Padding as ONNX pads (top, left, bottom, right) from an int, (h, w) or 4 values."""
    if isinstance(value, int | np.integer):
        return (int(value),) * 4  # type: ignore[return-value]
    pads = tuple(int(v) for v in value)
    if len(pads) == 2:
        return pads[0], pads[1], pads[0], pads[1]
    if len(pads) == 4:
        return pads  # type: ignore[return-value]
    raise SaphnetError(
        f"padding must be an int, (h, w) or (top, left, bottom, right), got {value!r}"
    )


def make_params(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    dtype: Any,
    offset_dtype: Any,
    mask_dtype: Any,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    layout: str = "nchw",
) -> PdfConvParams:
    """The C API's parameter struct; ``x_shape`` is the logical (N, C, H, W) shape."""
    dtypes = []
    for name, dt in (("x", dtype), ("offset", offset_dtype), ("mask", mask_dtype)):
        text = str(dt)  # torch dtypes print as "torch.float16"
        key = np.dtype(text.removeprefix("torch.") if text.startswith("torch.") else dt)
        if key not in _DTYPES:
            raise SaphnetError(f"{name} must be float32 or float16, got {dt}")
        dtypes.append(_DTYPES[key])
    if layout not in _LAYOUTS:
        raise SaphnetError(f"layout must be one of {sorted(_LAYOUTS)}, got {layout!r}")
    if len(x_shape) != 4 or len(weight_shape) != 4:
        raise SaphnetError(
            f"x and weight must be 4-D, got shapes {tuple(x_shape)} and {tuple(weight_shape)}"
        )
    n, c_in, h, w = (int(v) for v in x_shape)
    c_out, _, kh, kw = (int(v) for v in weight_shape)
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    top, left, bottom, right = _pads(padding)
    return PdfConvParams(
        n, c_in, h, w, c_out, kh, kw, sh, sw, top, left, bottom, right, dh, dw, *dtypes,
        _LAYOUTS[layout],
    )  # fmt: skip


def output_shape(params: PdfConvParams) -> tuple[int, int]:
    """(Ho, Wo) for ``params``; PluginError with the library's reason when they are invalid."""
    lib = load_library()
    ho, wo = ctypes.c_int32(), ctypes.c_int32()
    _check(lib.pdfconv_output_shape(ctypes.byref(params), ho, wo), "pdfconv_output_shape")
    return ho.value, wo.value


def _check_inputs(
    params: PdfConvParams,
    x_shape: Sequence[int],
    offset_shape: Sequence[int],
    mask_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
) -> tuple[int, int]:
    """Shape checks the C API cannot do (it sees only pointers); messages name both sizes."""
    ho, wo = output_shape(params)
    taps = params.kernel_h * params.kernel_w
    expected = {
        "offset": ((params.batch, 2 * taps, ho, wo), tuple(offset_shape)),
        "mask": ((params.batch, taps, ho, wo), tuple(mask_shape)),
        "weight": (
            (params.out_channels, params.in_channels, params.kernel_h, params.kernel_w),
            tuple(weight_shape),
        ),
    }
    if bias_shape is not None:
        expected["bias"] = ((params.out_channels,), tuple(bias_shape))
    for name, (want, got) in expected.items():
        if want != got:
            raise PluginError(
                f"pdfconv: {name} has shape {got} but x {tuple(x_shape)} and weight "
                f"{tuple(weight_shape)} need {want}",
                INVALID_ARGUMENT,
            )
    return ho, wo


def _plan(
    x: Any,
    offset: Any,
    mask: Any,
    weight: Any,
    bias: Any | None,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    layout: str = "nchw",
) -> tuple[PdfConvParams, int, int]:
    """The C API's parameters and the checked output size of one call.

    Reads only ``.shape`` and ``.dtype``, so numpy arrays (host) and torch tensors
    (CUDA) share one set of checks.
    """
    if weight.dtype != x.dtype:
        raise SaphnetError(f"x is {x.dtype} but weight is {weight.dtype}; cast one")
    params = make_params(
        x.shape, weight.shape, x.dtype, offset.dtype, mask.dtype, stride, padding, dilation, layout
    )
    ho, wo = _check_inputs(
        params,
        x.shape,
        offset.shape,
        mask.shape,
        weight.shape,
        None if bias is None else bias.shape,
    )
    return params, ho, wo


def host_forward(
    x: np.ndarray,
    offset: np.ndarray,
    mask: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    layout: str = "nchw",
) -> np.ndarray:
    """PDFConv on the CPU through the library's host build (the kernels' maths).

    Same arguments as :func:`saphnet.ops.pdf_conv` on numpy arrays (NCHW), plus ONNX-style
    asymmetric ``padding=(top, left, bottom, right)``. ``x``, ``weight`` and ``bias`` are
    float32 or float16 (one dtype); ``offset`` and ``mask`` each float32 or float16.
    ``layout="nhwc8"`` runs the library on x and y in TensorRT's kHWC8 memory layout
    (packed here and unpacked after). Returns (N, C_out, Ho, Wo) in x's dtype.
    """
    arrays = [np.ascontiguousarray(a) for a in (x, offset, mask, weight)]
    x, offset, mask, weight = arrays
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=x.dtype)
    params, ho, wo = _plan(x, offset, mask, weight, bias, stride, padding, dilation, layout)
    n, c_out = params.batch, params.out_channels
    nhwc8 = layout == "nhwc8"
    if nhwc8:
        x = pack_nhwc8(x)
    y = np.empty((n, ho, wo, _round8(c_out)) if nhwc8 else (n, c_out, ho, wo), dtype=x.dtype)
    status = load_library().pdfconv_forward_host(
        ctypes.byref(params),
        x.ctypes.data,
        offset.ctypes.data,
        mask.ctypes.data,
        weight.ctypes.data,
        None if bias is None else bias.ctypes.data,
        y.ctypes.data,
    )
    _check(status, "pdfconv_forward_host")
    return np.ascontiguousarray(y[..., :c_out].transpose(0, 3, 1, 2)) if nhwc8 else y


def _round8(channels: int) -> int:
    """Channels of TensorRT's kHWC8 layout: padded to a multiple of 8."""
    return (int(channels) + 7) // 8 * 8


def pack_nhwc8(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> TensorRT's kHWC8: (N, H, W, C padded to a multiple of 8 with zeros)."""
    n, c, h, w = x.shape
    packed = np.zeros((n, h, w, _round8(c)), dtype=x.dtype)
    packed[..., :c] = x.transpose(0, 2, 3, 1)
    return packed


def cuda_forward(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    algo: str = "auto",
    layout: str = "nchw",
) -> torch.Tensor:
    """PDFConv with our CUDA kernel on CUDA tensors, on the current stream.

    ``algo``: ``"fused"`` (tensor-core implicit GEMM, float16), ``"direct"`` (FP32 maths,
    float32 or float16) or ``"auto"`` (fused for float16, direct for float32).
    ``layout="nhwc8"`` runs the kernel on x and y in TensorRT's kHWC8 layout (packed here
    and unpacked after, as :func:`host_forward`). Not differentiable: the ``plugin``
    backend is chosen only for tensors without grad.
    """
    import torch

    if algo not in _ALGOS:
        raise SaphnetError(f"algo must be one of {sorted(_ALGOS)}, got {algo!r}")
    tensors = {"x": x, "offset": offset, "mask": mask, "weight": weight}
    for name, t in tensors.items():
        if t.device != x.device or t.device.type != "cuda":
            raise SaphnetError(f"{name} is on {t.device}; every tensor must be on x's CUDA device")
    x, offset, mask, weight = (t.contiguous() for t in (x, offset, mask, weight))
    if bias is not None:
        bias = bias.to(device=x.device, dtype=x.dtype).contiguous()
    params, ho, wo = _plan(x, offset, mask, weight, bias, stride, padding, dilation, layout)
    lib = load_library()
    workspace_bytes = ctypes.c_size_t()
    _check(
        lib.pdfconv_workspace_size(ctypes.byref(params), _ALGOS[algo], workspace_bytes),
        "pdfconv_workspace_size",
    )
    n, c_out = params.batch, params.out_channels
    nhwc8 = layout == "nhwc8"
    if nhwc8:
        packed = x.new_zeros((n, x.shape[2], x.shape[3], _round8(x.shape[1])))
        packed[..., : x.shape[1]] = x.permute(0, 2, 3, 1)
        x = packed
    shape = (n, ho, wo, _round8(c_out)) if nhwc8 else (n, c_out, ho, wo)
    y = torch.empty(shape, dtype=x.dtype, device=x.device)
    workspace = torch.empty(max(workspace_bytes.value, 1), dtype=torch.uint8, device=x.device)
    # The kernels launch on the thread's current device and refuse pointers of another one
    # (they never switch devices themselves): make x's device current for the call only.
    with torch.cuda.device(x.device):
        status = lib.pdfconv_forward_cuda(
            ctypes.byref(params),
            _ALGOS[algo],
            x.data_ptr(),
            offset.data_ptr(),
            mask.data_ptr(),
            weight.data_ptr(),
            None if bias is None else bias.data_ptr(),
            y.data_ptr(),
            workspace.data_ptr(),
            workspace_bytes.value,
            torch.cuda.current_stream(x.device).cuda_stream,
        )
    _check(status, "pdfconv_forward_cuda")
    return y[..., :c_out].permute(0, 3, 1, 2).contiguous() if nhwc8 else y


def _torch_accepts(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> bool:
    """The ``plugin`` backend takes contiguous CUDA float32/float16 tensors without grad."""
    import torch

    floats = (torch.float32, torch.float16)
    tensors = (x, offset, mask, weight)
    return (
        x.device.type == "cuda"
        and all(t.device == x.device and t.is_contiguous() for t in tensors)
        and x.dtype in floats
        and weight.dtype == x.dtype
        and offset.dtype in floats
        and mask.dtype in floats
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


def register_torch_backend() -> bool:
    """Register the ``plugin`` backend of :func:`saphnet.ops.pdf_conv` (priority 20).

    Does nothing, and returns False, when the library is absent or was built without CUDA,
    so a CPU machine or a checkout without ``make plugins`` keeps the other backends.
    """
    try:
        if not has_cuda():
            return False
    except SaphnetError as exc:
        log.debug("plugin backend not registered: %s", exc)
        return False
    from .ops.dispatch import register_backend

    register_backend("plugin", cuda_forward, _torch_accepts, priority=20)
    return True


def built_with_tensorrt(path: str | os.PathLike[str]) -> bool | None:
    """Whether the library at ``path`` holds the TensorRT plugin (``pdfconv_has_tensorrt``);
    None when it cannot be asked (not our library, or it does not load here).

    Asked before TensorRT sees the library: ``IPluginRegistry.load_library`` on a library
    built without TensorRT (no ``getCreators``) fails with an error in TensorRT's log
    that does not say why.
    """
    try:
        has = ctypes.CDLL(str(path)).pdfconv_has_tensorrt
    except (OSError, AttributeError):
        return None
    has.restype, has.argtypes = ctypes.c_int32, []
    return bool(has())


def register_tensorrt_plugin(
    path: str | os.PathLike[str] | None = None, trt: ModuleType | None = None
) -> Path:
    """Register the ``saphnet::PDFConv`` plugin creator with TensorRT's plugin registry.

    Uses ``IPluginRegistry.load_library`` (the library's ``getCreators`` entry point, as
    ``trtexec --dynamicPlugins``); call it before parsing ONNX or deserializing an engine.
    Idempotent. ``path`` defaults to the installed library, ``trt`` to the imported
    ``tensorrt`` module. Returns the library path; :class:`NoTensorRTPluginError` when
    the library was built without TensorRT (callers for whom the plugin is optional
    fall back on it).
    """
    if trt is None:
        import tensorrt as trt
    library = Path(path) if path is not None else library_path()
    if library.name == AUTOREGISTER_LIBRARY_NAME:  # merely loading it registers the creator
        raise SaphnetError(
            f"{library} is for hosts that only dlopen plugins (Triton, trtexec "
            f"--staticPlugins); give saphnet {LIBRARY_NAME} from the same folder"
        )
    without_tensorrt = NoTensorRTPluginError(
        f"{library} holds no TensorRT plugin (built without TensorRT); rebuild it with "
        "`make plugins CMAKE_ARGS=-DTENSORRT_ROOT=<TensorRT>`"
    )
    registry = trt.get_plugin_registry()
    registered = registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
    if not registered:
        if built_with_tensorrt(library) is False:
            raise without_tensorrt
        if registry.load_library(str(library)) is None:
            raise SaphnetError(
                f"TensorRT could not load {library} as a plugin library; rebuild it with "
                "`make plugins CMAKE_ARGS=-DTENSORRT_ROOT=<TensorRT>` for this TensorRT version"
            )
    if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        raise without_tensorrt
    return library
