"""The TensorRT plugin driven the way TensorRT and its ONNX parser drive it, against every
set of TensorRT headers found: ``pdfconv_plugin_lifecycle`` (plugins/tests/), configured,
built and run with ctest; and how its creator reaches TensorRT's registry
(``pdfconv_plugin_register_*``: dlopen of libsaphnet_plugins_autoregister.so, loadLibrary of
libsaphnet_plugins.so, each against a stub libnvinfer that counts registrations); and the
plugin's enqueue against a fake CUDA runtime (``pdfconv_enqueue_hot_path``). Needs only the
headers, CMake and nvcc (no libnvinfer, no GPU).

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


def _build(include: Path) -> Path:
    """Configures and builds both libraries and the test programs against these headers,
    without a single compiler warning (-Wall -Wextra); returns the build folder."""
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
            "saphnet_plugins_autoregister", "pdfconv_plugin_lifecycle", "pdfconv_plugin_register",
            "pdfconv_enqueue_hot_path",
        ],
        timeout=900,
    )  # fmt: skip
    log = compiled.stdout + compiled.stderr
    assert compiled.returncode == 0, log
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert warnings == [], "\n".join(warnings)
    return build


@pytest.fixture(scope="module", params=HEADERS, ids=lambda p: f"trt{_version(p) or p.name}")
def built(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(header folder, build folder), built once per header folder for this module."""
    return request.param, _build(request.param)


def test_plugin_lifecycle_with_headers(built: tuple[Path, Path]):
    """The lifecycle program, through ctest."""
    include, build = built
    tested = _run(
        ["ctest", "--test-dir", str(build), "-R", "^pdfconv_plugin_lifecycle$", "-V"],
        timeout=300,
    )
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    assert f"TensorRT headers {_version(include)}" in output
    assert re.search(r"\d+ checks, 0 failed", output), output
    assert "the plugin behaves as TensorRT expects" in output
    assert "getTimingCacheID: saphnet::PDFConv/1/" in output, output


def test_enqueue_hot_path_with_headers(built: tuple[Path, Path]):
    """The plugin's enqueue against a fake CUDA runtime: W repacked once per pointer and
    shape, nothing allocated or packed under graph capture, no pointer query."""
    _, build = built
    tested = _run(
        ["ctest", "--test-dir", str(build), "-R", "^pdfconv_enqueue_hot_path$", "-V"], 300
    )
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    assert re.search(r"\d+ checks, 0 failed", output), output
    assert "ok: W is packed once for three calls" in output, output
    assert "ok: enqueue makes no pointer query" in output, output


def _dynamic_section(library: Path) -> str:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is needed to read the library's dynamic section")
    return _run([readelf, "-d", str(library)], timeout=60).stdout


def test_plugin_register_with_headers(built: tuple[Path, Path]):
    """dlopen of libsaphnet_plugins_autoregister.so (Triton's plugins=, trtexec
    --staticPlugins) and loadLibrary of libsaphnet_plugins.so (trtexec --dynamicPlugins,
    saphnet build) each register PDFConv/1/saphnet exactly once, against a stub libnvinfer."""
    include, build = built
    tested = _run(["ctest", "--test-dir", str(build), "-R", "pdfconv_plugin_register", "-V"], 300)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    assert "0 tests failed out of 2" in output, output
    assert "ok: dlopen registers PDFConv/1/saphnet exactly once" in output, output
    assert "ok: loadLibrary (getCreators) registers PDFConv/1/saphnet once" in output, output
    # Beside libsaphnet_plugins.so, needing the process's libnvinfer.so.<major>; the main
    # library is opened at load time, not a dependency (whose getCreators dlsym would find),
    # and no RUNPATH leads to the link stub.
    library = build / "libsaphnet_plugins_autoregister.so"
    assert library.is_file() and (build / "libsaphnet_plugins.so").is_file()
    dynamic = _dynamic_section(library)
    major = _version(include).split(".")[0]
    assert f"[libnvinfer.so.{major}]" in dynamic, dynamic
    assert "libsaphnet_plugins.so" not in dynamic, dynamic
    assert "RPATH" not in dynamic, dynamic
