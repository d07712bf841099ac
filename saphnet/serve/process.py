"""``saphnet serve`` (or any tritonserver command) as a child process: free loopback
ports, a bounded wait until the model answers, a bounded stop.

The tests and ``benchmarks/serving.py`` start servers this way; so can an application
that wants a private server next to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SaphnetError
from . import MODEL_NAME, Endpoints

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Ports nothing listens on now (the OS picks them; all held until all are known)."""
    import socket

    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]


@dataclass
class ServerProcess(Endpoints):
    """A running server and where it listens."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    host: str = HOST

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Signal the server, wait at most ``timeout_s``, then kill its process group
        (tritonserver and the Python-backend stubs with it) and fail."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise SaphnetError(
                    f"the server did not stop in {timeout_s:.0f} s; killed it (log: {self.log})"
                ) from None
        return self.process.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def serve_command(*args: str) -> list[str]:
    """``saphnet serve ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "saphnet", "serve", *args]


def start(
    command: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    tritonserver: bool = False,
    timeout_s: float = START_TIMEOUT_S,
) -> ServerProcess:
    """Run ``command`` (``saphnet serve ...`` or, with ``tritonserver``, a tritonserver
    line; both without addresses and ports) on free loopback ports and wait until
    model ``saphnet`` is ready over HTTP."""
    import tritonclient.http as http

    http_port, grpc_port, metrics_port = free_ports(3)
    args = [*command]
    if tritonserver:
        args += ["--http-address", HOST, "--grpc-address", HOST, "--metrics-address", HOST]
    else:
        args += ["--host", HOST]
    args += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    args += ["--metrics-port", str(metrics_port)]
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = ServerProcess(process, http_port, grpc_port, metrics_port, log)
    deadline = time.monotonic() + timeout_s
    client = http.InferenceServerClient(server.http_url, connection_timeout=5, network_timeout=5)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SaphnetError(
                    f"the server exited with {process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if client.is_model_ready(MODEL_NAME):
                    return server
            time.sleep(0.5)
        server.kill()
        raise SaphnetError(f"the server was not ready in {timeout_s:.0f} s:\n{server.log_tail()}")
    finally:
        client.close()
