"""``saphnet serve``: our backends behind a real Triton Inference Server (PyTriton).

PyTriton starts the ``tritonserver`` it ships and hands each batch Triton's dynamic
batcher forms to a Python callable here. Triton itself answers health, metadata and
metrics and rejects requests of the wrong dtype or rank; the callable rejects the
rest (sides under 16 px or over ``--max-size``) with an exception, which PyTriton
turns into an error response for those requests while the server goes on serving.

Triton batches only requests whose shapes are equal (no ragged batching is
declared), so one call holds images of one size: they run as one backend call (in
chunks that respect the memory budget and the engine profile's batch), and each
comes back with the same bytes as ``saphnet deblur`` gives for it alone. Images
larger than the profile or the budget go through ``saphnet.runtime.deblur`` one at
a time, which tiles them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np

from ..errors import SaphnetError
from ..runtime.api import deblur_batch, open_backend, profile_batch
from ..runtime.backend import Backend
from ..sizes import MIN_SIDE
from . import DEFAULT_MAX_SIDE, INPUT_NAME, MEMORY_BUDGET_MB, MODEL_NAME, OUTPUT_NAME, Endpoints

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


def prefer_own_libpython() -> None:
    """Put this interpreter's libpython first on ``LD_LIBRARY_PATH``.

    The Python-backend stub that ``tritonserver`` starts links ``libpython3.X.so``;
    where the system's copy is older than the interpreter PyTriton runs in, the stub
    fails ("'_thread.RLock' object has no attribute '_recursion_count'"). The server
    copies our environment, so setting it here reaches the stub.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not library or not (Path(libdir) / library).is_file():
        return
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if current[:1] != [libdir]:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *current])


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail in one line before starting Triton, which would otherwise time out."""
    if len(set(ports.values())) != len(ports):
        raise SaphnetError(f"ports must differ: {ports}; pass distinct --*-port values")
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                flag = name.replace("_", "-")
                raise SaphnetError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); pass another --{flag}"
                ) from None


def import_pytriton() -> tuple[type, type, type, type, type]:
    """PyTriton's classes, or a one-line error naming the extra to install."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise SaphnetError(
            "serving needs PyTriton and tritonclient: pip install 'saphnet[serve]'"
        ) from None
    return Triton, TritonConfig, ModelConfig, DynamicBatcher, Tensor


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


def open_backends(options: ServeOptions) -> list[Backend]:
    """One backend per model instance (each owns its session, engine context or model)."""
    backends: list[Backend] = []
    try:
        for _ in range(options.instances):
            backends.append(
                open_backend(
                    options.backend,
                    options.model,
                    options.weights,
                    device=options.device,
                    plugin_library=options.plugins,
                )
            )
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    return backends


def _reason(exc: Exception) -> str:
    """The telling line of a model-load failure (Triton wraps the Python traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line or "Exception:" in line]
    reason = (errors or lines or [type(exc).__name__])[-1]
    if "handshake" in str(exc) or "waiting for config file" in str(exc):
        # PyTriton gives instances after the first one second to find the first.
        reason += " (PyTriton's instance handshake timed out on a busy machine: start again)"
    return reason


def serve(options: ServeOptions) -> None:
    """Serve until Ctrl-C, SIGTERM or the server dies."""
    if options.max_batch < 1 or options.instances < 1:
        raise SaphnetError("--max-batch and --instances must be at least 1")
    triton_cls, config_cls, model_config_cls, batcher_cls, tensor_cls = import_pytriton()
    check_ports_free(
        options.host,
        {
            "http_port": options.http_port,
            "grpc_port": options.grpc_port,
            "metrics_port": options.metrics_port,
        },
    )
    backends = open_backends(options)
    max_batch = min(options.max_batch, profile_batch(backends[0]) or options.max_batch)
    if max_batch < options.max_batch:
        log.warning(
            "the engine's profile takes batches up to %d: serving --max-batch %d",
            max_batch,
            max_batch,
        )
    # A batch of one is dynamic batching off: Triton's default scheduler, one request a call.
    batcher = (
        batcher_cls(max_queue_delay_microseconds=options.batch_delay_us) if max_batch > 1 else None
    )
    prefer_own_libpython()
    config = config_cls(
        http_address=options.host,
        http_port=options.http_port,
        grpc_address=options.host,
        grpc_port=options.grpc_port,
        metrics_address=options.host,
        metrics_port=options.metrics_port,
        exit_timeout_secs=5,
        log_verbose=0,
    )
    try:
        with _sigterm_as_interrupt(), triton_cls(config=config) as triton:
            triton.bind(
                model_name=MODEL_NAME,
                infer_func=[
                    DeblurModel(b, options.max_side, options.memory_budget_mb) for b in backends
                ],
                inputs=[tensor_cls(name=INPUT_NAME, dtype=np.uint8, shape=(-1, -1, 3))],
                outputs=[tensor_cls(name=OUTPUT_NAME, dtype=np.uint8, shape=(-1, -1, 3))],
                config=model_config_cls(max_batch_size=max_batch, batcher=batcher),
                strict=True,
            )
            try:
                triton.run()
            except Exception as exc:  # PyTriton and tritonclient raise types of their own
                raise SaphnetError(f"tritonserver did not load the model: {_reason(exc)}") from None
            log.info(
                "serving model '%s' (%s, %d instance(s), batches up to %d) on http://%s, "
                "grpc %s, metrics http://%s:%d/metrics; Ctrl-C or SIGTERM stops",
                MODEL_NAME,
                backends[0].name,
                len(backends),
                max_batch,
                options.http_url,
                options.grpc_url,
                options.host,
                options.metrics_port,
            )
            triton.serve()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, even while starting: the with stopped it
        log.info("interrupted")
    finally:
        for backend in backends:
            backend.close()
    log.info("server stopped")
