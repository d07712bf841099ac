"""PSNR and SSIM of a network over blurred/sharp pairs, as data the CLI only prints."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .metrics import psnr, ssim


@dataclass(frozen=True)
class ImageScore:
    """Scores of one pair: the network's output and, for reference, the blurred input."""

    name: str
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float


@dataclass(frozen=True)
class EvalReport:
    model: str
    """What was scored: the weights or model file and the backend that ran it."""
    scores: list[ImageScore]

    def mean(self, field: str) -> float:
        return float(np.mean([getattr(s, field) for s in self.scores]))

    def gains(self) -> list[float]:
        """PSNR gain (output minus blurred input) of every image, in dB."""
        return [s.psnr - s.input_psnr for s in self.scores]

    def gain_summary(self) -> dict:
        """How the gain spreads over the images: a mean can hide losses on some."""
        gains = np.array(self.gains(), dtype=np.float64)
        finite = gains[np.isfinite(gains)]
        if finite.size == 0:
            return {"min": math.nan, "median": math.nan, "max": math.nan, "improved": 0}
        return {
            "min": float(finite.min()),
            "median": float(np.median(finite)),
            "max": float(finite.max()),
            "improved": int((finite > 0).sum()),
        }

    def as_dict(self) -> dict:
        means = {f: self.mean(f) for f in ("psnr", "ssim", "input_psnr", "input_ssim")}
        means["psnr_gain"] = means["psnr"] - means["input_psnr"]
        means["ssim_gain"] = means["ssim"] - means["input_ssim"]
        return {
            "model": self.model,
            "count": len(self.scores),
            "mean": means,
            "psnr_gain": self.gain_summary(),
            "images": [
                {
                    **asdict(s),
                    "psnr_gain": s.psnr - s.input_psnr,
                    "ssim_gain": s.ssim - s.input_ssim,
                }
                for s in self.scores
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, allow_nan=True)

    def table(self) -> str:
        width = max([len("mean"), *(len(s.name) for s in self.scores)])
        head = f"{'image':<{width}}  {'PSNR':>7}  {'SSIM':>6}  {'in PSNR':>7}  {'in SSIM':>7}  {'gain':>6}"
        rows = [head, "-" * len(head)]
        for s in [*self.scores, self._mean_score()]:
            rows.append(
                f"{s.name:<{width}}  {s.psnr:7.2f}  {s.ssim:6.4f}  {s.input_psnr:7.2f}  "
                f"{s.input_ssim:7.4f}  {s.psnr - s.input_psnr:+6.2f}"
            )
        g = self.gain_summary()
        rows.append(
            f"gain per image: min {g['min']:+.2f}, median {g['median']:+.2f}, "
            f"max {g['max']:+.2f} dB; {g['improved']} of {len(self.scores)} improved"
        )
        return "\n".join(rows)

    def _mean_score(self) -> ImageScore:
        return ImageScore(
            "mean", *(self.mean(f) for f in ("psnr", "ssim", "input_psnr", "input_ssim"))
        )


@torch.no_grad()
def deblur_array(model: torch.nn.Module, blurred: np.ndarray, device: torch.device) -> np.ndarray:
    """Run the network on one (H, W, 3) float image; returns (H, W, 3) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(blurred.transpose(2, 0, 1)))[None].float()
    y = model.eval()(x.to(device))[0].float().clamp(0, 1).cpu().numpy()
    return y.transpose(1, 2, 0)


def evaluate(
    deblur: Callable[[np.ndarray], np.ndarray],
    pairs: Iterable[tuple[str, np.ndarray, np.ndarray]],
    label: str = "",
) -> EvalReport:
    """Score ``deblur`` (float (H, W, 3) in [0, 1] -> same) on (name, blurred, sharp)
    pairs. Any runner fits: the PyTorch network (:func:`deblur_array`) or a deployed
    ONNX file or engine, so the accuracy of what ships is measured, not assumed."""
    scores = []
    for name, blurred, sharp in pairs:
        out = deblur(blurred)
        scores.append(
            ImageScore(
                name, psnr(out, sharp), ssim(out, sharp), psnr(blurred, sharp), ssim(blurred, sharp)
            )
        )
    if not scores:
        raise ValueError("evaluate: no pairs")
    return EvalReport(label, scores)
