"""The JSON sidecar written beside every engine, and its check at load.

A TensorRT engine runs only with the TensorRT version, the GPU architecture and
(for our op) the plugin library it was built with; otherwise TensorRT fails deep
inside deserialization with a message that does not say what to do. The sidecar
records what the engine depends on so that a mismatch becomes one line naming the
difference and the fix. Pure Python (no TensorRT, no GPU) so it is tested everywhere.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SaphnetError
from ..files import atomic_output

log = logging.getLogger(__name__)

FORMAT = "saphnet-engine"
VERSION = 1


PDF_IMPLEMENTATIONS = {
    "plugin": "our saphnet PDFConv plugin",
    "function-deformconv": "the PDFConv function body: TensorRT's built-in DeformConv plugin",
    "function-decomposed": "the PDFConv function body: GridSample and Conv layers",
    "tensorrt-deformconv": "ONNX DeformConv: TensorRT's built-in DeformConv plugin",
    "decomposed": "GridSample and Conv layers",
    "none": "no PDF op in the model",
    "unknown": "a model not written by saphnet export",
}
"""Values of :attr:`Sidecar.pdf_implementation` and what each means."""


class EngineMismatchError(SaphnetError):
    """The engine was built for another GPU, TensorRT or plugin library."""


@dataclass(frozen=True)
class Environment:
    """What the engine depends on, as found on this machine (or at build time)."""

    tensorrt: str
    gpu_name: str
    compute_capability: str
    plugin_sha256: str | None = None
    """SHA-256 of the plugin library loaded (None: no plugin)."""


@dataclass(frozen=True)
class Sidecar:
    """Everything recorded about one engine build."""

    tensorrt: str
    gpu_name: str
    compute_capability: str
    precision: str
    strongly_typed: bool
    profile: dict[str, object]
    onnx_sha256: str
    engine_sha256: str
    plugin_sha256: str | None = None
    """Set only when the engine's layers use our plugin: the load demands that library."""
    plugin_file: str | None = None
    """File name only, for the message: a library is never loaded from a path read here."""
    pdf_implementation: str | None = None
    """What runs the PDF layers (:data:`PDF_IMPLEMENTATIONS`); None in sidecars written
    before saphnet recorded it, which demand the plugin whenever ``plugin_sha256`` is set."""
    pdf_ops: int | None = None
    """PDF ops in the ONNX file (``saphnet::PDFConv`` nodes for the custom form)."""
    pdf_plugin_layers: int | None = None
    """Network layers that are our ``PDFConv`` plugin (equals ``pdf_ops`` for "plugin")."""
    onnx_file: str = ""
    workspace_mb: int | None = None
    saphnet_version: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def environment(self) -> Environment:
        return Environment(
            self.tensorrt, self.gpu_name, self.compute_capability, self.plugin_sha256
        )


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def write_sidecar(engine: str | os.PathLike[str], sidecar: Sidecar, force: bool = False) -> Path:
    """Write the sidecar atomically beside ``engine``."""
    path = sidecar_path(engine)
    data = {"format": FORMAT, "version": VERSION, **asdict(sidecar)}
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine: str | os.PathLike[str]) -> Sidecar | None:
    """The sidecar of ``engine``, None when there is none (e.g. an engine from trtexec)."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SaphnetError(
            f"{path} is not readable JSON ({exc}); rebuild the engine with saphnet build"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SaphnetError(
            f"{path} is not a saphnet engine sidecar; rebuild the engine with saphnet build"
        )
    if data.get("version") != VERSION:
        raise SaphnetError(
            f"{path} has sidecar version {data.get('version')}, this saphnet reads {VERSION}; "
            "rebuild the engine with saphnet build"
        )
    known = set(Sidecar.__dataclass_fields__)
    try:
        return Sidecar(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise SaphnetError(
            f"{path} lacks fields ({exc}); rebuild the engine with saphnet build"
        ) from None


def check_sidecar(
    engine: str | os.PathLike[str],
    sidecar: Sidecar,
    here: Environment,
    engine_sha256: str | None = None,
) -> None:
    """Raise EngineMismatchError (one line: what differs, how to fix) when the engine
    cannot run here. A different GPU model of the same architecture runs the engine
    (TensorRT tunes for one model but the code is the same), so that only warns."""
    name = Path(engine).name
    rebuild = f"rebuild it here: saphnet build MODEL.onnx -o {name} --force"
    if engine_sha256 is not None and engine_sha256 != sidecar.engine_sha256:
        raise EngineMismatchError(
            f"{sidecar_path(engine).name} describes another engine than {name} (checksums differ); {rebuild}"
        )
    if sidecar.tensorrt != here.tensorrt:
        raise EngineMismatchError(
            f"{name} was built with TensorRT {sidecar.tensorrt}, this machine has {here.tensorrt}; {rebuild}"
        )
    if sidecar.compute_capability != here.compute_capability:
        raise EngineMismatchError(
            f"{name} was built for {sidecar.gpu_name} (compute capability {sidecar.compute_capability}), "
            f"this GPU is {here.gpu_name} ({here.compute_capability}); {rebuild}"
        )
    if sidecar.gpu_name != here.gpu_name:
        log.warning(
            "%s was tuned on %s and runs on %s (same architecture): rebuild for best speed",
            name,
            sidecar.gpu_name,
            here.gpu_name,
        )
    if sidecar.plugin_sha256 is not None:
        if here.plugin_sha256 is None:
            raise EngineMismatchError(
                f"{name} needs the saphnet plugin library ({sidecar.plugin_file}), none is loaded; "
                "build it with `make plugins` or pass --plugins LIB"
            )
        if here.plugin_sha256 != sidecar.plugin_sha256:
            raise EngineMismatchError(
                f"{name} was built with another plugin library ({sidecar.plugin_file}, "
                f"sha256 {sidecar.plugin_sha256[:12]}), the one loaded has {here.plugin_sha256[:12]}; {rebuild}"
            )
