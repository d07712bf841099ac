"""The ``metadata_props`` every exported file carries, and reading them back.

Torch-free (only the key names and plain dicts), so the ONNX Runtime backend can read
the precision on a deployment host through ``onnxruntime``'s own metadata map.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

PREFIX = "saphnet."
KEYS = ("version", "config", "weights_sha256", "pdf_op", "precision", "opset")


@dataclass(frozen=True)
class ExportMetadata:
    """What produced an ONNX file: package version, network config (JSON), the weights'
    SHA-256 (or ``random-init-seed-0`` for the seeded untrained network, ``unknown``
    when the caller did not say), op form, precision, opset."""

    version: str
    config: str
    weights_sha256: str
    pdf_op: str
    precision: str
    opset: int

    def as_props(self) -> dict[str, str]:
        """``metadata_props`` entries, keys prefixed with ``saphnet.``."""
        return {PREFIX + key: str(getattr(self, key)) for key in KEYS}

    @property
    def config_dict(self) -> dict[str, object]:
        return json.loads(self.config)

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ExportMetadata:
        """Parse ``metadata_props`` (or ONNX Runtime's ``custom_metadata_map``); a file
        not written by ``saphnet export`` raises ``KeyError`` naming the missing key."""
        values = {key: props[PREFIX + key] for key in KEYS}
        return cls(**{**values, "opset": int(values["opset"])})


def read_metadata(path: str | os.PathLike[str]) -> ExportMetadata:
    """The metadata of an exported file (loads the graph without its weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props})
