"""Whether a newly trained checkpoint may replace the shipped one.

It may only if, against the shipped weights, it is

1. better on the held-out synthetic set (``saphnet eval --heldout``: mean PSNR),
2. better on real blurred/sharp pairs (a GoPro-layout folder: mean PSNR), and
3. harmless on sharp images: for every held-out photo (``chelsea``, ``coffee``) given
   as a camera would deliver it in focus and still (no blur, mild sensor noise:
   shot 5e-5, read 2e-3, as the bundled sample), the output's PSNR against the clean
   photo is at most 0.5 dB below the input's. A network that "sharpens" what is
   already sharp fails here, whatever it gains on blur.

Without real pairs the verdict is "keep the shipped weights": the synthetic set alone
cannot show that a network generalises to real camera shake.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..data.blur import blur_with
from ..data.datasets import BUILTIN_HELDOUT, PairedFolderDataset, builtin_image, heldout_dataset
from ..model import SAPHNet
from .evaluate import EvalReport, deblur_array, evaluate

SHARP_MARGIN_DB = 0.5
SHARP_NOISE = {"shot": 5e-5, "read": 2e-3}


@dataclass(frozen=True)
class Check:
    name: str
    candidate: float
    shipped: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    checks: list[Check]

    @property
    def replace(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def as_dict(self) -> dict:
        return {"replace": self.replace, "checks": [asdict(c) for c in self.checks]}

    def table(self) -> str:
        rows = [f"{'check':<18} {'candidate':>10} {'shipped':>10}  result", "-" * 56]
        for c in self.checks:
            verdict = "pass" if c.passed else "FAIL"
            rows.append(
                f"{c.name:<18} {c.candidate:10.2f} {c.shipped:10.2f}  {verdict}: {c.detail}"
            )
        rows.append(f"verdict: {'replace' if self.replace else 'keep'} the shipped weights")
        return "\n".join(rows)


def sharp_pairs(seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, noisy sharp photo, clean photo) for the held-out photos: no blur at all."""
    rng = np.random.default_rng(seed)
    for name in BUILTIN_HELDOUT:
        clean = builtin_image(name).astype(np.float64)
        noisy = blur_with(rng, clean, np.ones((1, 1)), **SHARP_NOISE)
        yield f"sharp/{name}", noisy.astype(np.float32), clean.astype(np.float32)


def _score(model: SAPHNet, pairs, device: torch.device, label: str) -> EvalReport:
    model = model.to(device).eval()
    return evaluate(lambda b: deblur_array(model, b, device), pairs, label)


def check_candidate(
    candidate: str | os.PathLike[str],
    shipped: str | os.PathLike[str],
    real: str | os.PathLike[str] | None,
    count: int = 16,
    device: torch.device | None = None,
) -> tuple[GateResult, dict[str, dict]]:
    """Run the three checks; returns the result and every report (as dicts)."""
    device = device or torch.device("cpu")
    models = {"candidate": SAPHNet.load(candidate), "shipped": SAPHNet.load(shipped)}
    reports: dict[str, dict] = {}
    checks = []

    data = heldout_dataset(crop=None, count=count)
    held = {
        k: _score(m, ((f"heldout/{i:02d}", *data[i]) for i in range(len(data))), device, k)
        for k, m in models.items()
    }
    reports["heldout"] = {k: r.as_dict() for k, r in held.items()}
    a, b = held["candidate"].mean("psnr"), held["shipped"].mean("psnr")
    checks.append(Check("held-out synthetic", a, b, a > b, f"mean PSNR {a - b:+.2f} dB"))

    if real is None:
        checks.append(Check("real pairs", np.nan, np.nan, False, "no real pairs given (--real)"))
    else:
        pairs = PairedFolderDataset(real, crop=None)
        names = [p.name for p in pairs.pairs]
        scored = {
            k: _score(m, ((names[i], *pairs[i]) for i in range(len(pairs))), device, k)
            for k, m in models.items()
        }
        reports["real"] = {k: r.as_dict() for k, r in scored.items()}
        a, b = scored["candidate"].mean("psnr"), scored["shipped"].mean("psnr")
        checks.append(Check("real pairs", a, b, a > b, f"mean PSNR {a - b:+.2f} dB"))

    sharp = {k: _score(m, sharp_pairs(), device, k) for k, m in models.items()}
    reports["sharp"] = {k: r.as_dict() for k, r in sharp.items()}
    worst = min(sharp["candidate"].gains())
    checks.append(
        Check(
            "sharp images",
            worst,
            min(sharp["shipped"].gains()),
            worst >= -SHARP_MARGIN_DB,
            f"worst PSNR change {worst:+.2f} dB (limit -{SHARP_MARGIN_DB} dB)",
        )
    )
    return GateResult(checks), reports
