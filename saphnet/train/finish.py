"""What a finished run leaves besides its checkpoints: the final weights, their score
on the held-out set (per image), their ONNX export and a summary of the run.

    final.safetensors      the network after the last step (written only when the run ends)
    eval-heldout.json      ``saphnet eval --heldout`` of those weights: per image and mean
    saphnet.onnx           their ONNX export (custom PDFConv op, FP32, dynamic shapes)
    train-summary.json     device, recipe, steps, time, throughput, PDF backends, files

Every file is written atomically; a re-run of the same folder (``--force`` or
``--resume``) replaces them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from pathlib import Path

import torch

from ..files import atomic_output, sha256_file
from .budget import format_duration
from .evaluate import EvalReport, deblur_array, evaluate
from .trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

FINAL = "final.safetensors"
EVAL = "eval-heldout.json"
ONNX = "saphnet.onnx"
SUMMARY = "train-summary.json"
MIN_TRAINING_S = 1.0
"""Training's share of a budget the set-up and evaluation leave nothing of: one step."""


def heldout_report(trainer: Trainer, count: int) -> EvalReport:
    """The held-out synthetic set (:func:`saphnet.data.datasets.heldout_dataset`,
    whole images) scored with the trained network on the training device."""
    from ..data.datasets import heldout_dataset

    data = heldout_dataset(crop=None, count=count)
    pairs = ((f"heldout/{i:02d}", *data[i]) for i in range(len(data)))
    model = trainer.model.eval()
    label = f"{FINAL} (torch, fp32, {trainer.device})"
    return evaluate(lambda b: deblur_array(model, b, trainer.device), pairs, label)


def split_budget(trainer: Trainer, heldout_count: int, spent_s: float, onnx: bool) -> dict:
    """Give training (steps and validation) what the time budget leaves after the set-up
    already spent and the held-out evaluation, timed now on one image, so the budget
    bounds the run; log the split at the start, and that the ONNX export follows the
    budget (its time is not known before it runs). Returns the split for the summary."""
    budget = float(trainer.settings.time_budget_s or 0.0)
    started = time.perf_counter()
    if heldout_count > 0:
        heldout_report(trainer, 1)
    per_image = time.perf_counter() - started
    evaluation = per_image * heldout_count if heldout_count > 0 else 0.0
    spent = spent_s + per_image
    training = max(budget - spent - evaluation, MIN_TRAINING_S)
    trainer.settings = dataclasses.replace(trainer.settings, time_budget_s=training)
    export = "; the ONNX export of the final weights runs after the budget (--no-onnx skips it)"
    export = export if onnx else ""
    over = spent + evaluation + MIN_TRAINING_S - budget
    if over > 0:
        log.warning(
            "time budget %s is too short: set-up took %s and the held-out evaluation will "
            "take about %s (%d images, %s each measured; --heldout-count lowers it), so the "
            "run will take about %s beyond it, plus one training step and its validation%s",
            format_duration(budget),
            format_duration(spent),
            format_duration(evaluation),
            heldout_count,
            format_duration(per_image),
            format_duration(over),
            export,
        )
    else:
        log.info(
            "time budget %s: %s set-up, %s for the held-out evaluation (%d images, %s each "
            "measured), %s for training and validation%s",
            format_duration(budget),
            format_duration(spent),
            format_duration(evaluation),
            heldout_count,
            format_duration(per_image),
            format_duration(training),
            export,
        )
    return {
        "total_s": budget,
        "setup_s": round(spent, 3),
        "heldout_s": round(evaluation, 3),
        "training_s": round(training, 3),
    }


def write_json(path: Path, data: dict) -> None:
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")


def finish_run(
    trainer: Trainer,
    result: TrainResult,
    heldout_count: int = 16,
    onnx: bool = True,
    extra: dict | None = None,
) -> dict:
    """Write the final weights, the held-out evaluation (``heldout_count`` images, 0
    skips it) and the ONNX export into the run folder; returns the summary (also
    written as ``train-summary.json``)."""
    from ..export import export_onnx

    run = trainer.run_dir
    final = run / FINAL
    trainer.model.save(final, force=True)
    files = {"weights": FINAL}
    report = None
    if heldout_count > 0:
        report = heldout_report(trainer, heldout_count)
        write_json(run / EVAL, report.as_dict())
        files["eval"] = EVAL
        print(report.table())
    if onnx:
        # A channels-last network (CUDA training) exports its weights in the usual layout.
        model = trainer.model.to(memory_format=torch.contiguous_format)
        export_onnx(model, run / ONNX, force=True, weights_sha256=sha256_file(final))
        files["onnx"] = ONNX
    device = trainer.device
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "host": platform.node(),
        "torch": torch.__version__,
        "mixed_precision": None if trainer.amp_dtype is None else str(trainer.amp_dtype),
        "channels_last": trainer.channels_last,
        "compile": trainer.settings.compile,
        "pdf_backends": trainer.pdf_backends,
        "config": json.loads(trainer.config.to_json()),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "settings": json.loads(trainer.settings.to_json()),
        "iterations": result.iteration,
        "elapsed_s": round(result.elapsed_s, 3),
        "last_step_s": round(result.last_step_s, 3),
        "throughput": result.throughput,
        "validation": {"psnr": result.val_psnr, "input_psnr": result.input_psnr},
        "heldout": None if report is None else report.as_dict()["mean"],
        "files": files,
        **(extra or {}),
    }
    write_json(run / SUMMARY, summary)
    log.info("run folder %s: %s", run, ", ".join([*files.values(), SUMMARY]))
    return summary
