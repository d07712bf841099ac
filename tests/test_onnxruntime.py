"""The ONNX Runtime backend: torch-free, precision from metadata, providers, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from saphnet.errors import SaphnetError
from saphnet.model import SAPHNet
from saphnet.runtime.backend import Backend
from saphnet.runtime.onnxruntime_backend import OnnxRuntimeBackend, provider_chain

HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TRT_EP = "TensorrtExecutionProvider" in ort.get_available_providers()


def test_backend_imports_no_torch() -> None:
    code = (
        "import sys; import saphnet.runtime.onnxruntime_backend; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_backend_runs_the_file_like_pytorch(tiny_onnx: Path, tiny_weights: Path) -> None:
    backend = OnnxRuntimeBackend(tiny_onnx)
    assert isinstance(backend, Backend)
    assert (backend.name, backend.precision) == ("onnxruntime", "fp32")
    assert backend.providers == ["CPUExecutionProvider"]
    batch = np.random.default_rng(0).random((2, 3, 40, 52), dtype=np.float32)
    out = backend.infer(batch)
    with torch.no_grad():
        ref = SAPHNet.load(tiny_weights)(torch.from_numpy(batch)).numpy()
    assert out.dtype == np.float32 and out.shape == batch.shape
    assert np.abs(out - ref).max() <= 1e-4
    backend.close()


def test_precision_comes_from_metadata(tiny_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "saphnet.precision":
            prop.value = "fp16"
    path = tmp_path / "relabelled.onnx"
    onnx.save(model, str(path))
    assert OnnxRuntimeBackend(path).precision == "fp16"


def test_file_without_saphnet_metadata_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    path = tmp_path / "anonymous.onnx"
    onnx.save(model, str(path))
    with pytest.raises(SaphnetError, match="no saphnet metadata"):
        OnnxRuntimeBackend(path)


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_missing_or_broken_file_is_refused(content: bytes | None, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SaphnetError):
        OnnxRuntimeBackend(path)


def test_wrong_batch_shape_is_refused(tiny_onnx: Path) -> None:
    with pytest.raises(SaphnetError, match="N, 3, H, W"):
        OnnxRuntimeBackend(tiny_onnx).infer(np.zeros((3, 8, 8), np.float32))


def test_cpu_is_the_default_provider() -> None:
    assert provider_chain(None, "fp32", None) == ["CPUExecutionProvider"]
    with pytest.raises(SaphnetError, match="unknown provider"):
        provider_chain("rocm", "fp32", None)


@pytest.mark.skipif(HAS_CUDA_EP, reason="this onnxruntime has the CUDA provider")
def test_missing_gpu_provider_names_the_fix() -> None:
    with pytest.raises(SaphnetError, match="onnxruntime-gpu"):
        provider_chain("cuda", "fp32", None)


@pytest.mark.skipif(not HAS_CUDA_EP, reason="needs onnxruntime-gpu with the CUDA provider")
def test_cuda_provider_matches_cpu(tiny_onnx: Path) -> None:
    batch = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    gpu = OnnxRuntimeBackend(tiny_onnx, providers="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    assert np.abs(gpu.infer(batch) - OnnxRuntimeBackend(tiny_onnx).infer(batch)).max() <= 1e-4


@pytest.mark.skipif(not HAS_TRT_EP, reason="needs onnxruntime-gpu with the TensorRT provider")
def test_tensorrt_provider_gets_the_plugin_library(tmp_path: Path) -> None:
    library = tmp_path / "libsaphnet_plugins.so"
    library.write_bytes(b"")
    (trt, options), *rest = provider_chain("tensorrt", "fp16", library)
    assert trt == "TensorrtExecutionProvider"
    assert options["trt_extra_plugin_lib_paths"] == str(library)
    assert options["trt_fp16_enable"] == "True"
    assert rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
