"""Starting and stopping ``saphnet serve`` in tests: loopback only, free ports, bounded waits."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (the OS picks them; all held until all are known)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


@dataclass
class Server:
    """A running ``saphnet serve`` subprocess and where it listens."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait (bounded); kill its process group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                raise AssertionError(
                    f"saphnet serve did not stop in {STOP_TIMEOUT_S:.0f} s\n{self.log_tail()}"
                ) from None
        return self.process.returncode


def start_server(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None, triton: bool = False
) -> Server:
    """Run ``command`` (a ``saphnet serve`` line, without ports) on free loopback
    ports and wait until the model is ready over HTTP."""
    import tritonclient.http as http

    http_port, grpc_port, metrics_port = free_ports(3)
    # saphnet serve and tritonserver spell these flags alike.
    args = [*command, "--http-address" if triton else "--host", HOST]
    if triton:
        args += ["--grpc-address", HOST]
    args += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    args += ["--metrics-port", str(metrics_port)]
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(process, http_port, grpc_port, metrics_port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    client = http.InferenceServerClient(server.http_url, connection_timeout=5, network_timeout=5)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"saphnet serve exited with {process.returncode}\n{server.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if client.is_model_ready("saphnet"):
                    return server
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError(
            f"saphnet serve not ready in {START_TIMEOUT_S:.0f} s\n{server.log_tail()}"
        )
    finally:
        client.close()


def python_backend_dir(folder: Path) -> Path:
    """A backend directory for PyTriton's tritonserver: its Python backend plus the
    stub built for this interpreter's Python version (laid out as PyTriton does)."""
    import sys

    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_stub_path

    python = folder / "backends" / "python"
    shutil.copytree(TRITONSERVER_DIST_DIR / "backends" / "python", python)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy(get_stub_path(version), python / "triton_python_backend_stub")
    return folder / "backends"


def start_tritonserver(repository: Path, work: Path) -> Server:
    """PyTriton's ``tritonserver`` binary on ``repository``, loopback only, as a stock
    server would run it (no PyTriton in the loop)."""
    import sys
    import sysconfig

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
        "--metrics-address",
        HOST,
    ]
    return start_server(command, work / "tritonserver.log", env, triton=True)
