"""The TensorRT plugin driven the way TensorRT and its ONNX parser drive it, against every
set of TensorRT headers found: ``pdfconv_plugin_lifecycle`` (plugins/tests/), configured,
built and run with ctest. Needs only the headers, CMake and nvcc (no libnvinfer, no GPU).

Headers are looked for in ``$SAPHNET_TRT_INCLUDE`` (one include folder holding NvInfer.h,
or several separated by ``:``) and in ``third_party/trt-*/include`` (ignored by git; see
plugins/pdfconv/README.md for fetching them). Without any the test skips with the reason.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "SAPHNET_TRT_INCLUDE"


def _header_dirs() -> list[Path]:
    """TensorRT include folders from the environment and third_party/, each once."""
    found = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    found += sorted(REPO.glob("third_party/trt-*/include"))
    unique = {d.resolve(): d for d in found if (d / "NvInfer.h").is_file()}
    return list(unique.values())


def _version(include: Path) -> str:
    text = (include / "NvInferVersion.h").read_text(errors="replace")
    parts = [
        re.search(rf"#define TRT_{name}_ENTERPRISE\s+(\d+)", text)
        or re.search(rf"#define NV_TENSORRT_{name}\s+(\d+)", text)
        for name in ("MAJOR", "MINOR", "PATCH")
    ]
    return ".".join(m.group(1) for m in parts if m)


HEADERS = _header_dirs()
if not HEADERS:
    pytest.skip(
        f"no TensorRT headers: set {ENV_VAR}=/path/to/TensorRT/include (several separated "
        "by ':') or extract them to third_party/trt-<version>/include",
        allow_module_level=True,
    )
if shutil.which("cmake") is None or shutil.which("ctest") is None:
    pytest.skip("cmake and ctest are needed to build the lifecycle test", allow_module_level=True)

pytestmark = pytest.mark.slow


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("include", HEADERS, ids=lambda p: f"trt{_version(p) or p.name}")
def test_plugin_lifecycle_with_headers(include: Path):
    """Builds the plugin and the lifecycle program against these headers without a
    single compiler warning (-Wall -Wextra), then runs it through ctest."""
    # One build folder per header folder (git ignores build/), kept between runs so that a
    # rerun only rebuilds what changed; one CUDA architecture, as nothing runs on a GPU.
    key = hashlib.sha1(str(include.resolve()).encode()).hexdigest()[:10]
    build = REPO / "build" / f"plugin-lifecycle-{_version(include) or 'trt'}-{key}"
    configure = _run(
        [
            "cmake", "-S", "plugins", "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            f"-DTENSORRT_INCLUDE_DIR={include}", "-DCMAKE_CUDA_ARCHITECTURES=75-real",
        ],
        timeout=300,
    )  # fmt: skip
    assert configure.returncode == 0, configure.stdout + configure.stderr
    if "building the TensorRT plugin against" not in configure.stdout:
        pytest.skip("CMake found no CUDA compiler, so no TensorRT plugin is built (needs nvcc)")
    compiled = _run(
        [
            "cmake", "--build", str(build), "-j", "2", "--target", "saphnet_plugins",
            "pdfconv_plugin_lifecycle",
        ],
        timeout=900,
    )  # fmt: skip
    log = compiled.stdout + compiled.stderr
    assert compiled.returncode == 0, log
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert warnings == [], "\n".join(warnings)
    tested = _run(
        ["ctest", "--test-dir", str(build), "-R", "^pdfconv_plugin_lifecycle$", "-V"],
        timeout=300,
    )
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    assert f"TensorRT headers {_version(include)}" in output
    assert re.search(r"\d+ checks, 0 failed", output), output
    assert "the plugin behaves as TensorRT expects" in output
