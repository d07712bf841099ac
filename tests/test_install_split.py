"""The deployment install: serving and ONNX inference without PyTorch.

``saphnet serve`` and ``saphnet deblur`` on an ONNX file must not import torch,
scikit-image or matplotlib (pyproject's base and ``[serve]`` do not install them),
and a command that needs one names the extra to install. The slow test installs
``saphnet[serve]`` into a fresh venv from the package index and serves an ONNX file
there, with no torch in that environment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "skimage", "scipy", "matplotlib", "onnxscript", "polygraphy")

BLOCKED_RUN = textwrap.dedent(
    """
    import json, sys
    for name in {heavy!r}:
        sys.modules[name] = None  # any import of it now raises ModuleNotFoundError
    from saphnet.cli import main
    import saphnet.serve.server, saphnet.serve.loadtest, saphnet.serve.triton_repo
    codes = {{
        "deblur": main(["deblur", {image!r}, "-o", {out!r}, "--model", {onnx!r}]),
        "triton-repo": main(["triton-repo", "--model", {onnx!r}, "-o", {repo!r}]),
        "export": main(["export", "-o", {export!r}]),
    }}
    print(json.dumps(codes))
    """
)


def test_serving_and_onnx_deblur_need_no_torch(tiny_onnx: Path, tmp_path: Path) -> None:
    from PIL import Image

    from saphnet.serve.loadtest import load_images

    Image.fromarray(load_images((32, 48), 1)[0]).save(tmp_path / "in.png")
    script = BLOCKED_RUN.format(
        heavy=HEAVY,
        image=str(tmp_path / "in.png"),
        out=str(tmp_path / "out.png"),
        onnx=str(tiny_onnx),
        repo=str(tmp_path / "repo"),
        export=str(tmp_path / "x.onnx"),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == {"deblur": 0, "triton-repo": 0, "export": 2}, done.stderr
    assert (tmp_path / "out.png").is_file() and (tmp_path / "repo" / "saphnet").is_dir()
    assert "saphnet export: error: this needs torch" in done.stderr
    assert "pip install 'saphnet[export]'" in done.stderr


INSTALL_TIMEOUT_S = 900
NO_INDEX = ("Temporary failure in name resolution", "NewConnectionError", "Network is unreachable")


def _copy_project(dest: Path) -> Path:
    """The files a wheel is built from, so pip builds outside the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("saphnet", "export", "runtime"):
        shutil.copytree(
            ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
    return dest


@pytest.mark.slow
def test_fresh_venv_with_serve_extra_serves_an_onnx_file_without_torch(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tritonclient.http", reason="the client side needs saphnet[serve]")
    import tritonclient.http as http

    from saphnet.runtime.api import deblur, open_backend
    from saphnet.serve.loadtest import load_images
    from saphnet.serve.process import start

    source = _copy_project(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"{source}[serve]"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip install saphnet[serve] took over {INSTALL_TIMEOUT_S} s")
    if done.returncode != 0 and any(s in done.stderr for s in NO_INDEX):
        pytest.skip("no package index reachable to install saphnet[serve] from")
    assert done.returncode == 0, done.stderr[-3000:]
    probe = "import importlib.util as u; print([m for m in {!r} if u.find_spec(m)])"
    found = subprocess.run(
        [str(python), "-c", probe.format(HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert found.stdout.strip() == "[]", f"saphnet[serve] pulled in {found.stdout}"

    (image,) = load_images((48, 64), 1)
    backend = open_backend("onnxruntime", tiny_onnx)
    try:
        expected = deblur(backend, image)
    finally:
        backend.close()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    command = [str(venv / "bin" / "saphnet"), "serve", "--model", str(tiny_onnx)]
    server = start(command, tmp_path / "serve.log", env)
    try:
        client = http.InferenceServerClient(server.http_url)
        with contextlib.closing(client):
            tensor = http.InferInput("image", [1, *image.shape], "UINT8")
            tensor.set_data_from_numpy(image[None])
            served = client.infer("saphnet", [tensor]).as_numpy("deblurred")[0]
    finally:
        code = server.stop()
    assert np.array_equal(served, expected)
    assert code == 0, server.log_tail()
