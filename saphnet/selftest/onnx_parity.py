"""The shipped network exported with the custom PDF op and run by ONNX Runtime, against
the PyTorch FP32 reference, with ``saphnet compare``'s machinery and thresholds: the
install's export and CPU inference path, checked on any machine."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .report import FAILED, Stage

log = logging.getLogger(__name__)

IMAGES = 2
MAX_SIDE = 128


def check(stage: Stage, quick: bool) -> None:
    from ..export import export_onnx
    from ..runtime.compare import DEFAULT_THRESHOLDS, compare_models, default_images
    from ..runtime.torch_backend import load_model

    model = load_model()
    precisions = ("fp32",) if quick else ("fp32", "fp16")
    images = default_images(MAX_SIDE)[:IMAGES]
    stage.tolerances = {
        p: f"max abs <= {t.max_abs:g}, PSNR >= {t.min_psnr:g} dB, SSIM >= {t.min_ssim:g}, no NaN/Inf"
        for p, t in DEFAULT_THRESHOLDS.items()
        if p in precisions
    }
    stage.info["images"] = ", ".join(
        f"{name} {img.shape[1]}x{img.shape[2]}" for name, img in images
    )
    with tempfile.TemporaryDirectory(prefix="saphnet-selftest-") as folder:
        paths = []
        for precision in precisions:
            path = Path(folder) / f"saphnet-custom-{precision}.onnx"
            export_onnx(model, path, pdf_op="custom", precision=precision)
            paths.append(path)
        reports = compare_models(model, paths, images, providers="cpu")
    for report in reports:
        for image in report.images:
            stage.rows.append(
                {
                    "model": f"custom {report.precision}",
                    "provider": report.providers[0] if report.providers else "-",
                    "image": image.image,
                    "max_abs": image.max_abs,
                    "mean_abs": image.mean_abs,
                    "PSNR dB": image.psnr,
                    "SSIM": image.ssim,
                    "nonfinite": image.nonfinite,
                    "status": "passed" if image.passed else "FAILED: " + "; ".join(image.failures),
                }
            )
    failed = [r for r in reports if not r.passed]
    if failed:
        stage.status = FAILED
        stage.reason = "outside compare's thresholds: " + ", ".join(
            f"custom {r.precision}" for r in failed
        )
