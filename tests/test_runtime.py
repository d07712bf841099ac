"""Backends behind one API, the engine sidecar check, plugin lookup, and the
TensorRT backend (real where TensorRT and a GPU exist)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from trt_marks import HAS_TRT, needs_trt

from saphnet.errors import SaphnetError
from saphnet.model import SAPHNet
from saphnet.runtime.api import AUTO_ORDER, _auto_for_weights, deblur, open_backend
from saphnet.runtime.backend import Backend
from saphnet.runtime.sidecar import (
    EngineMismatchError,
    Environment,
    Sidecar,
    check_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from saphnet.runtime.torch_backend import TorchBackend
from saphnet.runtime.trt_env import TensorRTMissingError, resolve_plugin

SIDECAR = Sidecar(
    tensorrt="10.3.0",
    gpu_name="Orin",
    compute_capability="8.7",
    precision="fp16",
    strongly_typed=False,
    profile={
        "name": "input",
        "min": [1, 3, 64, 64],
        "opt": [1, 3, 720, 1280],
        "max": [1, 3, 1088, 1920],
    },
    onnx_sha256="a" * 64,
    engine_sha256="e" * 64,
    plugin_sha256="p" * 64,
    plugin_file="libsaphnet_plugins.so",
)
HERE = Environment("10.3.0", "Orin", "8.7", "p" * 64)


def test_sidecar_roundtrip_and_force(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert read_sidecar(engine) is None
    path = write_sidecar(engine, SIDECAR)
    assert path == sidecar_path(engine) == tmp_path / "m.engine.json"
    assert read_sidecar(engine) == SIDECAR
    with pytest.raises(SaphnetError, match="--force"):
        write_sidecar(engine, SIDECAR)
    write_sidecar(engine, replace(SIDECAR, precision="fp32"), force=True)
    assert read_sidecar(engine).precision == "fp32"


def test_matching_environment_passes() -> None:
    check_sidecar("m.engine", SIDECAR, HERE, "e" * 64)


@pytest.mark.parametrize(
    "here,engine_sha,needle",
    [
        (
            replace(HERE, tensorrt="10.8.0"),
            None,
            "built with TensorRT 10.3.0, this machine has 10.8.0",
        ),
        (
            replace(HERE, gpu_name="H100", compute_capability="9.0"),
            None,
            "built for Orin (compute capability 8.7), this GPU is H100 (9.0)",
        ),
        (replace(HERE, plugin_sha256="q" * 64), None, "another plugin library"),
        (replace(HERE, plugin_sha256=None), None, "needs the saphnet plugin library"),
        (HERE, "f" * 64, "describes another engine"),
    ],
)
def test_sidecar_mismatch_is_one_clear_line(
    here: Environment, engine_sha: str | None, needle: str
) -> None:
    with pytest.raises(EngineMismatchError) as exc:
        check_sidecar("m.engine", SIDECAR, here, engine_sha)
    text = str(exc.value)
    assert needle in text and "\n" not in text
    assert "saphnet build" in text or "make plugins" in text


def test_same_architecture_other_gpu_model_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_sidecar("m.engine", SIDECAR, replace(HERE, gpu_name="Orin Nano"), "e" * 64)
    assert "tuned on Orin" in caplog.text


def test_broken_sidecars_fail_in_one_line(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(SaphnetError, match="not readable JSON"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SaphnetError, match="not a saphnet engine sidecar"):
        read_sidecar(engine)


def test_missing_plugin_library_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SaphnetError) as exc:
        resolve_plugin(tmp_path / "libnope.so", required=False)
    assert "does not exist" in str(exc.value) and "make plugins" in str(exc.value)
    monkeypatch.setenv("SAPHNET_PLUGIN_LIB", str(tmp_path / "libnope.so"))
    with pytest.raises(SaphnetError) as exc:
        resolve_plugin(None, required=True)
    assert "\n" not in str(exc.value) and "SAPHNET_PLUGIN_LIB" in str(exc.value)
    assert resolve_plugin(None, required=False) is None


@pytest.fixture(scope="module")
def tiny_model(tiny_weights: Path) -> SAPHNet:
    return SAPHNet.load(tiny_weights)


def test_torch_backend_matches_the_model(tiny_model: SAPHNet) -> None:
    backend = TorchBackend(model=tiny_model, device="cpu")
    assert isinstance(backend, Backend) and backend.precision == "fp32"
    x = np.random.default_rng(0).random((1, 3, 40, 56), dtype=np.float32)
    with torch.no_grad():
        ref = tiny_model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(backend.infer(x), ref)
    with pytest.raises(SaphnetError, match="FP16 only on CUDA"):
        TorchBackend(model=tiny_model, precision="fp16", device="cpu")


def test_one_tile_covering_a_real_network_equals_untiled(tiny_model: SAPHNet) -> None:
    backend = TorchBackend(model=tiny_model, device="cpu")
    rgb = np.random.default_rng(1).integers(0, 256, (45, 70, 3)).astype(np.uint8)
    whole = deblur(backend, rgb, tile=None)
    np.testing.assert_array_equal(deblur(backend, rgb, tile=512), whole)
    tiled = deblur(backend, rgb, tile=32, overlap=8)
    assert tiled.shape == whole.shape and tiled.dtype == np.uint8


def test_open_backend_rejects_mismatched_requests(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    (tmp_path / "m.txt").write_text("x")
    cases = [
        (dict(kind="cuda-magic"), "not one of"),
        (dict(model=tmp_path / "none.onnx"), "does not exist"),
        (dict(model=tmp_path / "m.txt"), "expected an ONNX file or a TensorRT engine"),
        (dict(kind="torch", model=engine), "is a TensorRT engine"),
        (dict(kind="tensorrt"), "runs an engine"),
        (dict(model=engine, weights=tmp_path / "w.safetensors"), "not both"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(SaphnetError, match=needle):
            open_backend(**kwargs)


def test_auto_prefers_onnxruntime_on_cpu() -> None:
    """Measured on a 2-core CPU: ONNX Runtime is an order of magnitude faster than
    eager PyTorch on this network (README, saphnet bench)."""
    assert AUTO_ORDER.index("onnxruntime-cpu") < AUTO_ORDER.index("torch-cpu")
    assert _auto_for_weights("cpu") == "onnxruntime"


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_tensorrt_backend_without_tensorrt_says_what_to_install(tmp_path: Path) -> None:
    from saphnet.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(TensorRTMissingError, match=r"pip install 'saphnet\[tensorrt\]'"):
        TensorRTBackend(tmp_path / "m.engine")


@pytest.mark.slow
def test_onnxruntime_through_the_api_matches_torch(tiny_model: SAPHNet, tmp_path: Path) -> None:
    from saphnet.export import export_onnx

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    backend = open_backend(model=path)
    try:
        assert backend.name == "onnxruntime"
        x = np.random.default_rng(2).random((1, 3, 48, 64), dtype=np.float32)
        with torch.no_grad():
            ref = tiny_model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(backend.infer(x), ref, atol=1e-4)
        rgb = (x[0].transpose(1, 2, 0) * 255).astype(np.uint8)[:45, :61]  # odd size: padded
        assert deblur(backend, rgb).shape == rgb.shape
    finally:
        backend.close()


@needs_trt
@pytest.mark.tensorrt
def test_engine_for_another_tensorrt_is_refused_at_load(
    tmp_path: Path, tiny_model: SAPHNet
) -> None:
    from saphnet.export import export_onnx
    from saphnet.runtime.engine_build import BuildOptions, build_engine
    from saphnet.runtime.tensorrt_backend import TensorRTBackend

    onnx_path = export_onnx(tiny_model, tmp_path / "m.onnx", pdf_op="deformconv")
    engine = build_engine(
        onnx_path, tmp_path / "m.engine", BuildOptions("fp32", "1x3x32x32:1x3x64x64:1x3x64x64")
    )
    backend = open_backend(model=engine)
    assert backend.name == "tensorrt" and backend.max_hw == (64, 64)
    rgb = np.random.default_rng(3).integers(0, 256, (100, 150, 3)).astype(np.uint8)
    assert deblur(backend, rgb, overlap=16).shape == rgb.shape  # larger than the profile: tiled
    backend.close()
    sidecar = read_sidecar(engine)
    assert sidecar.pdf_implementation == "tensorrt-deformconv" and sidecar.plugin_sha256 is None
    # TensorRT's own DeformConv plugin is in the engine: a fresh process (where nothing
    # has registered TensorRT's plugins yet) must load and run it too.
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np; from saphnet.runtime.tensorrt_backend import TensorRTBackend; "
            "b = TensorRTBackend(sys.argv[1]); b.infer(np.zeros((1, 3, 64, 64), np.float32)); b.close()",
            str(engine),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    write_sidecar(engine, replace(sidecar, tensorrt="9.9.9"), force=True)
    with pytest.raises(EngineMismatchError, match=r"TensorRT 9\.9\.9"):
        TensorRTBackend(engine)
