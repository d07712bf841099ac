"""The one identity of the PDF op, shared by the ONNX node and the TensorRT plugin.

The exported node is ``saphnet::PDFConv`` (domain, op type) with the attributes
``plugin_namespace`` and ``plugin_version``; TensorRT's ONNX parser looks a plugin up
by (op type, ``plugin_version``, ``plugin_namespace``), and our creator registers under
exactly that triple. Plain constants (no torch, no onnx), so the exporter, the engine
builder and the ctypes binding all read them from here.
"""

from __future__ import annotations

DOMAIN = "saphnet"
OP_TYPE = "PDFConv"
OP_VERSION = 1
PLUGIN_NAMESPACE = "saphnet"
PLUGIN_VERSION = "1"
