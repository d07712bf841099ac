"""Running PyTriton's own ``tritonserver`` binary on a model repository in tests,
as a stock server runs it (no PyTriton in the loop): loopback only, free ports."""

from __future__ import annotations

from pathlib import Path

from saphnet.serve import tritonserver
from saphnet.serve.process import ServerProcess, start


def start_tritonserver(repository: Path, work: Path) -> ServerProcess:
    """PyTriton's ``tritonserver`` binary serving ``repository``."""
    command = tritonserver.command(
        repository, tritonserver.backend_dir(work), "--exit-timeout-secs=5"
    )
    return start(command, work / "tritonserver.log", tritonserver.environment(), tritonserver=True)
