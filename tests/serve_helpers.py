"""Running PyTriton's own ``tritonserver`` binary on a model repository in tests,
as a stock server runs it (no PyTriton in the loop): loopback only, free ports."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from saphnet.serve.process import ServerProcess, start


def python_backend_dir(folder: Path) -> Path:
    """A backend directory for PyTriton's tritonserver: its Python backend plus the
    stub built for this interpreter's Python version (laid out as PyTriton does)."""
    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_stub_path

    python = folder / "backends" / "python"
    shutil.copytree(TRITONSERVER_DIST_DIR / "backends" / "python", python)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy(get_stub_path(version), python / "triton_python_backend_stub")
    return folder / "backends"


def start_tritonserver(repository: Path, work: Path) -> ServerProcess:
    """PyTriton's ``tritonserver`` binary serving ``repository``."""
    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_libs_path

    backends = python_backend_dir(work)
    env = dict(os.environ)
    # FACTS.md: the stub must find this interpreter's libpython before the system's.
    libs = [sysconfig.get_config_var("LIBDIR"), str(get_libs_path())]
    env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    command = [
        str(TRITONSERVER_DIST_DIR / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        "--exit-timeout-secs=5",
    ]
    return start(command, work / "tritonserver.log", env, tritonserver=True)
