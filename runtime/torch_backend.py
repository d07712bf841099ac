"""PyTorch backend: the reference every other backend is compared with.

Runs :class:`saphnet.model.SAPHNet` eagerly (or through ``torch.compile`` for the
benchmark baseline) in FP32 or FP16 on CPU or CUDA. Without a weights file it uses
the shipped checkpoint; before one is shipped, a randomly initialised default config
(with a warning), so the pipeline still runs end to end.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..errors import SaphnetError
from ..model import SAPHNet, SAPHNetConfig
from ..weights import default_weights

log = logging.getLogger(__name__)


def load_model(
    weights: str | os.PathLike[str] | None = None, config: SAPHNetConfig | None = None
) -> SAPHNet:
    """``weights``, else the shipped checkpoint, else a random ``config`` (default
    config when None) with a warning; eval mode, on CPU."""
    path = weights or (default_weights() if config is None else None)
    if path is not None:
        return SAPHNet.load(path, config)
    log.warning(
        "no trained weights shipped yet: using a randomly initialised network (outputs are not deblurred)"
    )
    torch.manual_seed(0)
    return SAPHNet(config or SAPHNetConfig()).eval()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SaphnetError("CUDA is not available to PyTorch here; use --device cpu")
    return torch.device(device)


class TorchBackend:
    """SAPHNet in PyTorch behind the :class:`~saphnet.runtime.backend.Backend` protocol."""

    name = "torch"

    def __init__(
        self,
        model: SAPHNet | None = None,
        weights: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
        device: str = "auto",
        compile: bool = False,
    ) -> None:
        if precision not in ("fp32", "fp16"):
            raise SaphnetError(f"precision {precision!r} is not fp32 or fp16")
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise SaphnetError(
                "the torch backend runs FP16 only on CUDA; use --precision fp32 on CPU"
            )
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        net = model if model is not None else load_model(weights)
        self.model = net.eval().to(self.device, self.dtype)
        self.config = net.config
        self._run = torch.compile(self.model) if compile else self.model
        if compile:
            self.name = "torch-compile"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
            y = self._run(x)
            return y.float().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work (timing needs it; ``infer`` already waits by copying)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._run = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
