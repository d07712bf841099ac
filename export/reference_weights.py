"""Which PyTorch network an exported file came from, so compare can rebuild it.

Before a checkpoint ships, ``saphnet export`` exports a randomly initialised network;
seeding that initialisation makes it reproducible, so ``saphnet compare`` can rebuild
the very same reference from the file's metadata instead of comparing against
different random weights.
"""

from __future__ import annotations

import os

import torch

from ..files import sha256_file
from ..model import SAPHNet, SAPHNetConfig

RANDOM_WEIGHTS = "random-init-seed-0"
SEED = 0


def random_model(config: SAPHNetConfig | None = None) -> SAPHNet:
    """The default random network: seeded init, eval mode, the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return SAPHNet(config).eval()


def weights_tag(weights: str | os.PathLike[str] | None) -> str:
    """The ``weights_sha256`` recorded for a weights file (or for the seeded random net)."""
    return sha256_file(weights) if weights is not None else RANDOM_WEIGHTS
