"""What the machine is, and a plugin library that holds code for its GPU.

The versions and the library's checksum make every later figure traceable. A library
built for other GPU architectures fails at the first kernel launch with "no kernel
image", so on a GPU the library's architectures are read with ``cuobjdump`` and, when
none runs natively here, one is built with CMake for exactly this GPU
(``CMAKE_CUDA_ARCHITECTURES=native``) into the cache, and used for the rest of the run.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from .. import __version__, plugins
from ..errors import SaphnetError
from ..files import sha256_file

log = logging.getLogger(__name__)

PLUGIN_SOURCES = Path(plugins.__file__).resolve().parent.parent / "plugins"


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception:  # not installed, or broken beside this torch
        return "not installed"


def _run(cmd: list[str], timeout: float = 30) -> str | None:
    """A tool's stdout, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def cuda_tool(name: str) -> str | None:
    """A CUDA toolkit program on PATH or in $CUDA_HOME/bin or /usr/local/cuda/bin."""
    found = shutil.which(name)
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / name).is_file():
            return str(Path(root) / "bin" / name)
    return None


def driver_version() -> str:
    """The NVIDIA driver's version, from nvidia-smi or NVML (nvidia-ml-py)."""
    text = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if text and text.strip():
        return text.strip().splitlines()[0]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML bindings, or no driver to ask
        return "unknown (no nvidia-smi or NVML)"


def gpu_info() -> dict[str, object] | None:
    """Name, compute capability, memory and driver of GPU 0; None without a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "compute capability": f"{props.major}.{props.minor}",
        "gpu memory GiB": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "driver": driver_version(),
        "torch CUDA": torch.version.cuda,
    }


def versions() -> dict[str, object]:
    """Python, saphnet and the libraries every figure depends on."""
    import torch

    info: dict[str, object] = {
        "saphnet": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
    }
    try:
        import onnxruntime

        info["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    nvcc = cuda_tool("nvcc")
    text = _run([nvcc, "--version"]) if nvcc else None
    match = re.search(r"release ([\d.]+)", text or "")
    info["nvcc"] = match.group(1) if match else "not found"
    info["compute-sanitizer"] = cuda_tool("compute-sanitizer") or "not found"
    return info


def parse_architectures(listing: str) -> set[str]:
    """``sm_90``, ``sm_90a``, ... named in ``cuobjdump --list-elf`` / ``--list-ptx`` output."""
    return set(re.findall(r"sm_(\d+a?)\b", listing))


def runs_natively(sass: set[str], capability: tuple[int, int]) -> bool:
    """Whether one of the library's SASS architectures runs on this GPU without a JIT.

    SASS for sm_XY runs on a GPU of the same major version and a minor >= Y; the
    architecture-specific ``sm_XYa`` runs on sm_XY alone.
    """
    major, minor = capability
    for arch in sass:
        if arch.endswith("a"):
            if int(arch[:-1]) == major * 10 + minor:
                return True
            continue
        number = int(arch)
        if number // 10 == major and number % 10 <= minor:
            return True
    return False


def library_architectures(path: Path) -> tuple[set[str], set[str]] | None:
    """(SASS, PTX) architectures in the library, or None without cuobjdump."""
    tool = cuda_tool("cuobjdump")
    if tool is None:
        return None
    elf = _run([tool, "--list-elf", str(path)]) or ""
    ptx = _run([tool, "--list-ptx", str(path)]) or ""
    return parse_architectures(elf), parse_architectures(ptx)


def first_error(output: str) -> str:
    """The first error of a CMake or compiler log with the line after it (CMake puts the
    reason there), else its last line: one line for the report."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if re.search(r"\berror\b", line, re.IGNORECASE):
            return " ".join(lines[i : i + 2])[:300]
    return lines[-1][:300] if lines else "no output"


def build_native(build_dir: Path, jobs: int | None = None) -> Path:
    """Configure and build the plugin library for this machine's GPU; its path."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SaphnetError("cmake not found; install it (pip install cmake) to build the plugin")
    if not (PLUGIN_SOURCES / "CMakeLists.txt").is_file():
        raise SaphnetError(
            f"no plugin sources at {PLUGIN_SOURCES}; install saphnet from a source checkout"
        )
    nvcc = cuda_tool("nvcc")
    configure = [
        cmake, "-S", str(PLUGIN_SOURCES), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
        "-DCMAKE_CUDA_ARCHITECTURES=native", "-DSAPHNET_BUILD_TESTS=OFF",
    ]  # fmt: skip
    if nvcc:
        configure.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    jobs = jobs or os.cpu_count() or 2
    for cmd in (configure, [cmake, "--build", str(build_dir), "-j", str(jobs)]):
        log.info("%s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            step = "configure" if cmd is configure else "build"
            raise SaphnetError(f"plugin {step} failed: {first_error(done.stdout + done.stderr)}")
    library = build_dir / plugins.LIBRARY_NAME
    if not library.is_file():
        raise SaphnetError(f"the plugin build wrote no {library}")
    return library


def use_library(path: Path) -> None:
    """Make ``path`` the library every later call in this process loads."""
    os.environ[plugins.ENV_VAR] = str(path)
    plugins.load_library.cache_clear()
    plugins.register_torch_backend()


def plugin_library(capability: tuple[int, int] | None, build_dir: Path) -> dict[str, object]:
    """Find the library (building one for this GPU when none runs natively on it) and
    describe it: path, SHA-256, API version, CUDA and TensorRT parts, architectures."""
    info: dict[str, object] = {}
    try:
        path = plugins.library_path()
    except SaphnetError as exc:
        path = None
        info["plugin library"] = f"none ({exc})"
    if capability is not None:
        archs = library_architectures(path) if path is not None else (set(), set())
        arch_name = f"sm_{capability[0]}{capability[1]}"
        if archs is None:
            info["plugin architectures"] = "unknown (no cuobjdump); used as found"
        elif not runs_natively(archs[0], capability):
            why = "no library" if path is None else f"{path} has SASS for {sorted(archs[0])}"
            log.info("%s, none for this %s GPU: building one with CMake", why, arch_name)
            info["plugin built"] = f"{why}, none for {arch_name}: built for the native architecture"
            path = build_native(build_dir / f"plugins-{arch_name}")
            use_library(path)
            archs = library_architectures(path)
        if archs is not None:
            info["plugin SASS"] = ", ".join(sorted(archs[0])) or "none"
            info["plugin PTX"] = ", ".join(sorted(archs[1])) or "none"
    if path is None:
        return info
    info["plugin library"] = str(path)
    info["plugin SHA-256"] = sha256_file(path)
    info["plugin API version"] = plugins.version()
    info["plugin has CUDA kernels"] = plugins.has_cuda()
    info["plugin has TensorRT plugin"] = plugins.has_tensorrt()
    if plugins.has_tensorrt():  # for Triton's plugins=, trtexec --staticPlugins, LD_PRELOAD
        try:
            info["plugin autoregister library"] = str(plugins.autoregister_library_path())
        except SaphnetError as exc:
            info["plugin autoregister library"] = f"none ({exc})"
    return info
