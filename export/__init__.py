"""ONNX export of SAPHNet with the saphnet::PDFConv custom op (installed as saphnet.export).

``export_onnx`` is imported on first use: :mod:`.metadata` stays importable on
deployment hosts without torch (the ONNX Runtime backend reads it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .metadata import ExportMetadata, read_metadata

if TYPE_CHECKING:
    from .onnx_export import export_onnx

__all__ = ["ExportMetadata", "export_onnx", "read_metadata"]


def __getattr__(name: str) -> object:
    if name == "export_onnx":
        from .onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
