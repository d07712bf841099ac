"""``make gpu-check``: what it installs on the lent GPU machine (no network) must cover
saphnet's dependencies, the wheels carried must install on its Python 3.12 x86-64, and
it must call the training interface it promises."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()
WHEELHOUSE = ROOT / "gpu-wheels"


def _make_list(name: str) -> set[str]:
    match = re.search(rf"^{name} [:?]?= (.+)$", MAKEFILE, re.MULTILINE)
    assert match, f"{name} not in the Makefile"
    return {_normal(n) for n in match.group(1).split()}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_gpu_machine_gets_every_base_dependency():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {
        _normal(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0])
        for d in pyproject["project"]["dependencies"]
    }
    build = {
        _normal(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0])
        for d in pyproject["build-system"]["requires"]
    }
    has, carried = _make_list("GPU_IMAGE_HAS"), _make_list("GPU_WHEEL_PKGS")
    missing = (needed | build) - has - carried
    assert not missing, (
        f"add {sorted(missing)} to GPU_WHEEL_PKGS (or GPU_IMAGE_HAS if the image has them)"
    )
    assert "torch" in has and "torch" not in carried  # the machine's CUDA torch is reused


def test_gpu_check_runs_selftest_then_the_promised_training_interface():
    recipe = MAKEFILE[MAKEFILE.index("gpu-check:\n") :]
    selftest = recipe.index("-m saphnet selftest -o $(GPU_OUT)/selftest")
    train = recipe.index(
        "-m saphnet train --synthetic --preset gpu-short --time-budget $(TRAIN_BUDGET) --device cuda"
    )
    assert selftest < train
    assert "--out $(GPU_OUT)/train" in recipe
    assert "TRAIN_BUDGET ?= 4m" in MAKEFILE and "GPU_OUT ?= gpu-out" in MAKEFILE
    assert "[ $$st -eq 0 ] && [ $$tr -eq 0 ]" in recipe  # both steps decide the status
    assert "--no-index --find-links $(GPU_WHEELS)" in MAKEFILE


@pytest.mark.skipif(not WHEELHOUSE.is_dir(), reason="no gpu-wheels/ (make gpu-wheelhouse)")
def test_carried_wheels_install_on_python312_x86_64_and_are_small():
    wheels = sorted(WHEELHOUSE.glob("*.whl"))
    assert {_normal(w.name.split("-")[0]) for w in wheels} == _make_list("GPU_WHEEL_PKGS")
    for wheel in wheels:
        python, abi, platform = wheel.stem.split("-")[-3:]
        assert python in ("py3", "py2.py3", "cp312") and abi in ("none", "abi3", "cp312"), wheel
        assert platform == "any" or platform.endswith("x86_64"), wheel
        with zipfile.ZipFile(wheel) as z:
            assert any(n.endswith(".dist-info/METADATA") for n in z.namelist())
    assert sum(w.stat().st_size for w in wheels) < 8 * 2**20
