"""Backend registry for :func:`saphnet.ops.pdf_conv`.

The reference is always there, with its faster grid_sample form for float32/float64;
torchvision's ``deform_conv2d`` registers itself when
torchvision imports; our CUDA kernel (``saphnet.plugins``) registers when its library
loads. ``auto`` takes the first registered backend whose predicate accepts the tensors,
in priority order, so a faster implementation plugs in without the model changing.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Predicate = Callable[..., bool]


@dataclass(frozen=True)
class Backend:
    """One implementation of the PDF operator and the tensors it accepts."""

    name: str
    fn: Callable[..., torch.Tensor]
    accepts: Predicate
    priority: int


_BACKENDS: dict[str, Backend] = {}


def register_backend(
    name: str, fn: Callable[..., torch.Tensor], accepts: Predicate, priority: int
) -> None:
    """Add (or replace) a backend; higher ``priority`` is tried first by ``auto``."""
    _BACKENDS[name] = Backend(name, fn, accepts, priority)


def available_backends() -> list[str]:
    """Registered backend names (the built-in ones included), highest priority first."""
    _register_builtin()
    return [b.name for b in sorted(_BACKENDS.values(), key=lambda b: -b.priority)]


def resolve_backend(
    name: str,
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
) -> Backend:
    """The backend ``name`` (or the best one accepting these tensors for ``auto``)."""
    _register_builtin()
    if name == "auto":
        for backend in sorted(_BACKENDS.values(), key=lambda b: -b.priority):
            if backend.accepts(x, offset, mask, weight):
                return backend
        raise RuntimeError("pdf_conv: no backend accepts these tensors")  # pragma: no cover
    if name not in _BACKENDS:
        raise ValueError(
            f"pdf_conv: unknown backend {name!r}; available: {', '.join(available_backends())}"
        )
    return _BACKENDS[name]


def select_backend(
    name: str,
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
) -> Callable[..., torch.Tensor]:
    """The function to run for ``name`` (or the best accepting backend for ``auto``)."""
    return resolve_backend(name, x, offset, mask, weight).fn


@contextlib.contextmanager
def forced_backend(name: str) -> Iterator[None]:
    """Within the block, ``auto`` runs ``name`` for every call: how a timing or parity run
    compares implementations of the PDF op inside one unchanged model."""
    _register_builtin()
    if name not in _BACKENDS:
        raise ValueError(
            f"pdf_conv: unknown backend {name!r}; available: {', '.join(available_backends())}"
        )
    saved = dict(_BACKENDS)
    chosen = saved[name]
    _BACKENDS.clear()
    _BACKENDS[name] = Backend(name, chosen.fn, lambda *_: True, chosen.priority)
    try:
        yield
    finally:
        _BACKENDS.clear()
        _BACKENDS.update(saved)


def _torchvision_accepts(x: torch.Tensor, *_: torch.Tensor) -> bool:
    # torchvision's CPU kernel has no half-precision path; its CUDA kernel has.
    if x.device.type == "cuda":
        return True
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _gridsample_accepts(x: torch.Tensor, *_: torch.Tensor) -> bool:
    # float16 grids cannot hold pixel coordinates of large images to sub-pixel precision.
    return x.device.type in ("cpu", "cuda") and x.dtype in (torch.float32, torch.float64)


_BUILTIN_DONE = False


def _register_builtin() -> None:
    global _BUILTIN_DONE
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE = True
    from .pdf_conv import _torchvision_deform_conv, pdf_conv_gridsample, pdf_conv_reference

    register_backend("reference", pdf_conv_reference, lambda *_: True, priority=0)
    register_backend("gridsample", pdf_conv_gridsample, _gridsample_accepts, priority=5)
    from ..plugins import register_torch_backend

    register_torch_backend()  # our CUDA kernel (priority 20) when libsaphnet_plugins.so is built
    if importlib.util.find_spec("torchvision") is not None:
        try:
            import torchvision.ops  # noqa: F401  (fails beside a mismatched torch)
        except Exception:  # pragma: no cover - depends on the environment
            return
        register_backend("torchvision", _torchvision_deform_conv, _torchvision_accepts, 10)
