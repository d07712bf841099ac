"""Build a TensorRT engine from a SAPHNet ONNX file.

We parse (the parser must see the model without the PDFConv function when our plugin
is registered, see :mod:`.pdf_layers`), then Polygraphy's ``CreateConfig`` ->
``EngineBytesFromNetwork`` build; this module decides what they are given:

* precision: TensorRT 10 builds FP16 from an FP32 network with the builder's FP16
  flag; TensorRT 11 builds only strongly typed networks, so FP16 must come from an
  FP16 ONNX file (``saphnet export --precision fp16``). An FP16 ONNX file is built
  strongly typed on both. TF32 stays off so an FP32 engine is FP32. INT8 comes from
  the Q/DQ nodes of a ``saphnet quantize --target tensorrt`` file: TensorRT 10 builds
  it with the INT8 and FP16 flags (unquantized layers, our plugin included, in FP16),
  TensorRT 11 strongly typed from the Q/DQ types.
* the optimization profile (trtexec-style shapes), the timing cache, the workspace;
* the plugin library, registered before parsing; with it the parser gets the model
  without the PDFConv function and every PDFConv node must become our plugin layer
  (else the build is refused); without it the nodes build from their ONNX function;
* an atomic write of the engine plus its sidecar (:mod:`.sidecar`), which records
  what runs the PDF layers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import onnx

from .. import __version__
from ..errors import SaphnetError
from ..export.op_forms import name_pdf_nodes, strip_pdf_function
from ..files import atomic_output, check_writable, sha256_file
from ..plugins import NoTensorRTPluginError
from .artefacts import image_io, load_onnx
from .fp16_cost import warn_deformconv_fp16
from .pdf_layers import PdfOps, check_plugin_layers, pdf_ops
from .profiles import DEFAULT_SHAPES, Profile, check_profile, format_shape, parse_profile
from .sidecar import PDF_IMPLEMENTATIONS, Sidecar, sidecar_path, write_sidecar
from .trt_env import (
    environment,
    has_fp16_flag,
    import_tensorrt,
    init_builtin_plugins,
    load_plugin,
    resolve_plugin,
    tensorrt_logger,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxSummary:
    """What the builder needs to know about an ONNX file, read without its weights."""

    input_name: str
    input_dims: tuple[int | str, ...]
    """Static sizes as ints, dynamic ones as their names."""
    fp16: bool
    pdf: PdfOps = field(default_factory=PdfOps)
    """Its PDF ops: saphnet::PDFConv nodes (which the plugin implements) and the others."""
    qdq: str | None = None
    """Its explicit quantization: None, ``int8`` (symmetric, what TensorRT takes) or
    ``uint8`` (ONNX Runtime CPU's asymmetric activations)."""

    @property
    def custom_op(self) -> bool:
        return self.pdf.custom > 0


def inspect_onnx(path: Path) -> OnnxSummary:
    """Input, precision and custom-op use of an ONNX file; one-line errors
    (:mod:`.artefacts`) for files that are not ONNX, not one image in and one out, or
    whose external data points outside their folder. Files from elsewhere (no saphnet
    metadata) are built too."""
    model = load_onnx(path)
    name, dims = image_io(path, model)
    image = next(i for i in model.graph.input if i.name == name)
    fp16 = image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 or any(
        t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer
    )
    name_pdf_nodes(model)  # as parse_onnx hands them to the parser (layers take node names)
    return OnnxSummary(name, dims, fp16, pdf_ops(model), qdq_types(model))


def qdq_types(model: onnx.ModelProto) -> str | None:
    """``uint8`` when any QuantizeLinear has a uint8 zero point, ``int8`` when the file
    has Q/DQ nodes otherwise, None without them."""
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    if not quantize:
        return None
    types = {t.name: t.data_type for t in model.graph.initializer}
    unsigned = any(
        len(n.input) > 2 and types.get(n.input[2]) == onnx.TensorProto.UINT8 for n in quantize
    )
    return "uint8" if unsigned else "int8"


def default_profile(summary: OnnxSummary) -> Profile:
    """The static shape of a static-shape export, else :data:`DEFAULT_SHAPES`."""
    if len(summary.input_dims) == 4 and all(
        isinstance(d, int) and d > 0 for d in summary.input_dims
    ):
        shape = tuple(summary.input_dims)
        profile = Profile(summary.input_name, shape, shape, shape)  # type: ignore[arg-type]
        check_profile(profile)
        return profile
    return parse_profile(DEFAULT_SHAPES, summary.input_name)


def _check_profile_fits(summary: OnnxSummary, profile: Profile) -> None:
    if profile.name != summary.input_name:
        raise SaphnetError(
            f"--shapes names input {profile.name!r}, the model's input is {summary.input_name!r}"
        )
    for axis, dim in enumerate(summary.input_dims):
        if isinstance(dim, int) and dim > 0 and not (profile.min[axis] == profile.max[axis] == dim):
            raise SaphnetError(
                f"the model's input has a static size {dim} on axis {axis}, --shapes asks "
                f"{format_shape(profile.min)}:{format_shape(profile.max)}; export with dynamic shapes or match it"
            )


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"
    shapes: str | None = None
    timing_cache: Path | None = None
    plugins: Path | None = None
    workspace_mb: int | None = None
    force: bool = False


def build_engine(
    onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], options: BuildOptions
) -> Path:
    """Build, write ``engine_path`` and its sidecar atomically, return ``engine_path``."""
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if options.precision not in ("fp32", "fp16", "int8"):
        raise SaphnetError(f"precision {options.precision!r} is not fp32, fp16 or int8")
    check_writable(engine_path, options.force)
    check_writable(sidecar_path(engine_path), options.force)
    summary = inspect_onnx(onnx_path)
    profile = (
        parse_profile(options.shapes, summary.input_name)
        if options.shapes
        else default_profile(summary)
    )
    _check_profile_fits(summary, profile)

    strongly_typed, fp16_flag = _precision_mode(trt, summary, options.precision, onnx_path)
    plugin = (
        resolve_plugin(options.plugins, required=False)
        if summary.custom_op or options.plugins
        else None
    )
    plugin_sha, lacking = None, ""
    if plugin is not None:
        try:
            plugin_sha = load_plugin(trt, plugin)
        except NoTensorRTPluginError:
            if options.plugins is not None:
                raise  # asked for by name: refuse rather than build without it
            # Found, not given (plain `make plugins`): the plugin is optional here.
            plugin, lacking = None, f" with TensorRT ({plugin} was built without it)"
    use_plugin = plugin is not None and summary.custom_op
    implementation, ops = summary.pdf.implementation(plugin=use_plugin)
    if summary.custom_op and not use_plugin:
        if summary.pdf.function_body is None:
            raise SaphnetError(
                f"{onnx_path.name} has saphnet::PDFConv nodes without their ONNX function and no "
                f"plugin library{lacking} was found; build it with `make plugins "
                "CMAKE_ARGS=-DTENSORRT_ROOT=<TensorRT>` or pass --plugins LIB"
            )
        log.warning(
            "no saphnet plugin library%s: TensorRT builds the %d saphnet::PDFConv nodes from "
            "their ONNX function (%s), not our kernels; run `make plugins "
            "CMAKE_ARGS=-DTENSORRT_ROOT=<TensorRT>` or pass --plugins LIB",
            lacking,
            ops,
            PDF_IMPLEMENTATIONS[implementation].split(": ")[-1],
        )
    warn_deformconv_fp16(options.precision, implementation, profile.max[3])
    env = environment(trt, plugin_sha if use_plugin else None)

    # TensorRT 11 accepts (and ignores) the flag: every network is strongly typed there.
    typed_flag = strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    parsed = parse_onnx(trt, onnx_path, typed_flag, without_pdf_function=use_plugin)
    plugin_layers = (
        check_plugin_layers(trt, parsed[1], summary.pdf, onnx_path.name, plugin=use_plugin)
        if summary.custom_op
        else 0
    )
    log.info(
        "building %s (%s, %s) for %s, shapes %s, PDF layers: %s",
        engine_path.name,
        options.precision,
        "strongly typed"
        if strongly_typed
        else "INT8 + FP16 builder flags"
        if fp16_flag and options.precision == "int8"
        else "FP16 builder flag"
        if fp16_flag
        else "FP32",
        env.gpu_name,
        " ".join(profile.trtexec().values()),
        implementation,
    )
    start = time.perf_counter()
    data = serialize_network(trt, parsed, profile, options, fp16_flag, onnx_path.name)
    log.info("built in %.1f s, %.1f MB", time.perf_counter() - start, data.nbytes / 1e6)

    sidecar = Sidecar(
        tensorrt=env.tensorrt,
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        precision=options.precision,
        strongly_typed=strongly_typed,
        profile=profile.as_dict(),
        onnx_sha256=sha256_file(onnx_path),
        engine_sha256=hashlib.sha256(data).hexdigest(),
        plugin_sha256=env.plugin_sha256,
        plugin_file=plugin.name if plugin is not None and env.plugin_sha256 else None,
        pdf_implementation=implementation,
        pdf_ops=ops,
        pdf_plugin_layers=plugin_layers,
        onnx_file=onnx_path.name,
        workspace_mb=options.workspace_mb,
        saphnet_version=__version__,
        extra={"trtexec_shapes": profile.trtexec()},
    )
    with atomic_output(engine_path, force=options.force) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
        write_sidecar(engine_path, sidecar, force=options.force)
    return engine_path


def parse_onnx(
    trt: ModuleType,
    onnx_path: Path,
    strongly_typed: bool,
    without_pdf_function: bool,
) -> tuple[object, object, object]:
    """(builder, network, parser) of ``onnx_path``, TensorRT's own plugins registered.

    ``without_pdf_function``: the parser gets the model without the PDFConv function
    and with unique PDFConv node names (the file stays as it is), from bytes, with the
    file's path so that external data still resolves next to it; only the graph is
    serialized, never the weights.
    """
    init_builtin_plugins(trt)
    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if without_pdf_function:
        model = strip_pdf_function(onnx.load(str(onnx_path), load_external_data=False))
        # Unique, non-empty PDFConv names (a file from elsewhere may lack them): TensorRT
        # names each layer after its node, and 10.0-10.3 leave us only that name to
        # recognise our plugin layers by (pdf_layers.count_plugin_layers).
        name_pdf_nodes(model)
        ok = parser.parse(model.SerializeToString(), str(onnx_path.resolve()))
    else:
        ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        raise SaphnetError(
            f"TensorRT {trt.__version__} could not parse {onnx_path.name}: "
            f"{errors[0] if errors else 'see its log above'}"
        )
    return builder, network, parser


def serialize_network(
    trt: ModuleType,
    parsed: tuple[object, object, object],
    profile: Profile,
    options: BuildOptions,
    fp16_flag: bool,
    onnx_name: str,
) -> memoryview:
    """The serialized engine, built by Polygraphy with our profile, precision flags,
    timing cache and workspace limit (TF32 off so an FP32 engine is FP32)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork
    from polygraphy.backend.trt import Profile as PolygraphyProfile
    from polygraphy.exception import PolygraphyException

    pools = (
        {trt.MemoryPoolType.WORKSPACE: options.workspace_mb << 20} if options.workspace_mb else None
    )
    trt_profile = PolygraphyProfile().add(
        profile.name, min=profile.min, opt=profile.opt, max=profile.max
    )
    cache = str(options.timing_cache) if options.timing_cache else None
    config = CreateConfig(
        fp16=fp16_flag,
        int8=fp16_flag and options.precision == "int8",  # explicit Q/DQ: no calibrator
        tf32=False,
        profiles=[trt_profile],
        load_timing_cache=cache,
        memory_pool_limits=pools,
    )
    try:
        engine_bytes = EngineBytesFromNetwork(parsed, config=config, save_timing_cache=cache)()
    except PolygraphyException as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else "see the log above"
        raise SaphnetError(f"TensorRT could not build {onnx_name}: {message}") from None
    return memoryview(engine_bytes)


def _precision_mode(
    trt: object, summary: OnnxSummary, precision: str, onnx_path: Path
) -> tuple[bool, bool]:
    """(strongly_typed, fp16_flag) for this TensorRT and ONNX file, or a one-line error;
    an INT8 build on TensorRT 10 sets the INT8 flag beside the FP16 one."""
    strongly_required = not has_fp16_flag(trt)
    if summary.qdq is not None or precision == "int8":
        return _int8_mode(summary, precision, onnx_path, strongly_required)
    if summary.fp16:
        if precision != "fp16":
            raise SaphnetError(
                f"{onnx_path.name} is an FP16 model; build it with --precision fp16 or export an FP32 one"
            )
        return True, False
    if precision == "fp16":
        if strongly_required:
            raise SaphnetError(
                f"TensorRT {trt.__version__} builds FP16 only from an FP16 ONNX file (strongly typed); "  # type: ignore[attr-defined]
                "run saphnet export --precision fp16 and build that"
            )
        return False, True
    return strongly_required, False


def _int8_mode(
    summary: OnnxSummary, precision: str, onnx_path: Path, strongly_required: bool
) -> tuple[bool, bool]:
    """INT8 from a tensorrt-target quantized file: strongly typed where TensorRT
    requires it (11), else the INT8 + FP16 flags (10)."""
    if summary.qdq is None:
        raise SaphnetError(
            f"{onnx_path.name} has no Q/DQ nodes; run saphnet quantize {onnx_path.name} -o "
            "int8.onnx --target tensorrt and build that with --precision int8"
        )
    if summary.qdq == "uint8":
        raise SaphnetError(
            f"{onnx_path.name} was quantized for ONNX Runtime CPU (uint8 activations); TensorRT "
            "takes symmetric INT8: run saphnet quantize --target tensorrt"
        )
    if precision != "int8":
        raise SaphnetError(
            f"{onnx_path.name} is an INT8 model (Q/DQ nodes); build it with --precision int8"
        )
    return (True, False) if strongly_required else (False, True)
