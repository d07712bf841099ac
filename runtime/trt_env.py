"""Finding TensorRT, pycuda and the plugin library, with one-line errors when absent.

Both the engine builder and the TensorRT backend start here, so the "what to
install" message and the rule that plugin libraries come only from the user or the
installed package (never from a path read out of a model, engine or sidecar) live in
one place.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from types import ModuleType

from ..errors import SaphnetError
from ..files import sha256_file
from .sidecar import Environment

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'saphnet[tensorrt]' (needs an NVIDIA GPU with its driver)"


class TensorRTMissingError(SaphnetError):
    """TensorRT or pycuda is not installed."""


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a one-line error saying what to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTMissingError(f"TensorRT is not installed; {INSTALL_HINT}") from None
    return trt


def import_cuda_memory() -> ModuleType:
    """:mod:`saphnet.runtime.cuda_memory` (pycuda), or a one-line error."""
    try:
        from . import cuda_memory
    except ImportError:
        raise TensorRTMissingError(f"pycuda is not installed; {INSTALL_HINT}") from None
    except Exception as exc:  # pycuda raises its own errors when no driver or GPU is present
        raise TensorRTMissingError(
            f"no usable CUDA GPU ({exc}); the TensorRT backend needs one"
        ) from None
    return cuda_memory


def tensorrt_logger(trt: ModuleType) -> object:
    """The process's one TensorRT logger (WARNING), for every builder, parser and runtime
    and for :func:`init_builtin_plugins`.

    ``init_libnvinfer_plugins`` keeps the logger's pointer inside libnvinfer_plugin
    (TensorRT ``plugin/api/inferPlugin.cpp``) for the rest of the process, so a logger
    that dies with the call that made it would leave TensorRT's plugins logging through
    a dangling pointer; this one lives as long as the process (one per ``trt.Logger``
    class, so wrappers of the ``tensorrt`` module share it).
    """
    return _logger_of(trt.Logger)


@functools.cache
def _logger_of(logger_class: type) -> object:
    return logger_class(logger_class.WARNING)


def trt_major(trt: ModuleType) -> int:
    return int(trt.__version__.split(".")[0])


def has_fp16_flag(trt: ModuleType) -> bool:
    """TensorRT 10 builds FP16 from an FP32 network with the builder flag; 11 removed it
    (every network is strongly typed, precision comes from the ONNX types)."""
    return trt_major(trt) < 11 and hasattr(trt.BuilderFlag, "FP16")


def resolve_plugin(path: str | os.PathLike[str] | None, required: bool) -> Path | None:
    """The plugin library to load: ``path`` when the user gave one, else the one the
    installed package ships (``saphnet.plugins.library_path()``). None when not
    ``required`` and not found; a one-line error otherwise."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SaphnetError(
                f"plugin library {p} does not exist; build it with `make plugins` or fix --plugins"
            )
        return p
    try:
        from .. import plugins

        return Path(plugins.library_path())
    except SaphnetError:
        if required:
            raise
        return None


def load_plugin(trt: ModuleType, path: Path) -> str:
    """Register the library's plugin creators with TensorRT and return the library's
    SHA-256 for the sidecar.

    The library exports ``getCreators`` (IPluginV3, as ``trtexec --dynamicPlugins``
    loads it), so it goes through ``IPluginRegistry.load_library`` rather than a bare
    ``ctypes.CDLL``; either way it happens before parsing or deserializing.
    """
    from ..plugins import register_tensorrt_plugin

    register_tensorrt_plugin(path, trt)
    log.info("registered TensorRT plugins from %s", path)
    return sha256_file(path)


def init_builtin_plugins(trt: ModuleType) -> None:
    """Register TensorRT's own plugins (libnvinfer_plugin) with its plugin registry.

    ``import tensorrt`` registers none of them, so a fresh process cannot parse ONNX
    ``DeformConv`` nor deserialize an engine that holds TensorRT's DeformConv plugin
    (the ``deformconv`` op form, or the PDFConv function body) until this has run.
    Idempotent; called before every parse and every deserialization, always with
    :func:`tensorrt_logger` (TensorRT keeps the pointer).
    """
    if not trt.init_libnvinfer_plugins(tensorrt_logger(trt), ""):
        log.warning(
            "TensorRT's built-in plugins did not register: engines using its DeformConv will not load"
        )


def environment(trt: ModuleType, plugin_sha256: str | None, device: int = 0) -> Environment:
    """TensorRT version, GPU and plugin checksum of this machine."""
    info = import_cuda_memory().gpu_info(device)
    return Environment(trt.__version__, info.name, info.compute_capability, plugin_sha256)
