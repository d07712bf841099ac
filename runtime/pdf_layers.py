"""Which implementation runs a network's PDF layers, and the check that a build meant
for our plugin got it.

TensorRT's ONNX parser turns a ``saphnet::PDFConv`` node into our plugin only when the
plugin is registered and, up to TensorRT 10.6, the model carries no function of that
name (the parser imports a model-local function first; 10.7 made a registered plugin
win). The engine builder therefore parses the model without the function and, here,
counts the parsed network's layers that are our plugin, so an engine whose PDF layers
are anything else is never written while the sidecar claims our kernels.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from types import ModuleType

import onnx

from ..errors import SaphnetError
from ..export.op_forms import pdf_function_body
from ..pdf_identity import DOMAIN, OP_TYPE
from ..plugins import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

log = logging.getLogger(__name__)

OUR_PLUGIN = (PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
UNNAMED = "unnamed"
"""Stands for a plugin whose name TensorRT's Python bindings do not expose (< 10.4)."""


@dataclass(frozen=True)
class PdfOps:
    """The PDF ops of an ONNX file, as the builder needs to know them."""

    node_names: tuple[str, ...] = ()
    """Names of the ``saphnet::PDFConv`` nodes (the parser names their layers so)."""
    function_body: str | None = None
    """Body of the model's PDFConv function ("deformconv", "decomposed"), None without one."""
    deformconv: int = 0
    """ONNX ``DeformConv`` nodes in the graph (the ``deformconv`` op form)."""
    gridsample: int = 0
    """``GridSample`` nodes in the graph (one per PDF op in the ``decomposed`` form)."""

    @property
    def custom(self) -> int:
        return len(self.node_names)

    def implementation(self, plugin: bool) -> tuple[str, int]:
        """(:data:`~saphnet.runtime.sidecar.PDF_IMPLEMENTATIONS` key, op count) of a
        build with (``plugin``) or without our plugin registered."""
        if self.custom:
            kind = "plugin" if plugin else f"function-{self.function_body}"
            return kind, self.custom
        if self.deformconv:
            return "tensorrt-deformconv", self.deformconv
        if self.gridsample:
            return "decomposed", self.gridsample
        return "none", 0


def pdf_ops(model: onnx.ModelProto) -> PdfOps:
    """The PDF ops of ``model``'s main graph."""
    nodes = model.graph.node
    return PdfOps(
        node_names=tuple(n.name for n in nodes if (n.domain, n.op_type) == (DOMAIN, OP_TYPE)),
        function_body=pdf_function_body(model),
        deformconv=sum(n.domain in ("", "ai.onnx") and n.op_type == "DeformConv" for n in nodes),
        gridsample=sum(n.domain in ("", "ai.onnx") and n.op_type == "GridSample" for n in nodes),
    )


def plugin_identity(trt: ModuleType, layer: object) -> tuple[str, str, str] | None:
    """(name, version, namespace) of a plugin layer's plugin; None when not readable.

    Layers come back from ``INetworkDefinition.get_layer`` as plain ``ILayer``; their
    class is set from the type to reach ``.plugin`` (as Polygraphy does). A V3 plugin
    names itself through its core capability interface, which the Python bindings
    expose for C++ plugins only from TensorRT 10.4 on.
    """
    try:
        if layer.type == trt.LayerType.PLUGIN_V3:  # type: ignore[attr-defined]
            layer.__class__ = trt.IPluginV3Layer
            core = layer.plugin.get_capability_interface(trt.PluginCapabilityType.CORE)  # type: ignore[attr-defined]
            if core is None:
                return None
            return (core.plugin_name, core.plugin_version, core.plugin_namespace)
        layer.__class__ = trt.IPluginV2Layer
        plugin = layer.plugin  # type: ignore[attr-defined]
        return (plugin.plugin_type, plugin.plugin_version, plugin.plugin_namespace)
    except (AttributeError, TypeError, RuntimeError) as exc:
        log.debug("cannot read the plugin of layer %s: %s", getattr(layer, "name", "?"), exc)
        return None


def count_plugin_layers(
    trt: ModuleType, network: object, node_names: tuple[str, ...]
) -> tuple[int, Counter[str]]:
    """(layers that are our plugin, the network's other plugin layers by plugin name).

    A V3 plugin layer whose plugin cannot name itself (TensorRT < 10.4) counts as ours
    when it carries the name of a ``saphnet::PDFConv`` node: the parser names the layer
    it makes for a node after that node, and with the function removed our creator is
    the only way such a node becomes a plugin layer.
    """
    plugin_types = {trt.LayerType.PLUGIN_V2, trt.LayerType.PLUGIN_V3}
    names = set(node_names)
    ours, others = 0, Counter[str]()
    for i in range(network.num_layers):  # type: ignore[attr-defined]
        layer = network.get_layer(i)  # type: ignore[attr-defined]
        if layer.type not in plugin_types:
            continue
        identity = plugin_identity(trt, layer)
        if identity == OUR_PLUGIN or (
            identity is None and layer.type == trt.LayerType.PLUGIN_V3 and layer.name in names
        ):
            ours += 1
        else:
            others[identity[0] if identity else UNNAMED] += 1
    return ours, others


def check_plugin_layers(
    trt: ModuleType, network: object, ops: PdfOps, onnx_name: str, plugin: bool
) -> int:
    """The number of our plugin layers, checked against what the build expects: every
    ``saphnet::PDFConv`` node with ``plugin``, none without (else a registration made
    earlier in this process would put our kernels into an engine whose sidecar names no
    plugin library). A one-line SaphnetError otherwise."""
    ours, others = count_plugin_layers(trt, network, ops.node_names)
    log.info(
        "PDF layers: %d of %d saphnet::PDFConv nodes are our plugin (%s/%s/%s)",
        ours,
        ops.custom,
        *OUR_PLUGIN,
    )
    if plugin and ours != ops.custom:
        picked = ", ".join(f"{count} {name} plugin layers" for name, count in others.items())
        raise SaphnetError(
            f"TensorRT {trt.__version__} made {ours} of the {ops.custom} saphnet::PDFConv nodes "
            f"of {onnx_name} our plugin and built the rest from {picked or 'standard layers'}; "
            "refusing to write an engine that does not run our kernels "
            "(supported TensorRT versions: plugins/pdfconv/README.md)"
        )
    if not plugin and ours:
        raise SaphnetError(
            f"TensorRT {trt.__version__} made {ours} saphnet::PDFConv nodes of {onnx_name} our "
            "plugin, registered earlier in this process, but this build was given no plugin "
            "library to record for the engine; pass --plugins LIB"
        )
    return ours
