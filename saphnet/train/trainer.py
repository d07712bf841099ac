"""The training loop: Adam, a step or cosine schedule, resumable atomic checkpoints.

A run lives in one folder:

    checkpoint.pt          everything needed to resume (model, optimizer, scheduler,
                           loss scaler, RNG states, iteration, settings), atomic
    latest.safetensors     deployable weights at the last checkpoint (SAPHNet.save)
    best.safetensors       deployable weights with the best validation PSNR so far
    history.jsonl          one JSON line per validation: iteration, PSNRs, loss, lr, time

Data items are seeded by their index (see :mod:`saphnet.data.datasets`), so a resumed
run draws exactly the batches the uninterrupted run would have drawn, and resuming
on the same machine reproduces it bit for bit on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import SaphnetError
from ..files import atomic_output
from ..model import SAPHNet, SAPHNetConfig
from .losses import make_loss
from .metrics import batch_psnr
from .settings import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LATEST = "latest.safetensors"
BEST = "best.safetensors"
HISTORY = "history.jsonl"


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) float arrays -> (N, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float()


def _collate(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    blurred, sharp = zip(*items, strict=True)
    return to_tensor(blurred), to_tensor(sharp)


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per iteration."""
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=settings.iterations, eta_min=settings.min_lr
        )
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma
    )


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SaphnetError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    return device


@dataclass
class TrainResult:
    iteration: int
    val_psnr: float
    input_psnr: float
    best_psnr: float
    elapsed_s: float


def start_at_identity(model: SAPHNet) -> None:
    """Zero the last convolution of every level's decoder.

    Each level adds its decoder's output to the image, so with zero heads the network
    is exactly the identity: the blurred input, already a good estimate, is where
    training starts. From a random head the first hundreds of steps only unlearn a
    random residual; with a short (CPU) budget that is a large share of the run. The
    heads get gradients at once and the layers before them from the second step.
    """
    for level in model.levels:
        torch.nn.init.zeros_(level.decoder.head.weight)
        torch.nn.init.zeros_(level.decoder.head.bias)


class Trainer:
    """Trains one SAPHNet; ``fit`` runs up to ``settings.iterations`` (or ``stop_at``)."""

    def __init__(
        self,
        config: SAPHNetConfig,
        settings: TrainSettings,
        train_set: Sequence[tuple[np.ndarray, np.ndarray]],
        val_set: Sequence[tuple[np.ndarray, np.ndarray]] | None,
        run_dir: str | os.PathLike[str],
        device: torch.device | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.train_set = train_set
        self.val_pairs = [val_set[i] for i in range(len(val_set))] if val_set else []
        self.run_dir = Path(run_dir)
        self.device = device or pick_device()
        torch.manual_seed(settings.seed)
        self.model = SAPHNet(config).to(self.device)
        if settings.identity_start:
            start_at_identity(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.scheduler = make_scheduler(self.optimizer, settings)
        self.amp = settings.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = make_loss(settings.loss)
        self.iteration = 0
        self.best_psnr = -math.inf
        self.elapsed_s = 0.0

    # -- checkpoints ---------------------------------------------------------------

    def state(self) -> dict:
        state = {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_json(),
            "settings": self.settings.to_json(),
            "best_psnr": self.best_psnr,
            "elapsed_s": self.elapsed_s,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self) -> Path:
        """Write checkpoint.pt and latest.safetensors atomically."""
        path = self.run_dir / CHECKPOINT
        with atomic_output(path, force=True) as tmp:
            torch.save(self.state(), tmp)
        self.model.save(self.run_dir / LATEST, force=True)
        return path

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint`."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise SaphnetError(
                f"cannot read checkpoint {path}: {exc}; give a checkpoint.pt"
            ) from None
        saved = SAPHNetConfig.from_json(state["config"])
        if saved != self.config:
            raise SaphnetError(
                f"checkpoint {path} is for network {saved}, not {self.config}; "
                "resume with the same network options"
            )
        old = TrainSettings.from_json(state["settings"])
        for name in ("batch_size", "crop", "lr", "schedule", "lr_step", "lr_gamma", "loss", "seed"):
            if getattr(old, name) != getattr(self.settings, name):
                log.warning(
                    "resuming with %s=%r, the checkpoint was trained with %r",
                    name,
                    getattr(self.settings, name),
                    getattr(old, name),
                )
        if old.schedule == "cosine" and old.iterations != self.settings.iterations:
            log.warning(
                "the cosine schedule keeps its length of %d iterations from the checkpoint; "
                "past it the rate rises again",
                old.iterations,
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.iteration = int(state["iteration"])
        self.best_psnr = float(state["best_psnr"])
        self.elapsed_s = float(state["elapsed_s"])
        log.info("resumed %s at iteration %d", path, self.iteration)

    def init_weights(self, path: str | os.PathLike[str]) -> None:
        """Start from trained weights (fine-tuning): the network's tensors only, with a
        fresh optimizer and schedule."""
        self.model.load_state_dict(SAPHNet.load(path, self.config).state_dict())
        log.info("initialised from %s", path)

    # -- one step, validation ------------------------------------------------------

    def step(self, blurred: torch.Tensor, sharp: torch.Tensor) -> tuple[float, float]:
        """One optimizer step; returns (loss, PSNR of the batch's outputs)."""
        self.model.train()
        blurred = blurred.to(self.device, non_blocking=True)
        sharp = sharp.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            output = self.model(blurred)
            loss = self.loss_fn(output.float(), sharp)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return float(loss.detach()), batch_psnr(output.float(), sharp)

    def validate(self) -> tuple[float, float]:
        """Mean PSNR of the network's outputs and of the blurred inputs on the
        validation pairs."""
        from .evaluate import deblur_array
        from .metrics import psnr

        out_psnr, in_psnr = [], []
        for blurred, sharp in self.val_pairs:
            out_psnr.append(psnr(deblur_array(self.model, blurred, self.device), sharp))
            in_psnr.append(psnr(blurred, sharp))
        return float(np.mean(out_psnr)), float(np.mean(in_psnr))

    # -- the loop --------------------------------------------------------------------

    def _loader(self, start: int, stop: int) -> DataLoader:
        b = self.settings.batch_size
        return DataLoader(
            self.train_set,  # type: ignore[arg-type]
            batch_size=b,
            sampler=range(start * b, stop * b),
            num_workers=self.settings.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
        )

    def _record(self, loss: float, train_psnr: float) -> tuple[float, float]:
        val, inp = self.validate() if self.val_pairs else (math.nan, math.nan)
        if self.val_pairs and val > self.best_psnr:
            self.best_psnr = val
            self.model.save(self.run_dir / BEST, force=True)
        line = {
            "iteration": self.iteration,
            "val_psnr": val,
            "input_psnr": inp,
            "loss": loss,
            "train_psnr": train_psnr,
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed_s": round(self.elapsed_s, 1),
        }
        with open(self.run_dir / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        log.info(
            "iteration %d: val PSNR %.2f dB (input %.2f dB, gain %+.2f dB), loss %.4f",
            self.iteration,
            val,
            inp,
            val - inp,
            loss,
        )
        return val, inp

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train from the current iteration to ``stop_at`` (default: the end),
        validating, checkpointing and exporting on the way."""
        from tqdm import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        stop = min(stop_at or s.iterations, s.iterations)
        loss_avg = psnr_avg = math.nan
        val = inp = math.nan
        bar = tqdm(total=stop, initial=self.iteration, desc="train", unit="it", mininterval=5.0)
        tick = time.perf_counter()
        for blurred, sharp in self._loader(self.iteration, stop):
            loss, train_psnr = self.step(blurred, sharp)
            if math.isnan(loss_avg):
                loss_avg, psnr_avg = loss, train_psnr
            loss_avg = 0.98 * loss_avg + 0.02 * loss
            psnr_avg = 0.98 * psnr_avg + 0.02 * train_psnr
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_avg:.4f}", psnr=f"{psnr_avg:.2f}", val=f"{val:.2f}", refresh=False
            )
            now = time.perf_counter()
            self.elapsed_s += now - tick
            tick = now
            done = self.iteration == stop
            if self.iteration % s.val_every == 0 or done:
                val, inp = self._record(loss_avg, psnr_avg)
            if self.iteration % s.checkpoint_every == 0 or done:
                self.save_checkpoint()
            tick = time.perf_counter()
        bar.close()
        return TrainResult(self.iteration, val, inp, self.best_psnr, self.elapsed_s)
