"""Named network configs for training, and the recipes some presets bring."""

from __future__ import annotations

from ..model.config import SAPHNetConfig

# The network of the shipped checkpoint: small enough to train meaningfully on a
# 2-core CPU in about 90 minutes (about 1.1 M parameters).
SMALL_CONFIG = SAPHNetConfig(
    widths=(16, 32, 64),
    plain_resblocks=1,
    encoder_resblocks=1,
    decoder_resblocks=1,
    attention_maps=8,
    pdf_kernel=3,
)
# Sized for about 6 minutes on one H100/H200: the paper's widths with one resblock of
# each kind per scale, C2 = 16, 3 x 3 PDF kernels; 4.05 M parameters, 427 GMAC at
# 720 x 1280 (3.9x the small network), so it still runs through ONNX Runtime on a CPU
# (5.6 s per 720p frame on 2 cores, against 2.0 s for the small network).
GPU_SHORT_CONFIG = SAPHNetConfig(
    widths=(32, 64, 128),
    plain_resblocks=1,
    encoder_resblocks=1,
    decoder_resblocks=1,
    attention_maps=16,
    pdf_kernel=3,
)
PRESETS = {"paper": SAPHNetConfig(), "small": SMALL_CONFIG, "gpu-short": GPU_SHORT_CONFIG}

# TrainSettings fields a preset sets unless the command line gives them. gpu-short: a
# 6-minute budget, batch 16 of 256 x 256 crops, Adam at 1e-3 warmed up over the first
# 5 % and annealed by a cosine over the time to 1e-6, gradient norm clipped at 1.
RECIPES: dict[str, dict[str, object]] = {
    "gpu-short": {
        "time_budget_s": 360.0,
        "batch_size": 16,
        "crop": 256,
        "lr": 1e-3,
        "min_lr": 1e-6,
        "schedule": "cosine",
        "warmup": 0.05,
        "grad_clip": 1.0,
        "loss": "l1",
        "val_every": 500,
        "checkpoint_every": 500,
    },
}


def default_preset(device_type: str) -> str:
    """The preset of a run that names none: the paper's network where it trains on a
    GPU, the small one on a CPU, where one step of the paper's network (batch 6 of
    256 x 256 crops) took 103 s on 2 cores and its evaluation minutes more."""
    return "paper" if device_type == "cuda" else "small"


def default_pool_size(device_type: str) -> int:
    """Sharp windows a run keeps for device-side blur synthesis (``--pool-size``): 2048
    where a GPU draws thousands of crops a minute; 256 on a CPU, whose runs draw fewer
    crops than that (a few hundred steps of 6) and where cutting 2048 windows took 94 s
    of a run's set-up (2 cores)."""
    return 2048 if device_type == "cuda" else 256
