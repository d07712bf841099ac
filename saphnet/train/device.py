"""The training device and what runs fast on it: mixed precision, memory layout,
which PDF backend the network gets, and the throughput figures a run logs."""

from __future__ import annotations

import logging

import torch

from ..errors import SaphnetError
from .settings import DEVICE_FORM

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when visible, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; asking
    for CUDA without it fails in one line."""
    if not DEVICE_FORM.match(name):
        raise SaphnetError(f"device {name!r} is not auto, cpu, cuda or cuda:N; pick one")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SaphnetError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise SaphnetError(
            f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible; "
            "pick cuda:0 or another visible one"
        )
    return device


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for training on ``device``: bfloat16 on GPUs that have it
    (no loss scaling needed, the range of float32), float16 on older GPUs, None (full
    float32) on CPU, where autocast would only slow the convolutions down."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe(device: torch.device) -> str:
    """``NVIDIA H200 (cuda:0, 139.8 GiB)`` or ``cpu (16 threads)``."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({device}, {props.total_memory / 2**30:.1f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"


def pdf_backends(device: torch.device) -> dict[str, str]:
    """Which PDF implementation the network's ``pdf_conv`` calls get on ``device``
    when training (gradients needed, float32: the PDF op runs outside autocast) and
    when evaluating (no gradients). Our CUDA kernel is forward-only, so training on a
    GPU takes torchvision's ``deform_conv2d`` (which has a CUDA backward) where it is
    installed, else the pure-PyTorch grid-sample form."""
    from ..ops.dispatch import resolve_backend

    x = torch.zeros(1, 2, 4, 4, device=device)
    offset = torch.zeros(1, 2, 4, 4, device=device)
    mask = torch.ones(1, 1, 4, 4, device=device)
    weight = torch.zeros(2, 2, 1, 1, device=device, requires_grad=True)
    with torch.no_grad():
        evaluation = resolve_backend("auto", x, offset, mask, weight).name
    return {"train": resolve_backend("auto", x, offset, mask, weight).name, "eval": evaluation}


def memory_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated by tensors since the start, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def utilization(device: torch.device) -> int | None:
    """The GPU's busy percentage over the last sample period as NVML reports it, or
    None where NVML (the ``nvidia-ml-py`` package) is missing or on CPU."""
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.utilization(device))
    except Exception:  # pynvml missing or NVML unavailable: no figure
        return None


class BusyMeter:
    """The fraction of wall time a GPU spends running kernels over a window of steps.

    ``torch.profiler`` records every kernel of the window; their summed durations over
    the window's wall time is how busy the run keeps the GPU (1.0: never idle, waiting
    for the host; it says nothing of how full each kernel keeps the SMs). Any profiler
    failure only costs the figure (None), never the run.
    """

    def __init__(self) -> None:
        self._profiler = None

    def start(self) -> None:
        try:
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CUDA])
            self._profiler.start()
        except Exception as exc:  # profiler unavailable (CUPTI missing, ...): no figure
            log.warning("GPU busy fraction not measured: %s", exc)
            self._profiler = None

    def stop(self, wall_s: float) -> float | None:
        """Stop recording; the kernels' share of ``wall_s`` (the window's duration)."""
        if self._profiler is None:
            return None
        try:
            self._profiler.stop()
            kernels_us = sum(
                getattr(e, "self_device_time_total", 0.0)
                for e in self._profiler.key_averages()
                if e.device_type == torch.autograd.DeviceType.CUDA
            )
        except Exception as exc:
            log.warning("GPU busy fraction not measured: %s", exc)
            return None
        finally:
            self._profiler = None
        return kernels_us / 1e6 / wall_s if wall_s > 0 else None
