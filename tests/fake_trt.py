"""A fake ``tensorrt`` module for the tests that check our TensorRT logic on machines
without TensorRT (test_build, test_runtime_trt_logic).

It models what the real one is documented to do, where our code depends on it:

* the plugin registry (``load_library``, ``get_creator``), and TensorRT's own plugins
  registered only by ``init_libnvinfer_plugins``;
* the ONNX parser's import order for a custom-domain node: up to 10.6 a model-local
  function of the node's name first, then a registered plugin; from 10.7 a registered
  plugin first (CHANGELOG 10.7.0); ONNX ``DeformConv`` becomes TensorRT's
  ``ModulatedDeformConv2d`` plugin, found only once the built-in plugins are registered;
  a plugin layer is named after its node (onnx-tensorrt ``registerLayer``), with a
  name made up when the node has none and a suffix when a layer has it already;
* V3 plugins that name themselves through their core capability interface, which the
  Python bindings expose for C++ plugins only from 10.4 on;
* the loggers handed to it (``.logger_uses``: (who, weak reference)), since
  ``init_libnvinfer_plugins`` keeps its logger's pointer for the rest of the process.
"""

from __future__ import annotations

import types
import weakref

import onnx

from saphnet.plugins import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

PLUGIN_V2, PLUGIN_V3, OTHER = "PLUGIN_V2", "PLUGIN_V3", "OTHER"
BUILTIN_DEFORMCONV = ("ModulatedDeformConv2d", "1", "")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(v) for v in version.split(".")[:2])


class FakeRegistry:
    """TensorRT's plugin registry as far as our code uses it: our library registers
    ``PDFConv``/1/saphnet when loaded (if ``has_creator``); the built-in plugins come
    from ``init_libnvinfer_plugins``."""

    def __init__(self, loads: bool = True, has_creator: bool = True) -> None:
        self.loads, self.has_creator, self.loaded = loads, has_creator, []
        self.builtin = False

    def get_creator(self, name: str, version: str, namespace: str) -> object | None:
        ours = (name, version, namespace) == (PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
        if ours and self.has_creator and self.loaded:
            return object()
        if (name, version, namespace) == BUILTIN_DEFORMCONV and self.builtin:
            return object()
        return None

    def load_library(self, path: str) -> object | None:
        self.loaded.append(path)
        return object() if self.loads else None


class FakeLayer:
    def __init__(self, type: str, name: str, identity: tuple[str, str, str] | None = None):
        self.type, self.name, self._identity = type, name, identity
        self.readable = True

    @property
    def plugin(self) -> object:
        name, version, namespace = self._identity  # type: ignore[misc]
        if self.type == PLUGIN_V2:
            return types.SimpleNamespace(
                plugin_type=name, plugin_version=version, plugin_namespace=namespace
            )
        core = types.SimpleNamespace(
            plugin_name=name, plugin_version=version, plugin_namespace=namespace
        )
        return types.SimpleNamespace(
            get_capability_interface=lambda kind: core if self.readable else None
        )


class FakePluginV2Layer(FakeLayer):
    pass


class FakePluginV3Layer(FakeLayer):
    pass


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags, self.layers = flags, []

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, i: int) -> FakeLayer:
        return self.layers[i]


def _attribute(node: onnx.NodeProto, name: str, default: str) -> str:
    for attr in node.attribute:
        if attr.name == name:
            return attr.s.decode()
    return default


class FakeParser:
    """onnx-tensorrt's node import order, reduced to the layers it makes."""

    def __init__(self, trt: types.SimpleNamespace, network: FakeNetwork) -> None:
        self.trt, self.network, self.errors = trt, network, []
        self.received: onnx.ModelProto | None = None
        self.path: str | None = None
        trt.parsers.append(self)

    def parse(self, model: bytes, path: str | None = None) -> bool:
        self.received, self.path = onnx.load_from_string(bytes(model)), path
        return self._import(self.received)

    def parse_from_file(self, path: str) -> bool:
        self.received, self.path = onnx.load(path, load_external_data=False), path
        return self._import(self.received)

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]

    def _deformconv(self, name: str) -> bool:
        if self.trt.get_plugin_registry().get_creator(*BUILTIN_DEFORMCONV) is None:
            self.errors.append(f"In node {name}: ModulatedDeformConv2d plugin was not found")
            return False
        self.network.layers.append(FakeLayer(PLUGIN_V2, name, BUILTIN_DEFORMCONV))
        return True

    def _layer_name(self, node: onnx.NodeProto) -> str:
        """The node's name, invented when empty and suffixed when a layer has it already,
        as TensorRT names layers."""
        name = node.name or f"node_of_{node.output[0]}"
        taken = {layer.name for layer in self.network.layers}
        candidate, k = name, 0
        while candidate in taken:
            k += 1
            candidate = f"{name}_{k}"
        return candidate

    def _import(self, model: onnx.ModelProto) -> bool:
        functions = {f.name: f for f in model.functions}  # keyed by name only, as the parser
        registry = self.trt.get_plugin_registry()
        plugin_first = version_tuple(self.trt.__version__) >= (10, 7)
        readable = version_tuple(self.trt.__version__) >= (10, 4)
        for node in model.graph.node:
            if node.op_type == "DeformConv":
                if not self._deformconv(node.name):
                    return False
                continue
            if node.domain in ("", "ai.onnx"):
                self.network.layers.append(FakeLayer(OTHER, node.name))
                continue
            identity = (
                node.op_type,
                _attribute(node, "plugin_version", "1"),
                _attribute(node, "plugin_namespace", ""),
            )
            creator = registry.get_creator(*identity)
            function = functions.get(node.op_type)
            if function is not None and (creator is None or not plugin_first):
                for inner in function.node:
                    if inner.op_type == "DeformConv":
                        if not self._deformconv(f"node_of_{inner.output[0]}"):
                            return False
                    else:
                        self.network.layers.append(FakeLayer(OTHER, f"node_of_{inner.output[0]}"))
            elif creator is not None:
                layer = FakeLayer(PLUGIN_V3, self._layer_name(node), identity)
                layer.readable = readable
                self.network.layers.append(layer)
            else:
                self.errors.append(f"In node {node.name}: Plugin not found, are the plugin name, ")
                return False
        return True


def fake_tensorrt(version: str = "10.3.0", registry: FakeRegistry | None = None):
    """A fake ``tensorrt`` module of ``version``; ``.parsers`` holds every parser made,
    ``.events`` what happened in order ("builtin plugins", "deserialize", ...)."""
    trt = types.SimpleNamespace(
        __version__=version,
        parsers=[],
        events=[],
        registry=registry or FakeRegistry(),
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None}),
        LayerType=types.SimpleNamespace(PLUGIN_V2=PLUGIN_V2, PLUGIN_V3=PLUGIN_V3),
        IPluginV2Layer=FakePluginV2Layer,
        IPluginV3Layer=FakePluginV3Layer,
        PluginCapabilityType=types.SimpleNamespace(CORE="CORE"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=5),
        BuilderFlag=types.SimpleNamespace(
            **({"FP16": 1} if version_tuple(version) < (11,) else {})
        ),
        logger_uses=[],
    )

    def used(who: str, logger: object) -> None:
        trt.logger_uses.append((who, weakref.ref(logger)))

    def builder(logger: object) -> types.SimpleNamespace:
        used("builder", logger)
        return types.SimpleNamespace(create_network=FakeNetwork)

    def parser(network: FakeNetwork, logger: object) -> FakeParser:
        used("parser", logger)
        return FakeParser(trt, network)

    trt.Builder, trt.OnnxParser, trt.used = builder, parser, used
    trt.get_plugin_registry = lambda: trt.registry

    def init_libnvinfer_plugins(logger: object, namespace: str) -> bool:
        used("init_libnvinfer_plugins", logger)
        trt.events.append("builtin plugins")
        trt.registry.builtin = True
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins
    return trt
