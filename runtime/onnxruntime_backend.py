"""ONNX Runtime backend: runs an exported SAPHNet file, with no torch import.

Execution providers: CPU by default; CUDA and TensorRT when ``onnxruntime-gpu`` is
installed (``pip install saphnet[gpu]``). The TensorRT provider is given our plugin
library (``trt_extra_plugin_lib_paths``) so it runs ``saphnet::PDFConv`` as the fused
plugin; without the library it falls back to the node's ONNX function. The library
path comes from the caller or the installed package, never from the model file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import SaphnetError, first_line
from ..export.metadata import ExportMetadata
from .artefacts import open_artefact

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def default_plugin_library() -> Path | None:
    """The installed plugin library, or None when it was not built or cannot be found."""
    try:
        from saphnet import plugins
    except ImportError:
        return None
    try:
        path = plugins.library_path()
    except (OSError, SaphnetError) as exc:
        log.debug("no plugin library: %s", exc)
        return None
    return Path(path) if path else None


def provider_chain(
    providers: str | None, precision: str, plugin_library: str | os.PathLike[str] | None
) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime's provider list for ``providers`` (cpu, cuda or tensorrt), each
    falling back to the ones after it; a provider this onnxruntime lacks is an error."""
    choice = providers or "cpu"
    if choice not in PROVIDERS:
        raise SaphnetError(f"unknown provider {choice!r}; choose one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if PROVIDERS[choice] not in available:
        raise SaphnetError(
            f"this onnxruntime has no {PROVIDERS[choice]} (it has {', '.join(available)}); "
            "install onnxruntime-gpu (pip install 'saphnet[gpu]') on a CUDA machine"
        )
    chain: list[str | tuple[str, dict[str, str]]] = []
    if choice == "tensorrt":
        options = {"trt_fp16_enable": str(precision == "fp16")}
        library = plugin_library or default_plugin_library()
        if library is not None:
            options["trt_extra_plugin_lib_paths"] = str(library)
        else:
            log.warning(
                "no saphnet plugin library; TensorRT runs PDFConv through its ONNX function"
            )
        chain.append((PROVIDERS["tensorrt"], options))
    if choice in ("tensorrt", "cuda"):
        chain.append(PROVIDERS["cuda"])
    chain.append(PROVIDERS["cpu"])
    return chain


class OnnxRuntimeBackend:
    """A SAPHNet ONNX file in an ONNX Runtime session (implements ``Backend``)."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str | None = None,
        plugin_library: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.artefact = open_artefact(self.path, ("onnx",))
        if plugin_library is not None and not Path(plugin_library).is_file():
            raise SaphnetError(
                f"plugin library {plugin_library} does not exist; build it with make plugins"
            )
        self.metadata: ExportMetadata = self.artefact.metadata  # type: ignore[assignment]
        self.precision = self.metadata.precision
        chain = provider_chain(providers, self.precision, plugin_library)
        try:
            self._session = ort.InferenceSession(str(self.path), providers=chain)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise SaphnetError(f"ONNX Runtime cannot load {self.path}: {first_line(exc)}") from None
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    @property
    def min_hw(self) -> tuple[int, int]:
        """Smallest H, W the file takes: a static export's own size (smaller tiles are
        padded up to it), else any (the runtime pads sides to 16)."""
        return self.artefact.static_hw or (1, 1)

    @property
    def max_hw(self) -> tuple[int, int] | None:
        """Largest H, W the file takes: a static export's own size (larger images run
        as tiles of it, as with an engine's profile), else None (any size)."""
        return self.artefact.static_hw

    @property
    def session(self) -> ort.InferenceSession:
        """The ONNX Runtime session (for Polygraphy's OnnxrtRunner)."""
        return self._session

    @property
    def providers(self) -> list[str]:
        """The providers the session actually uses, best first."""
        return self._session.get_providers()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Deblur (N, 3, H, W) float32 in [0, 1]; H and W may be anything the file allows."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise SaphnetError(f"expected a (N, 3, H, W) batch, got shape {batch.shape}")
        static = self.artefact.static_hw
        if static is not None and batch.shape[2:] != static:
            raise SaphnetError(
                f"{self.path.name} is a static {static[0]}x{static[1]} export, given "
                f"{batch.shape[2]}x{batch.shape[3]}; run it through saphnet.runtime.deblur "
                "(tiles of its size) or export without --static"
            )
        feed = np.ascontiguousarray(batch, dtype=np.float32)
        (out,) = self._session.run([self._output], {self._input: feed})
        return out

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory with it)."""
        self._session = None  # type: ignore[assignment]
