"""The TensorRT skip condition, shared by the test modules that need TensorRT."""

from __future__ import annotations

import importlib.util

import pytest

HAS_TRT = (
    importlib.util.find_spec("tensorrt") is not None
    and importlib.util.find_spec("pycuda") is not None
)
needs_trt = pytest.mark.skipif(
    not HAS_TRT,
    reason="needs tensorrt and pycuda with an NVIDIA GPU (pip install 'saphnet[tensorrt]')",
)
