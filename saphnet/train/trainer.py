"""The training loop: Adam, a step or cosine schedule (by steps, or by time over a
wall-clock budget), resumable atomic checkpoints, throughput figures.

A run lives in one folder:

    checkpoint.pt          everything needed to resume (model, optimizer, scheduler,
                           loss scaler, RNG states, iteration, settings), atomic
    latest.safetensors     deployable weights at the last checkpoint (SAPHNet.save)
    best.safetensors       deployable weights with the best validation PSNR so far
    history.jsonl          one JSON line per validation: iteration, PSNRs, loss, lr, time

(:mod:`saphnet.train.finish` adds the final weights, evaluation and ONNX export.)

Data items are seeded by their index (see :mod:`saphnet.data.datasets` and
:mod:`saphnet.data.device_batches`), so a resumed run draws exactly the batches the
uninterrupted run would have drawn, and resuming on the same machine reproduces a
step-count run bit for bit on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import SaphnetError, first_line
from ..files import atomic_output
from ..model import SAPHNet, SAPHNetConfig
from .budget import cosine_lr, format_duration
from .device import BusyMeter, amp_dtype, memory_gib, pdf_backends, pick_device, utilization
from .losses import make_loss
from .metrics import batch_psnr_tensor
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


class BatchSource(Protocol):
    """Training batches made where they are used (see
    :class:`saphnet.data.device_batches.DeviceBlurBatches`)."""

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per iteration; None for a budgeted run, whose rate follows the
    spent fraction of its time budget (:func:`saphnet.train.budget.cosine_lr`)."""
    if settings.time_budget_s is not None:
        return None
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=settings.iterations, eta_min=settings.min_lr
        )
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma
    )


@dataclass
class TrainResult:
    iteration: int
    val_psnr: float
    input_psnr: float
    best_psnr: float
    elapsed_s: float
    last_step_s: float = math.nan
    """Run time when the last step ended (before the final validation and checkpoint)."""
    throughput: dict = field(default_factory=dict)
    """What the run's steps achieved (see :meth:`Trainer.throughput`)."""


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
    """Trains one SAPHNet; ``fit`` runs up to ``settings.iterations`` (or ``stop_at``),
    or until ``settings.time_budget_s`` is spent.

    ``train_set`` is either indexable (items blurred per crop on the CPU, batched by a
    DataLoader) or a :class:`BatchSource` whose batches are made on the device.
    """

    def __init__(
        self,
        config: SAPHNetConfig,
        settings: TrainSettings,
        train_set: Sequence[tuple[np.ndarray, np.ndarray]] | BatchSource,
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
        self.channels_last = (
            self.device.type == "cuda" if settings.channels_last is None else settings.channels_last
        )
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = SAPHNet(config).to(self.device, memory_format=memory_format)
        if settings.identity_start:
            start_at_identity(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.scheduler = make_scheduler(self.optimizer, settings)
        self.amp_dtype = amp_dtype(self.device, settings.amp)
        if self.device.type == "cuda":
            # Fixed crop sizes: let cuDNN time its algorithms once. With mixed precision
            # on, the float32 parts (the PDF op's GEMMs) may use TF32 tensor cores too.
            torch.backends.cudnn.benchmark = True
            if self.amp_dtype is not None:
                torch.backends.cuda.matmul.allow_tf32 = True
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.loss_fn = make_loss(settings.loss)
        self.forward = self._compiled() if settings.compile else self.model
        self.iteration = 0
        self.best_psnr = -math.inf
        self.elapsed_s = 0.0
        self.pdf_backends = pdf_backends(self.device)
        self._steps_timed = 0
        self._step_seconds = 0.0
        self._max_step_s = 0.0
        self._utilization: list[int] = []
        self._busy: float | None = None
        log.info(
            "training on %s: mixed precision %s, channels-last %s, torch.compile %s, "
            "PDF op %s (training) / %s (evaluation)",
            self.device,
            "off" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch."),
            "on" if self.channels_last else "off",
            "on" if settings.compile else "off",
            self.pdf_backends["train"],
            self.pdf_backends["eval"],
        )

    def _compiled(self) -> torch.nn.Module:
        """``torch.compile`` of the network (compiled lazily, at the first step)."""
        return torch.compile(self.model)  # type: ignore[return-value]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The training forward pass; a network that fails to compile trains eagerly
        (with a warning) instead of ending the run."""
        if self.forward is self.model:
            return self.model(x)
        try:
            return self.forward(x)
        except Exception as exc:
            log.warning(
                "torch.compile failed (%s); training without it",
                first_line(exc),
            )
            self.forward = self.model
            return self.model(x)

    # -- checkpoints ---------------------------------------------------------------

    def state(self) -> dict:
        state = {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
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
        for name in (
            "batch_size",
            "crop",
            "lr",
            "schedule",
            "lr_step",
            "lr_gamma",
            "loss",
            "seed",
            "time_budget_s",
        ):
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
        if self.scheduler is not None and state["scheduler"]:
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
        """One optimizer step; returns (loss, PSNR of the batch's outputs).

        Reading both back is the step's one host-device synchronisation: it keeps the
        host from queueing steps past the time budget and costs a GPU only the launch
        latency of the next step's first kernel.
        """
        self.model.train()
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        blurred = blurred.to(self.device, non_blocking=True, memory_format=memory_format)
        sharp = sharp.to(self.device, non_blocking=True)
        if self.scheduler is None:
            progress = self.elapsed_s / float(self.settings.time_budget_s or 1.0)
            rate = cosine_lr(progress, self.settings.lr, self.settings.min_lr, self.settings.warmup)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            output = self._forward(blurred).float()
            loss = self.loss_fn(output, sharp)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.iteration += 1
        psnr = batch_psnr_tensor(output, sharp)
        loss_value, psnr_value = torch.stack([loss.detach(), psnr]).tolist()
        return loss_value, psnr_value

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

    def _batches(self, start: int, stop: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Steps ``start`` .. ``stop - 1``'s batches, from the device or a DataLoader."""
        if hasattr(self.train_set, "batch"):
            source: BatchSource = self.train_set  # type: ignore[assignment]
            return (source.batch(i) for i in range(start, stop))
        b = self.settings.batch_size
        return iter(
            DataLoader(
                self.train_set,  # type: ignore[arg-type]
                batch_size=b,
                sampler=range(start * b, stop * b),
                num_workers=self.settings.workers,
                collate_fn=_collate,
                pin_memory=self.device.type == "cuda",
            )
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

    def throughput(self) -> dict:
        """Steps/s and images/s over the timed steps (every step but a run's first,
        which pays for cuDNN autotuning and ``torch.compile``), the slowest step, and
        on CUDA the peak memory and the mean NVML utilisation sampled while logging."""
        steps, seconds = self._steps_timed, self._step_seconds
        rate = steps / seconds if seconds > 0 else math.nan
        return {
            "steps": steps,
            "seconds": round(seconds, 3),
            "steps_per_s": rate,
            "images_per_s": rate * self.settings.batch_size,
            "max_step_s": self._max_step_s,
            "gpu_memory_gib": memory_gib(self.device),
            "gpu_utilization_pct": (
                float(np.mean(self._utilization)) if self._utilization else None
            ),
            "gpu_busy_fraction": self._busy,
        }

    def _log_progress(self, loss: float, psnr: float) -> None:
        t = self.throughput()
        util = utilization(self.device)
        if util is not None:
            self._utilization.append(util)
        extra = ""
        if t["gpu_memory_gib"] is not None:
            extra = f", GPU memory {t['gpu_memory_gib']:.1f} GiB"
            extra += "" if util is None else f", GPU busy {util} %"
        budget = self.settings.time_budget_s
        log.info(
            "step %d (%s%s): %.2f steps/s, %.1f images/s, loss %.4f, train PSNR %.2f dB, lr %.2e%s",
            self.iteration,
            format_duration(self.elapsed_s),
            "" if budget is None else f" of {format_duration(budget)}",
            t["steps_per_s"],
            t["images_per_s"],
            loss,
            psnr,
            self.optimizer.param_groups[0]["lr"],
            extra,
        )

    def fit(self, stop_at: int | None = None, log_every_s: float = 30.0) -> TrainResult:
        """Train from the current iteration to ``stop_at`` (default: the end), or until
        the time budget is spent (checked after every step, so a run overshoots its
        budget by less than one step), validating and checkpointing on the way."""
        from tqdm import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        budget = s.time_budget_s
        stop = min(stop_at or s.iterations, s.iterations)
        loss_avg = psnr_avg = math.nan
        val = inp = math.nan
        if budget is not None and self.elapsed_s >= budget:
            log.info("time budget %s already spent: no step to take", format_duration(budget))
            return TrainResult(
                self.iteration,
                val,
                inp,
                self.best_psnr,
                self.elapsed_s,
                self.elapsed_s,
                self.throughput(),
            )
        if budget is not None:
            bar = tqdm(
                total=round(budget),
                initial=min(round(self.elapsed_s), round(budget)),
                desc="train",
                unit="s",
                mininterval=5.0,
            )
        else:
            bar = tqdm(total=stop, initial=self.iteration, desc="train", unit="it", mininterval=5.0)
        first = True
        last_step_s = math.nan
        # On CUDA, profile steps 10-29 of this call once for the GPU's busy fraction.
        meter = BusyMeter() if self.device.type == "cuda" and self._busy is None else None
        meter_from, meter_to, meter_t0 = self.iteration + 10, self.iteration + 30, 0.0
        next_log = time.perf_counter() + log_every_s
        tick = time.perf_counter()
        for blurred, sharp in self._batches(self.iteration, stop):
            if meter is not None and self.iteration == meter_from:
                meter.start()
                meter_t0 = tick
            loss, train_psnr = self.step(blurred, sharp)
            if math.isnan(loss_avg):
                loss_avg, psnr_avg = loss, train_psnr
            loss_avg = 0.98 * loss_avg + 0.02 * loss
            psnr_avg = 0.98 * psnr_avg + 0.02 * train_psnr
            now = time.perf_counter()
            took = now - tick
            if not first:
                self._steps_timed += 1
                self._step_seconds += took
            self._max_step_s = max(self._max_step_s, took)
            first = False
            self.elapsed_s += took
            last_step_s = self.elapsed_s
            if meter is not None and self.iteration == meter_to:
                self._busy = meter.stop(now - meter_t0)
                meter = None
                if self._busy is not None:
                    log.info("the GPU ran kernels %.0f %% of the time", 100 * self._busy)
            bar.update(round(self.elapsed_s) - bar.n if budget is not None else 1)
            bar.set_postfix(
                loss=f"{loss_avg:.4f}", psnr=f"{psnr_avg:.2f}", val=f"{val:.2f}", refresh=False
            )
            spent = budget is not None and self.elapsed_s >= budget
            done = self.iteration == stop or spent
            if now >= next_log or done:
                self._log_progress(loss_avg, psnr_avg)
                next_log = now + log_every_s
            if self.iteration % s.val_every == 0 or done:
                val, inp = self._record(loss_avg, psnr_avg)
            if self.iteration % s.checkpoint_every == 0 or done:
                self.save_checkpoint()
            after = time.perf_counter()
            self.elapsed_s += after - now  # validation and checkpoints spend the budget too
            tick = after
            if done:
                break
        bar.close()
        if meter is not None:
            meter.stop(1.0)  # the run ended inside the window: no figure
        if budget is not None:
            log.info(
                "time budget %s: stopped after step %d at %s",
                format_duration(budget),
                self.iteration,
                format_duration(self.elapsed_s),
            )
        return TrainResult(
            self.iteration,
            val,
            inp,
            self.best_psnr,
            self.elapsed_s,
            last_step_s,
            self.throughput(),
        )
