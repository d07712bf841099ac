"""``export_onnx``: SAPHNet -> one ONNX file with the PDF op in the requested form.

The recipe (FACTS): ``torch.onnx.export(dynamo=True)`` at the target opset, the PDF
op emitted as the ``saphnet::PDFConv`` node, then :mod:`.op_forms` attaches or
inlines the function that defines the node, :mod:`.metadata` stamps the file, and
``onnx.checker`` (full check) validates it before an atomic write.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch

from .. import __version__
from ..errors import SaphnetError
from ..files import atomic_output, check_writable
from ..model import SAPHNet
from ..pdf_identity import DOMAIN, OP_TYPE
from ..sizes import MIN_SIDE, check_static_shape
from .fp16 import Float16Network
from .metadata import ExportMetadata
from .op_forms import apply_op_form, check_opset, count_pdf_nodes

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
DEFAULT_OPSET = 19
INPUT_NAME = "input"
OUTPUT_NAME = "output"
UNKNOWN_WEIGHTS = "unknown"
DROPPED_NODE_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"
QUIET_LOGGERS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
}


def check_arguments(
    model: object, pdf_op: str, precision: str, opset: int, static_shape: tuple[int, int] | None
) -> None:
    """Every bad argument as one SaphnetError, before any work is done."""
    if not isinstance(model, SAPHNet):
        raise SaphnetError(
            f"export needs a SAPHNet model, got {type(model).__name__}; load one with SAPHNet.load"
        )
    if precision not in PRECISIONS:
        raise SaphnetError(f"unknown precision {precision!r}; choose fp32 or fp16")
    check_opset(pdf_op, opset, onnx.defs.onnx_opset_version())
    if static_shape is not None:
        if len(static_shape) != 2:
            raise SaphnetError(
                f"static shape {static_shape} is not (H, W); pass e.g. --static 720x1280"
            )
        check_static_shape(*static_shape)


def _dynamic_shapes(static_shape: tuple[int, int] | None) -> dict[str, dict[int, object]]:
    """Batch always dynamic; H and W too unless a static shape is asked for."""
    dims: dict[int, object] = {0: torch.export.Dim("batch", min=1)}
    if static_shape is None:
        dims[2] = torch.export.Dim("height", min=MIN_SIDE)
        dims[3] = torch.export.Dim("width", min=MIN_SIDE)
    return {"x": dims}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's own chatter (a warning per missing torchvision op, an INFO
    line per optimizer rewrite, deprecation warnings) while it runs; errors still show."""
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning, UserWarning))
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def trace_to_onnx(
    model: SAPHNet, precision: str, opset: int, static_shape: tuple[int, int] | None
) -> onnx.ModelProto:
    """Run the exporter; the graph holds one ``saphnet::PDFConv`` node per PDF op."""
    net: torch.nn.Module = Float16Network(model) if precision == "fp16" else model.eval()
    h, w = static_shape or (64, 64)
    # Batch 2: the exporter specialises a dynamic dimension traced at size 1.
    example = torch.rand(
        2, model.config.in_channels, h, w, generator=torch.Generator().manual_seed(0)
    )
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(static_shape),
            external_data=False,
            verbose=False,
        )
    return program.model_proto


def tidy_nodes(model: onnx.ModelProto) -> None:
    """Drop node metadata that records the exporting machine (source paths, FX dumps)
    and name each PDFConv node after its module, the name TensorRT gives the layer."""
    taken = {n.name for n in model.graph.node}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        kept = [p for p in node.metadata_props if p.key not in DROPPED_NODE_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
        if (node.domain, node.op_type) != (DOMAIN, OP_TYPE) or NAME_SCOPES not in props:
            continue
        scopes = ast.literal_eval(props[NAME_SCOPES])  # e.g. ['', ..., 'm.pdf.filter', '_symbolic']
        name = f"{scopes[-2]}/PDFConv" if len(scopes) >= 2 else ""
        if name and name not in taken:
            taken.add(name)
            node.name = name


def export_onnx(
    model: SAPHNet,
    path: str | os.PathLike[str],
    pdf_op: str = "custom",
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    static_shape: tuple[int, int] | None = None,
    force: bool = False,
    weights_sha256: str | None = None,
) -> Path:
    """Export ``model`` to ``path`` and return the path.

    Args:
        model: a SAPHNet (any device; exported from a CPU copy in eval mode).
        path: the ``.onnx`` file; an existing one is kept unless ``force``.
        pdf_op: ``custom`` (``saphnet::PDFConv`` node + its function), ``deformconv``
            (ONNX DeformConv, opset >= 19) or ``decomposed`` (GridSample + 1x1 Conv).
        precision: ``fp32`` or ``fp16`` (strongly typed FP16 graph, float32 I/O).
        opset: ONNX opset of the default domain (>= 18; >= 19 for ``deformconv``).
        static_shape: (H, W) to fix the image size (multiples of 16, at least 32:
            :func:`saphnet.sizes.check_static_shape`); None keeps H and W dynamic
            (sides >= 16). The batch is dynamic either way.
        force: overwrite an existing file.
        weights_sha256: SHA-256 of the weights file, recorded in the metadata
            (``unknown`` when None; ``saphnet export`` passes
            :func:`.reference_weights.weights_tag`).
    """
    check_arguments(model, pdf_op, precision, opset, static_shape)
    check_writable(path, force)
    start = time.perf_counter()
    cpu_model = copy.deepcopy(model).cpu().eval()  # leave the caller's model where it is
    proto = trace_to_onnx(cpu_model, precision, opset, static_shape)
    nodes = count_pdf_nodes(proto)
    tidy_nodes(proto)
    proto = apply_op_form(proto, pdf_op, opset)
    meta = ExportMetadata(
        version=__version__,
        config=model.config.to_json(),
        weights_sha256=weights_sha256 or UNKNOWN_WEIGHTS,
        pdf_op=pdf_op,
        precision=precision,
        opset=opset,
    )
    onnx.helper.set_model_props(proto, meta.as_props())
    proto.producer_name = "saphnet"
    proto.producer_version = __version__
    onnx.checker.check_model(proto, full_check=True)
    with atomic_output(path, force=force) as tmp:
        onnx.save(proto, str(tmp))
    log.info(
        "exported %s (%s, %s, opset %d, %d PDF ops) in %.1f s",
        path,
        pdf_op,
        precision,
        opset,
        nodes,
        time.perf_counter() - start,
    )
    return Path(path)
