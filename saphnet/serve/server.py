"""``saphnet serve``: our backends behind a real Triton Inference Server.

It writes a python-kind model repository (``saphnet triton-repo --kind python``'s
model, opening the given file or weights where they lie) into a temporary folder
and runs the ``tritonserver`` PyTriton ships on it (:mod:`.tritonserver`). Triton
loads the model before it opens its endpoints, so ``/v2/health/ready`` answers 200
only when the model is ready; it answers health, metadata and metrics and rejects
requests of the wrong dtype or rank. The model (:class:`DeblurModel` in
``triton_python_model.py``) refuses the rest (sides under 16 px or over
``--max-size``, empty images) with a 400 and one line naming the limit, each
request on its own, while the server goes on serving.

Triton batches only requests whose shapes are equal (no ragged batching is
declared), so one call holds images of one size: they run as one backend call (in
chunks that respect the memory budget and the engine profile's batch), and each
comes back with the same bytes as ``saphnet deblur`` gives for it alone. Images
larger than the profile or the budget go through ``saphnet.runtime.deblur`` one at
a time, which tiles them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import numpy as np

from ..errors import SaphnetError
from ..runtime.api import deblur_batch, open_backend, profile_batch
from ..runtime.backend import Backend
from ..sizes import MIN_SIDE
from . import DEFAULT_MAX_SIDE, INPUT_NAME, MEMORY_BUDGET_MB, MODEL_NAME, OUTPUT_NAME, Endpoints
from .process import STOP_TIMEOUT_S

log = logging.getLogger(__name__)

"""The network's smallest side (the same floor ``saphnet deblur`` applies to files)."""


@dataclass(frozen=True)
class ServeOptions(Endpoints):
    """Everything ``saphnet serve`` takes; the defaults are the CLI's."""

    model: Path | None = None
    backend: str = "auto"
    weights: Path | None = None
    device: str = "auto"
    plugins: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 4
    batch_delay_us: int = 2000
    instances: int = 1
    max_side: int = DEFAULT_MAX_SIDE
    memory_budget_mb: int = MEMORY_BUDGET_MB


def check_request(image: np.ndarray, max_side: int) -> None:
    """Refuse what the network cannot take, in one line the client reads back."""
    if image.dtype != np.uint8:
        raise SaphnetError(f"input '{INPUT_NAME}' is {image.dtype}; send UINT8 RGB")
    if image.ndim != 4 or image.shape[-1] != 3:
        raise SaphnetError(
            f"input '{INPUT_NAME}' has shape {list(image.shape)}; send [batch, H, W, 3] RGB"
        )
    h, w = image.shape[1:3]
    if min(h, w) < MIN_SIDE:
        raise SaphnetError(
            f"image {h}x{w} has a side under {MIN_SIDE} px; send at least {MIN_SIDE}x{MIN_SIDE}"
        )
    if max(h, w) > max_side:
        raise SaphnetError(
            f"image {h}x{w} has a side over this server's limit of {max_side} px "
            "(saphnet serve --max-size); send a smaller image or tile it"
        )


class DeblurModel:
    """One Triton model instance: a backend and the request checks.

    PyTriton calls it with the requests of one batch (a list of ``{name: array}``)
    and expects one ``{name: array}`` per request back.
    """

    def __init__(self, backend: Backend, max_side: int, memory_budget_mb: float) -> None:
        self.backend = backend
        self.max_side = max_side
        self.memory_budget_mb = memory_budget_mb

    def __call__(self, requests: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        images = [request[INPUT_NAME] for request in requests]
        for image in images:
            check_request(image, self.max_side)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape[1:], []).append(i)
        outputs: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
        for members in groups.values():
            stacked = np.concatenate([images[i] for i in members])
            result = deblur_batch(self.backend, stacked, memory_budget_mb=self.memory_budget_mb)
            start = 0
            for i in members:
                count = images[i].shape[0]
                outputs[i] = result[start : start + count]
                start += count
        return [{OUTPUT_NAME: out} for out in outputs]


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail in one line before starting Triton, which would otherwise time out."""
    if len(set(ports.values())) != len(ports):
        raise SaphnetError(f"ports must differ: {ports}; pass distinct --*-port values")
    try:
        socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not an address"
        raise SaphnetError(
            f"--host {host!r} is not an address of this machine ({reason}); "
            "pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # a real address, but not this machine's
                    raise SaphnetError(
                        f"cannot listen on {host} ({exc.strerror}): it is not an address of "
                        "this machine; pass --host 127.0.0.1 or 0.0.0.0"
                    ) from None
                flag = name.replace("_", "-")
                raise SaphnetError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); pass another --{flag}"
                ) from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (Kubernetes, systemd, ``kill``) takes the same clean path as Ctrl-C."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def model_params(options: ServeOptions) -> tuple[dict[str, str], int, bool]:
    """What the Python-backend model opens, the largest batch, and whether its instances
    are GPU instances. The backend is opened here once and closed, so a bad model or
    option fails in one line before any server starts, and ``auto`` is resolved once."""
    backend = open_backend(
        options.backend,
        options.model,
        options.weights,
        device=options.device,
        plugin_library=options.plugins,
    )
    try:
        max_batch = min(options.max_batch, profile_batch(backend) or options.max_batch)
        params = {"backend": backend.name, "device": options.device}
        path = getattr(backend, "path", None) or options.model  # ONNX Runtime: the (cached) file
        if backend.name == "torch":
            params["weights"] = str(Path(options.weights).resolve()) if options.weights else ""
        elif path is not None:
            params["model"] = str(Path(path).resolve())
    finally:
        backend.close()
    gpu = backend.name == "tensorrt" or options.device == "cuda"
    return params, max_batch, gpu


def write_serve_repository(folder: Path, options: ServeOptions) -> tuple[Path, int, str]:
    """A python-kind repository in ``folder`` whose model opens the file or weights of
    ``options`` where they lie; returns (repository, largest batch, backend name)."""
    from .triton_repo import PYTHON_MODEL, RepoOptions, python_config

    params, max_batch, gpu = model_params(options)
    model = params.pop("model", None)
    version = folder / "repository" / MODEL_NAME / "1"
    version.mkdir(parents=True)
    shutil.copyfile(PYTHON_MODEL, version / "model.py")
    if model is not None:  # beside model.py, as in a repository of --kind python
        name = "model" + Path(model).suffix.lower()
        os.symlink(model, version / name)
        sidecar = Path(model + ".json")
        if sidecar.is_file():
            os.symlink(sidecar, version / (name + ".json"))
        params["model_file"] = name
    repo_options = RepoOptions(
        max_batch=max_batch,
        batch_delay_us=options.batch_delay_us,
        instances=options.instances,
        max_side=options.max_side,
        memory_budget_mb=options.memory_budget_mb,
        plugin_library=str(Path(options.plugins).resolve()) if options.plugins else None,
    )
    (version.parent / "config.pbtxt").write_text(python_config(repo_options, params, gpu))
    return folder / "repository", max_batch, params["backend"]


EXPECTED_ERRORS = ("NVML",)
"""Error lines of tritonserver that say nothing to act on: without an NVIDIA driver
its GPU metrics cannot start ("Failed to initialize NVML"), and a CPU model needs none."""


def _forward_log(stream: IO[bytes], tail: deque[str]) -> None:
    """tritonserver's log into ours at DEBUG (``saphnet -v serve`` shows it), its errors
    at ERROR but for :data:`EXPECTED_ERRORS`; the last lines are kept for the one-line
    start-up error."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        error = line.startswith("E") and not any(e in line for e in EXPECTED_ERRORS)
        log.log(logging.ERROR if error else logging.DEBUG, "tritonserver: %s", line)


def _reason(tail: deque[str]) -> str:
    """The telling line of a failed start (Triton's error lines, else its last line)."""
    errors = [
        line
        for line in tail
        if (line.startswith("E") or "Error" in line) and not any(e in line for e in EXPECTED_ERRORS)
    ]
    line = (errors or list(tail) or ["no output"])[-1]
    return line.split("] ", 1)[-1]  # drop Triton's "E1206 12:00:00.0 123 file.cc:45] "


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def serve(options: ServeOptions) -> None:
    """Serve until Ctrl-C, SIGTERM or the server dies."""
    from . import tritonserver

    if options.max_batch < 1 or options.instances < 1:
        raise SaphnetError("--max-batch and --instances must be at least 1")
    ports = {
        "http_port": options.http_port,
        "grpc_port": options.grpc_port,
        "metrics_port": options.metrics_port,
    }
    check_ports_free(options.host, ports)
    env = tritonserver.environment()  # fails in one line where PyTriton is missing
    work = Path(tempfile.mkdtemp(prefix="saphnet-serve-"))
    process = None
    try:
        repository, max_batch, backend_name = write_serve_repository(work, options)
        if max_batch < options.max_batch:
            log.warning(
                "the engine's profile takes batches up to %d: serving --max-batch %d",
                max_batch,
                max_batch,
            )
        cmd = tritonserver.command(
            repository,
            tritonserver.backend_dir(work),
            f"--http-address={options.host}",
            f"--http-port={options.http_port}",
            f"--grpc-address={options.host}",
            f"--grpc-port={options.grpc_port}",
            f"--metrics-address={options.host}",
            f"--metrics-port={options.metrics_port}",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        )
        tail: deque[str] = deque(maxlen=50)
        with _sigterm_as_interrupt():
            # In the work folder: the model's Python imports saphnet, and a source
            # checkout's saphnet/ in the caller's folder (which lacks saphnet.runtime,
            # mapped from runtime/ only by the install) would shadow the installed one.
            process = subprocess.Popen(
                cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            reader = threading.Thread(target=_forward_log, args=(process.stdout, tail), daemon=True)
            reader.start()
            health = f"http://{options.http_url}/v2/health/ready"
            # Triton loads the model before it opens its endpoints: ready means the model is.
            while not _ready(health):
                if process.poll() is not None:
                    reader.join(5)
                    raise SaphnetError(f"tritonserver did not load the model: {_reason(tail)}")
                time.sleep(0.2)
            log.info(
                "serving model '%s' (%s, %d instance(s), batches up to %d) on http://%s, "
                "grpc %s, metrics http://%s:%d/metrics; Ctrl-C or SIGTERM stops",
                MODEL_NAME,
                backend_name,
                options.instances,
                max_batch,
                options.http_url,
                options.grpc_url,
                options.host,
                options.metrics_port,
            )
            code = process.wait()
            reader.join(5)
            raise SaphnetError(f"tritonserver exited with status {code}: {_reason(tail)}")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, even while starting
        log.info("interrupted")
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)
    log.info("server stopped")
