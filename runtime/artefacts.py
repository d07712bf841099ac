"""One place that opens a model artefact and says in one line what is wrong with it.

An artefact is what the toolkit writes: an ONNX file from ``saphnet export`` (dynamic
or static shape, FP32 or FP16, any op form, quantized or not: the check is about the
metadata and the graph's I/O, never about which ops are inside), a TensorRT engine
with its JSON sidecar from ``saphnet build``, or a weights file from ``SAPHNet.save``.
Every command that takes a model (deblur, serve, eval, compare, bench, triton-repo,
build) opens it here before anything heavy loads, so a missing, empty, damaged or
foreign file is refused with the same line everywhere (a ``SaphnetError``: exit 2),
never a runtime's traceback. Torch-free: the ONNX Runtime path stays deployable.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SaphnetError
from ..sizes import check_static_shape

if TYPE_CHECKING:
    import onnx

    from ..export.metadata import ExportMetadata
    from ..model.config import SAPHNetConfig
    from .sidecar import Sidecar

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
WEIGHTS_SUFFIXES = (".safetensors",)
SUFFIXES = {"onnx": ONNX_SUFFIXES, "engine": ENGINE_SUFFIXES, "weights": WEIGHTS_SUFFIXES}
KINDS = tuple(SUFFIXES)

_MAKE = {
    "onnx": "make one with saphnet export",
    "engine": "make one with saphnet build",
    "weights": "give a file written by SAPHNet.save (saphnet train)",
}
_NAMES = {"onnx": "an ONNX file", "engine": "a TensorRT engine", "weights": "a weights file"}
_INSTEAD = {
    "weights": "export it first: saphnet export --weights {p} -o model.onnx",
    "engine": "give the ONNX file it was built from",
    "onnx": "build an engine from it: saphnet build {p} -o model.engine",
}
"""What to do with a file of a kind the command does not take (weights excepted:
a command that takes weights takes them as --weights FILE.safetensors)."""


@dataclass(frozen=True)
class Artefact:
    """A model file that passed :func:`open_artefact`: what it is and what it takes."""

    path: Path
    kind: str
    """``onnx``, ``engine`` or ``weights``."""
    metadata: ExportMetadata | None = None
    """ONNX: what ``saphnet export`` recorded (None: a foreign file, where allowed)."""
    input_name: str = ""
    input_dims: tuple[int | str, ...] = ()
    """ONNX: the image input's (N, C, H, W), an int where fixed, a name where dynamic."""
    sidecar: Sidecar | None = None
    """Engine: its sidecar (None: an engine from elsewhere, e.g. trtexec)."""
    config: SAPHNetConfig | None = None
    """Weights: the network config stored in the file."""

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """(H, W) of a static-shape ONNX export; None for dynamic H and W."""
        h, w = self.input_dims[2:4] if len(self.input_dims) == 4 else (None, None)
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def kind_of(path: Path) -> str | None:
    """The artefact kind a file name says (by its suffix), None for none."""
    suffix = path.suffix.lower()
    return next((kind for kind, s in SUFFIXES.items() if suffix in s), None)


def open_artefact(
    path: str | os.PathLike[str],
    accept: Collection[str] = KINDS,
    foreign_onnx: bool = False,
) -> Artefact:
    """Check ``path`` is an artefact of a kind in ``accept`` that saphnet can run.

    Raises a one-line SaphnetError naming the file, the problem and the fix.
    ``foreign_onnx`` lets an ONNX file without saphnet metadata through (``build``
    takes any single-image model) as long as its I/O is SAPHNet's.
    """
    p = Path(path)
    kind = kind_of(p)
    wanted = " or ".join(_NAMES[k] for k in accept)
    if kind is None:
        suffixes = ", ".join(s for k in accept for s in SUFFIXES[k])
        raise SaphnetError(f"{p}: expected {wanted} ({suffixes})")
    if kind not in accept:
        fix = "give a .safetensors file" if set(accept) == {"weights"} else _INSTEAD[kind]
        raise SaphnetError(f"{p} is {_NAMES[kind]}, this takes {wanted}; {fix.format(p=p)}")
    _check_file(p, kind)
    if kind == "onnx":
        return _open_onnx(p, foreign_onnx)
    if kind == "engine":
        from .sidecar import read_sidecar

        return Artefact(p, kind, sidecar=read_sidecar(p))
    from ..weights import read_config

    return Artefact(p, kind, config=read_config(p))


def _check_file(p: Path, kind: str) -> None:
    if not p.exists():
        raise SaphnetError(f"{p} does not exist; {_MAKE[kind]}")
    if not p.is_file():
        raise SaphnetError(f"{p} is not a file; give {_NAMES[kind]}")
    if p.stat().st_size == 0:
        raise SaphnetError(f"{p} is empty (an interrupted copy or write?); {_MAKE[kind]}")


def load_onnx(path: Path) -> onnx.ModelProto:
    """The graph of ``path`` without external weights, or a one-line SaphnetError for
    a file that is not ONNX or whose external data points outside its folder."""
    import onnx

    _check_file(path, "onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a non-ONNX file
        raise SaphnetError(
            f"{path} is not an ONNX model ({type(exc).__name__}: damaged or another format); "
            f"{_MAKE['onnx']}"
        ) from None
    if not model.graph.node:
        raise SaphnetError(f"{path} is not an ONNX model (no graph); {_MAKE['onnx']}")
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if not (folder / location).resolve().is_relative_to(folder):
                raise SaphnetError(
                    f"{path}: external data {location!r} points outside the model's folder; "
                    "refusing to read it"
                )
    return model


def _open_onnx(path: Path, foreign_ok: bool) -> Artefact:
    from ..export.metadata import ExportMetadata

    model = load_onnx(path)
    props = {p.key: p.value for p in model.metadata_props}
    try:
        metadata: ExportMetadata | None = ExportMetadata.from_props(props)
    except KeyError as exc:
        if not foreign_ok:
            raise SaphnetError(
                f"{path} has no saphnet metadata ({exc.args[0]}): it was not written by "
                f"saphnet export; {_MAKE['onnx']}"
            ) from None
        metadata = None
    except ValueError:
        raise SaphnetError(f"{path} has damaged saphnet metadata; {_MAKE['onnx']} again") from None
    name, dims = image_io(path, model)
    artefact = Artefact(path, "onnx", metadata=metadata, input_name=name, input_dims=dims)
    if artefact.static_hw is not None:
        try:
            check_static_shape(*artefact.static_hw)
        except SaphnetError as exc:
            raise SaphnetError(f"{path}: {exc}; export it again") from None
    return artefact


def image_io(path: Path, model: onnx.ModelProto) -> tuple[str, tuple[int | str, ...]]:
    """The one image input's name and dims; a graph that is not one float
    (N, 3, H, W) image in and one out is not a SAPHNet model. saphnet exports FP32 I/O
    (FP16 files too); FP16 I/O is let through for engines built from other files."""
    import onnx

    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    fix = "export it with saphnet export"
    if len(inputs) != 1 or len(outputs) != 1:
        raise SaphnetError(
            f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; a SAPHNet model has "
            f"one image input and one output; {fix}"
        )
    shapes = {}
    for role, value in (("input", inputs[0]), ("output", outputs[0])):
        tensor = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tensor.shape.dim
        )
        channels_ok = len(dims) == 4 and (dims[1] == 3 or isinstance(dims[1], str))
        if tensor.elem_type not in float_types or not channels_ok:
            shape = "x".join(str(d) for d in dims) or "scalar"
            kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
            raise SaphnetError(
                f"{path}: {role} {value.name!r} is {kind} {shape}, a SAPHNet model's is "
                f"FLOAT (or FLOAT16) Nx3xHxW; {fix}"
            )
        shapes[role] = dims
    return inputs[0].name, shapes["input"]
