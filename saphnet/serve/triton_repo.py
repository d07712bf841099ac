"""Model repositories for a stock ``tritonserver``: ``saphnet triton-repo``.

Three kinds, one model named ``saphnet`` each, every ``config.pbtxt`` built as
Triton's own ``ModelConfig`` protobuf (the one ``tritonclient`` ships) and printed in
its text format, so what Triton parses is what we built:

* ``python``: the Python backend running ``saphnet.runtime`` (ONNX file or engine
  beside it): the ``saphnet serve`` contract, batching and tiling included.
* ``onnx``: the onnxruntime backend. The ONNX file gets the same contract
  (``image`` UINT8 [batch, H, W, 3] -> ``deblurred``) by a few standard nodes around
  the network (Cast, Div, Transpose ... Round, Clip, Cast), so clients need not know
  the float NCHW layout; images are run whole (no tiling).
* ``tensorrt``: a ``tensorrt_plan``. An engine's I/O is what it was built with (float
  NCHW, sides a multiple of 16 inside the profile), so the config states exactly that:
  ``max_batch_size`` and dims come from the profile in the engine's sidecar. Triton
  only ``dlopen``s plugin libraries, so its command line names
  ``libsaphnet_plugins_autoregister.so``, which registers ``PDFConv`` when loaded.

Each repository has a README with the ``tritonserver`` command line. The whole
folder is written beside its destination and renamed into place, so a failure
leaves no half repository.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import SaphnetError
from ..plugins import AUTOREGISTER_LIBRARY_NAME, LIBRARY_NAME
from ..runtime.artefacts import ENGINE_SUFFIXES, open_artefact
from . import DEFAULT_MAX_SIDE, INPUT_NAME, MEMORY_BUDGET_MB, MODEL_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

KINDS = ("python", "onnx", "tensorrt")
ACCEPTS = {"python": ("onnx", "engine"), "onnx": ("onnx",), "tensorrt": ("engine",)}
"""The model artefacts (``runtime.artefacts``) each kind of repository takes."""
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
HOST_PLUGIN_DIR = PurePosixPath("/opt/saphnet")
"""Where the README places the plugin libraries on the Triton host unless told."""


@dataclass(frozen=True)
class RepoOptions:
    kind: str = "python"
    max_batch: int = 4
    batch_delay_us: int = 2000
    instances: int = 1
    max_side: int = DEFAULT_MAX_SIDE
    memory_budget_mb: int = MEMORY_BUDGET_MB
    plugin_library: str | None = None
    """Where ``libsaphnet_plugins.so`` lies on the Triton host (written into the README
    and, for the python kind, the config), its autoregister companion beside it: paths
    on that machine, not read here."""

    def host_libraries(self) -> tuple[str, str]:
        """(autoregister library, main library) on the Triton host: the first for hosts
        that only ``dlopen`` (Triton's ``plugins=``, ``LD_PRELOAD``, ``trtexec
        --staticPlugins``), the second for ``getCreators`` (``trtexec --dynamicPlugins``,
        saphnet itself)."""
        given = PurePosixPath(self.plugin_library or HOST_PLUGIN_DIR / LIBRARY_NAME)
        main = given.parent / LIBRARY_NAME if given.name == AUTOREGISTER_LIBRARY_NAME else given
        return str(given.parent / AUTOREGISTER_LIBRARY_NAME), str(main)


def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise SaphnetError(
            "writing Triton configs needs tritonclient: pip install 'saphnet[serve]'"
        ) from None
    return model_config_pb2


def config_text(config) -> str:
    """A ``ModelConfig`` in the protobuf text format Triton reads."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str):
    """``config.pbtxt`` text -> ``ModelConfig`` (raises on anything Triton would reject
    as malformed)."""
    from google.protobuf import text_format

    return text_format.Parse(text, _model_config_pb2().ModelConfig())


def _base_config(options: RepoOptions, max_batch: int, gpu: bool):
    mc = _model_config_pb2()
    config = mc.ModelConfig(name=MODEL_NAME, max_batch_size=max_batch)
    if max_batch > 1:
        config.dynamic_batching.max_queue_delay_microseconds = options.batch_delay_us
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=options.instances, kind=kind)
    return config, mc


def _image_io(config, mc, hw: tuple[int, int] | None = None) -> None:
    """UINT8 [H, W, 3] in and out; H and W any size unless the model fixes them."""
    dims = [*hw, 3] if hw else [-1, -1, 3]
    config.input.add(name=INPUT_NAME, data_type=mc.TYPE_UINT8, dims=dims)
    config.output.add(name=OUTPUT_NAME, data_type=mc.TYPE_UINT8, dims=dims)


def python_repo(model: Path, folder: Path, options: RepoOptions) -> str:
    """``saphnet/1/model.py`` + the model file; returns config.pbtxt text."""
    is_engine = model.suffix.lower() in ENGINE_SUFFIXES
    version = folder / MODEL_NAME / "1"
    name = "model" + model.suffix.lower()
    shutil.copyfile(PYTHON_MODEL, version / "model.py")
    shutil.copyfile(model, version / name)
    sidecar = model.with_name(model.name + ".json")
    if is_engine and sidecar.is_file():
        shutil.copyfile(sidecar, version / (name + ".json"))
    params = {"model_file": name, "backend": "tensorrt" if is_engine else "onnxruntime"}
    return python_config(options, params, gpu=is_engine)


def python_config(options: RepoOptions, params: dict[str, str], gpu: bool) -> str:
    """config.pbtxt of the Python-backend model (``triton_python_model.py``): the
    batching and request limits of ``options`` and the ``params`` that say what it
    opens (``model_file`` beside it or ``weights``, ``backend``, ``device``)."""
    config, mc = _base_config(options, options.max_batch, gpu=gpu)
    config.backend = "python"
    _image_io(config, mc)
    params = {
        **params,
        "max_side": str(options.max_side),
        "memory_budget_mb": str(options.memory_budget_mb),
    }
    if options.plugin_library:
        params["plugin_library"] = options.plugin_library
    for key, value in params.items():
        config.parameters[key].string_value = value
    return config_text(config)


def wrap_uint8_hwc(model_path: Path, out: Path, hw: tuple[int, int] | None = None) -> None:
    """Write ``model_path`` with the serving contract around it: ``image`` UINT8
    (N, H, W, 3) -> ``deblurred`` UINT8 (N, H, W, 3), converted exactly as
    ``saphnet deblur`` converts (x / 255 in float32; round half to even, clip).
    ``hw``: a static-shape file's (H, W), declared as the wrapper's fixed size."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(model_path))  # checked by write_repository: one float32 image in, one out
    graph = m.graph
    x, y = graph.input[0].name, graph.output[0].name

    def const(name: str, value: float) -> onnx.NodeProto:
        tensor = helper.make_tensor(name, TensorProto.FLOAT, [], [value])
        return helper.make_node("Constant", [], [name], value=tensor, name=name)

    pre = [
        const("serve_255", 255.0),
        const("serve_0", 0.0),
        helper.make_node("Cast", [INPUT_NAME], ["serve_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["serve_float", "serve_255"], ["serve_unit"]),
        helper.make_node("Transpose", ["serve_unit"], [x], perm=[0, 3, 1, 2]),
    ]
    post = [
        helper.make_node("Mul", [y, "serve_255"], ["serve_scaled"]),
        helper.make_node("Round", ["serve_scaled"], ["serve_rounded"]),
        helper.make_node("Clip", ["serve_rounded", "serve_0", "serve_255"], ["serve_clipped"]),
        helper.make_node("Cast", ["serve_clipped"], ["serve_u8"], to=TensorProto.UINT8),
        helper.make_node("Transpose", ["serve_u8"], [OUTPUT_NAME], perm=[0, 2, 3, 1]),
    ]
    nodes = [*pre, *graph.node, *post]
    del graph.node[:]
    graph.node.extend(nodes)
    dims = ["batch", *(hw or ("height", "width")), 3]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, dims))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, dims))
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(out))


def onnx_repo(model: Path, folder: Path, options: RepoOptions) -> str:
    artefact = open_artefact(model, ("onnx",))
    wrap_uint8_hwc(model, folder / MODEL_NAME / "1" / "model.onnx", artefact.static_hw)
    if artefact.metadata and artefact.metadata.pdf_op == "custom":
        log.info(
            "%s holds saphnet::PDFConv with its ONNX function: Triton's ONNX Runtime "
            "inlines the function (DeformConv, ONNX Runtime >= 1.25)",
            model.name,
        )
    config, mc = _base_config(options, options.max_batch, gpu=False)
    config.backend = "onnxruntime"
    _image_io(config, mc, artefact.static_hw)
    return config_text(config)


def tensorrt_repo(model: Path, folder: Path, options: RepoOptions) -> str:
    from ..runtime.profiles import Profile, format_shape
    from ..runtime.sidecar import read_sidecar

    sidecar = read_sidecar(model)
    if sidecar is None:
        raise SaphnetError(
            f"{model.name} has no sidecar {model.name}.json; build the engine with saphnet build"
        )
    profile = Profile.from_dict(sidecar.profile)
    if profile.min[0] > 1:
        one = format_shape((1, *profile.min[1:]))
        raise SaphnetError(
            f"{model.name}'s profile takes batches of {profile.min[0]} to {profile.max[0]}, but "
            "Triton runs a lone request as a batch of 1, which this engine refuses; rebuild it "
            f"with saphnet build --shapes {profile.name}:{one}:{format_shape(profile.opt)}:"
            f"{format_shape(profile.max)}"
        )
    shutil.copyfile(model, folder / MODEL_NAME / "1" / "model.plan")
    max_batch = min(options.max_batch, profile.max[0])
    config, mc = _base_config(options, max_batch, gpu=True)
    config.backend = "tensorrt"
    dims = [hi if lo == hi else -1 for lo, hi in zip(profile.min, profile.max, strict=True)]
    # Triton's batch dimension is the profile's N; the dims are C, H, W.
    config.input.add(name=profile.name, data_type=mc.TYPE_FP32, dims=dims[1:])
    # The output name saphnet export gives (the sidecar records the input's).
    config.output.add(name="output", data_type=mc.TYPE_FP32, dims=dims[1:])
    return config_text(config)


WRITERS = {"python": python_repo, "onnx": onnx_repo, "tensorrt": tensorrt_repo}


def readme(kind: str, model: Path, options: RepoOptions, config: str) -> str:
    """The repository's README: how to start tritonserver on it and what to send."""
    autoregister, plugin = options.host_libraries()
    lines = [
        f"# Triton model repository: SAPHNet ({kind})",
        "",
        f"Written by `saphnet triton-repo --kind {kind}` from `{model.name}`.",
        "",
        "## Start the server",
        "",
        "```bash",
    ]
    if kind == "python":
        lines += [
            "# In the Triton container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3), once:",
            "pip install saphnet            # ONNX files; saphnet[tensorrt] for engines",
            "tritonserver --model-repository=$PWD --http-address=127.0.0.1 --grpc-address=127.0.0.1",
        ]
    elif kind == "onnx":
        lines += [
            "tritonserver --model-repository=$PWD --http-address=127.0.0.1 --grpc-address=127.0.0.1",
        ]
    else:
        lines += [
            "tritonserver --model-repository=$PWD \\",
            f'    --backend-config=tensorrt,plugins="{autoregister}" \\',
            "    --http-address=127.0.0.1 --grpc-address=127.0.0.1",
            f"# or: LD_PRELOAD={autoregister} tritonserver --model-repository=$PWD",
        ]
    lines += ["```", "", "Drop the `--*-address` flags to listen on every interface.", ""]
    if kind == "tensorrt":
        shapes = _opt_shape(model)
        lines += [
            f"Triton only `dlopen`s the libraries in `plugins=` (as `LD_PRELOAD` and "
            f"`trtexec --staticPlugins` do), so it gets `{AUTOREGISTER_LIBRARY_NAME}`, which "
            f"registers `PDFConv` when loaded; `{LIBRARY_NAME}` registers only through "
            "`getCreators` (`trtexec --dynamicPlugins`, `saphnet build`). Keep the two in one "
            "folder (the first opens the second from there) and hand a process one of them, "
            "not both. To check the engine and the libraries on that host:",
            "",
            "```bash",
            f"trtexec --loadEngine=saphnet/1/model.plan --shapes={shapes} "
            f"--staticPlugins={autoregister}",
            f"trtexec --loadEngine=saphnet/1/model.plan --shapes={shapes} "
            f"--dynamicPlugins={plugin}",
            "```",
            "",
            "**The plugin libraries and the engine must be built for the TensorRT inside that "
            "Triton release** (its release notes name the TensorRT version) and for that GPU: "
            "build them in that container (`make plugins CMAKE_ARGS=-DTENSORRT_ROOT=...` "
            f"writes both libraries to `plugins/build/`; copy them to `{PurePosixPath(plugin).parent}/`, "
            f"then `saphnet build model.onnx -o model.plan --plugins {plugin}`). An engine from "
            "another TensorRT fails to deserialize; a library that is missing, or that "
            'registers only through `getCreators`, gives "plugin creator not found" for `PDFConv`.',
            "",
            "## What to send",
            "",
            "The engine's own I/O: `input` FP32 [batch, 3, H, W] RGB in [0, 1], H and W "
            "multiples of 16 inside the build profile; `output` of the same shape. "
            "For UINT8 images of any size, batching and tiling, use `--kind python`, "
            "which runs this engine through saphnet.",
        ]
    else:
        lines += [
            "## What to send",
            "",
            f"`{INPUT_NAME}`: UINT8 [batch, H, W, 3] RGB (sides >= 16); "
            f"`{OUTPUT_NAME}`: UINT8, the same shape. Requests of one size are batched.",
        ]
        if kind == "onnx":
            lines += [
                "",
                "Images run whole (no tiling): large images need memory in proportion. "
                "A file with `saphnet::PDFConv` or `DeformConv` needs ONNX Runtime >= 1.25 "
                "(DeformConv) in Triton's onnxruntime backend; for older Triton releases "
                "export with `saphnet export --pdf-op decomposed` (GridSample + Conv).",
            ]
        else:
            lines += [
                "",
                f"Sides over {options.max_side} px are refused per request; batches are filled "
                f"and images tiled to stay within {options.memory_budget_mb} MB per instance.",
            ]
            if model.suffix.lower() in ENGINE_SUFFIXES:
                lines += [
                    "",
                    "The engine needs the saphnet plugin library built for the container's "
                    "TensorRT (config parameter `plugin_library`) and the same GPU it was "
                    "built for; the sidecar beside it is checked at load.",
                ]
    lines += ["", "## config.pbtxt", "", "```", config.rstrip(), "```", ""]
    return "\n".join(lines)


def _opt_shape(engine: Path) -> str:
    """trtexec's ``--shapes`` value for the engine's optimum shape (from its sidecar)."""
    from ..runtime.profiles import Profile
    from ..runtime.sidecar import read_sidecar

    sidecar = read_sidecar(engine)
    assert sidecar is not None, "tensorrt_repo checked the sidecar"
    return Profile.from_dict(sidecar.profile).trtexec()["opt"]


def write_repository(
    model: str | os.PathLike[str], out: str | os.PathLike[str], options: RepoOptions, force: bool
) -> Path:
    """Write the repository folder ``out`` for ``model``; replace it only with ``force``."""
    model, out = Path(model), Path(out)
    if options.kind not in KINDS:
        raise SaphnetError(f"--kind {options.kind!r} is not one of {', '.join(KINDS)}")
    open_artefact(model, ACCEPTS[options.kind])  # one check with deblur, serve, compare
    if options.max_batch < 1 or options.instances < 1:
        raise SaphnetError("--max-batch and --instances must be at least 1")
    if out.exists() and not force:
        raise SaphnetError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / MODEL_NAME / "1").mkdir(parents=True)
        config = WRITERS[options.kind](model, tmp, options)
        parse_config(config)  # what we write must be what Triton parses
        (tmp / MODEL_NAME / "config.pbtxt").write_text(config)
        (tmp / "README.md").write_text(readme(options.kind, model, options, config))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
