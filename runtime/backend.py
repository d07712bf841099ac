"""The one inference interface every backend implements.

Backends take and return NCHW float32 numpy arrays of RGB in [0, 1], so callers
(tiling, the CLI, compare, bench) never care which engine runs; the ONNX Runtime and
TensorRT backends import no torch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """A loaded model that deblurs batches."""

    name: str
    """Backend name: ``torch``, ``onnxruntime`` or ``tensorrt``."""
    precision: str
    """``fp32`` or ``fp16``."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Deblur ``batch`` (N, 3, H, W) float32 in [0, 1]; same shape and dtype out."""
        ...

    def close(self) -> None:
        """Release sessions, engines and device memory."""
        ...
