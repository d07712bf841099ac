"""The ``tritonserver`` that PyTriton ships, run as a plain Triton on a model repository.

``saphnet serve`` and the tests run it this way, on the Python-backend model that
``saphnet triton-repo --kind python`` writes, so the server is a stock Triton:
it loads the model before it opens its endpoints (``/v2/health/ready`` answers 200
only once the model is ready), and the model answers each request on its own, a
request it cannot take with a 400 and one line (PyTriton's callable interface
answers every exception with a 500 and the server's traceback).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from ..errors import SaphnetError


def _pytriton() -> tuple[Path, Path, Path]:
    """(tritonserver folder, Python-backend stub for this interpreter, bundled libraries),
    or a one-line error naming the extra to install."""
    try:
        from pytriton.triton import TRITONSERVER_DIST_DIR
        from pytriton.utils.distribution import get_libs_path, get_stub_path
    except ImportError:
        raise SaphnetError(
            "serving needs PyTriton and tritonclient: pip install 'saphnet[serve]'"
        ) from None
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return Path(TRITONSERVER_DIST_DIR), Path(get_stub_path(version)), Path(get_libs_path())


def backend_dir(folder: Path) -> Path:
    """A backend directory in ``folder``: PyTriton's Python backend plus the stub built
    for this interpreter's Python version (laid out as PyTriton lays it out)."""
    dist, stub, _ = _pytriton()
    python = folder / "backends" / "python"
    shutil.copytree(dist / "backends" / "python", python)
    shutil.copy(stub, python / "triton_python_backend_stub")
    return folder / "backends"


def environment() -> dict[str, str]:
    """This process's environment with what the server and its Python stub need.

    The stub links ``libpython3.X.so``; where the system's copy is older than this
    interpreter, it fails ("'_thread.RLock' object has no attribute
    '_recursion_count'") unless this interpreter's own LIBDIR comes first (FACTS.md).
    The stub runs the ``python`` first on ``PATH``: this interpreter's, which has saphnet.
    """
    _, _, libs = _pytriton()
    env = dict(os.environ)
    paths = [sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def command(repository: Path, backends: Path, *args: str) -> list[str]:
    """The ``tritonserver`` command line for ``repository`` (addresses, ports and the
    like in ``args``)."""
    dist, _, _ = _pytriton()
    return [
        str(dist / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        *args,
    ]
