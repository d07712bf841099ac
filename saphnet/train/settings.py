"""What a training run does, in one dataclass; the defaults are the paper's recipe.

Imports no torch, so the CLI can build its options from it cheaply.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

SCHEDULES = ("step", "cosine")
# What --device takes (checked here, without torch, so the CLI parser stays cheap).
DEVICE_FORM = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainSettings:
    """A training run's recipe.

    Attributes:
        iterations: optimizer steps in total (a resumed run continues up to this).
        batch_size: crops per step (paper: 6).
        crop: side of the square training crops (paper: 256).
        lr: Adam's initial learning rate (paper: 1e-4).
        schedule: "step" (multiply by ``lr_gamma`` every ``lr_step`` steps, the
            paper's halving every 2e5) or "cosine" (to ``min_lr`` at ``iterations``).
        lr_step: steps between learning-rate drops of the step schedule.
        lr_gamma: factor of each drop.
        min_lr: final learning rate of the cosine schedule.
        loss: "l1", "mse" or "charbonnier".
        grad_clip: clip the global gradient norm to this (None: no clipping).
        val_every: steps between validation PSNR measurements.
        checkpoint_every: steps between resumable checkpoints (and weight exports).
        seed: seeds the network's initialisation and every data item.
        amp: mixed precision (float16 autocast and loss scaling) on CUDA; ignored on CPU.
        workers: data-loader worker processes (0: synthesise in the training process).
        identity_start: zero each decoder's last convolution before training, so the
            untrained network returns its input and every step starts from "no
            change" instead of undoing a random residual (see
            :func:`saphnet.train.trainer.start_at_identity`).
        time_budget_s: stop when this much wall-clock time (steps, validations,
            checkpoints) is spent, at the end of a step; the learning rate then follows
            a cosine over the spent fraction of the budget (schedule must be "cosine";
            ``iterations`` still caps the run). None: a step-count run.
        warmup: fraction of a budgeted run spent warming the rate up linearly.
        channels_last: NHWC memory layout for the network (None: on CUDA only, where
            cuDNN's tensor-core convolutions want it).
        compile: run the network through ``torch.compile``.
    """

    iterations: int = 400_000
    batch_size: int = 6
    crop: int = 256
    lr: float = 1e-4
    schedule: str = "step"
    lr_step: int = 200_000
    lr_gamma: float = 0.5
    min_lr: float = 1e-6
    loss: str = "l1"
    grad_clip: float | None = None
    val_every: int = 5000
    checkpoint_every: int = 1000
    seed: int = 0
    amp: bool = True
    workers: int = 0
    identity_start: bool = True
    time_budget_s: float | None = None
    warmup: float = 0.0
    channels_last: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.iterations < 1 or self.batch_size < 1:
            problems.append("iterations and batch_size must be >= 1")
        if self.crop < 16 or self.crop % 16:
            problems.append(f"crop must be a multiple of 16, got {self.crop}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.lr_step < 1 or not 0 < self.lr_gamma <= 1:
            problems.append("lr must be > 0, lr_step >= 1 and 0 < lr_gamma <= 1")
        if self.val_every < 1 or self.checkpoint_every < 1:
            problems.append("val_every and checkpoint_every must be >= 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if self.time_budget_s is not None and self.schedule != "cosine":
            problems.append(
                "a time budget anneals by a cosine over the budget, so schedule must be "
                f"'cosine', got {self.schedule!r}"
            )
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup must be in [0, 1), got {self.warmup}")
        if problems:
            raise ValueError("TrainSettings: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainSettings:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
