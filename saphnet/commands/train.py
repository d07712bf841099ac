"""``saphnet train``: train SAPHNet on GoPro-layout pairs or synthetic blur."""

from __future__ import annotations

import argparse
import logging

from ._args import float_at_least, int_at_least

log = logging.getLogger(__name__)


def _widths(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"widths {text!r} are not three ints, e.g. 16,32,64"
        ) from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"widths {text!r} are not three ints, e.g. 16,32,64")
    return values  # type: ignore[return-value]


def _shown(name: str, default: object) -> str:
    """Help text's default: TrainSettings' value and any preset's own."""
    from ..train.budget import format_duration
    from ..train.presets import RECIPES

    shown = f"default: {default}"
    for preset, recipe in RECIPES.items():
        if name in recipe:
            value = recipe[name]
            text = format_duration(value) if name.endswith("_s") else value  # type: ignore[arg-type]
            shown += f"; {preset}: {text}"
    return f"({shown})"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..train.presets import PRESETS
    from ..train.settings import SCHEDULES, TrainSettings
    from ._args import device_name, duration

    d = TrainSettings()
    p = sub.add_parser(
        "train",
        help="train SAPHNet (defaults: the paper's recipe, the small network on a CPU; "
        "--preset gpu-short: 6 GPU minutes)",
        description="Train SAPHNet. Data: --data DIR (GoPro-layout <seq>/blur, <seq>/sharp "
        "pairs, or a folder of sharp images blurred on the fly) and/or --synthetic (photos "
        "shipped by scikit-image and matplotlib, blurred on the fly; with --data DIR of "
        "sharp images, both sets). Sharp photos are blurred in batches on the training "
        "device. The run folder holds a resumable checkpoint.pt, latest/best .safetensors "
        "and history.jsonl; when the run ends (iterations done or --time-budget spent), "
        "final.safetensors, eval-heldout.json (held-out set, per image), saphnet.onnx "
        "and train-summary.json.",
    )
    p.add_argument(
        "--data",
        help="GoPro-layout folder or folder of sharp images (default: none, use --synthetic)",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="builtin sharp photos, synthetic blur (added to --data's sharp images if given)",
    )
    p.add_argument(
        "--val-data", help="GoPro-layout validation folder (default: held-out synthetic set)"
    )
    p.add_argument(
        "--val-count",
        type=int_at_least(1),
        default=8,
        help="held-out synthetic validation items (default: %(default)s)",
    )
    p.add_argument(
        "--val-crop",
        type=int_at_least(32),
        default=192,
        help="side of held-out validation crops (default: %(default)s)",
    )
    p.add_argument("-o", "--out", default="saphnet-run", help="run folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--force", action="store_true", help="start over in a run folder that has a checkpoint"
    )
    p.add_argument(
        "--export", help="also write the final weights here, .safetensors (default: none)"
    )
    p.add_argument(
        "--init",
        help="start from these SAPHNet weights, the network comes from the file "
        "(default: none, a fresh network)",
    )
    p.add_argument(
        "--heldout-count",
        type=int_at_least(0),
        default=16,
        help="held-out images scored into OUT/eval-heldout.json at the end, 0 skips "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export the final weights to OUT/saphnet.onnx at the end (default: %(default)s)",
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="paper: the full network; small: the shipped checkpoint's; gpu-short: a "
        "4.05 M-parameter network and recipe for about 6 minutes on one H100/H200 "
        "(default: paper on a GPU, small on a CPU, where a step of the paper's network "
        "takes minutes)",
    )
    net.add_argument(
        "--widths", type=_widths, help="three channel widths, e.g. 16,32,64 (default: the preset's)"
    )
    net.add_argument(
        "--pdf-kernel",
        type=int_at_least(1),
        help="K of the pixel-dependent filter (default: the preset's)",
    )
    net.add_argument(
        "--attention-maps",
        type=int_at_least(1),
        help="C2 of the linear attention (default: the preset's)",
    )
    net.add_argument(
        "--no-offsets", action="store_true", help="PDF without offsets (paper's variant a)"
    )
    opt = p.add_argument_group("recipe (a preset's values apply where an option is not given)")
    opt.add_argument(
        "--time-budget",
        type=duration,
        metavar="DURATION",
        help="stop when this much time is spent (e.g. 90s, 6m, 1h), at the end of a step; "
        "the learning rate anneals by a cosine over the time "
        f"{_shown('time_budget_s', 'none, train --iterations steps')}",
    )
    opt.add_argument(
        "--iterations",
        type=int_at_least(1),
        help=f"steps in total (cap) {_shown('iterations', d.iterations)}",
    )
    opt.add_argument(
        "--batch-size",
        type=int_at_least(1),
        help=f"crops per step {_shown('batch_size', d.batch_size)}",
    )
    opt.add_argument(
        "--crop",
        type=int_at_least(32),
        help=f"training crop side, multiple of 16 {_shown('crop', d.crop)}",
    )
    opt.add_argument(
        "--lr", type=float_at_least(0.0), help=f"Adam's peak learning rate {_shown('lr', d.lr)}"
    )
    opt.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="learning-rate schedule (default: step, cosine with --time-budget)",
    )
    opt.add_argument(
        "--lr-step",
        type=int_at_least(1),
        help=f"step schedule: steps per drop {_shown('lr_step', d.lr_step)}",
    )
    opt.add_argument(
        "--lr-gamma",
        type=float_at_least(0.0),
        help=f"step schedule: drop factor {_shown('lr_gamma', d.lr_gamma)}",
    )
    opt.add_argument(
        "--min-lr",
        type=float_at_least(0.0),
        help=f"cosine schedule: final rate {_shown('min_lr', d.min_lr)}",
    )
    opt.add_argument(
        "--warmup",
        type=float_at_least(0.0),
        help="--time-budget: fraction of the budget spent warming the rate up "
        f"{_shown('warmup', d.warmup)}",
    )
    opt.add_argument(
        "--loss", choices=("l1", "mse", "charbonnier"), help=f"loss {_shown('loss', d.loss)}"
    )
    opt.add_argument(
        "--grad-clip",
        type=float_at_least(0.0),
        help=f"clip the gradient norm {_shown('grad_clip', 'none')}",
    )
    opt.add_argument(
        "--random-heads",
        action="store_true",
        help="keep the decoders' random last convs (default: zeroed, the net starts as identity)",
    )
    opt.add_argument(
        "--val-every",
        type=int_at_least(1),
        help=f"steps between validations {_shown('val_every', d.val_every)}",
    )
    opt.add_argument(
        "--checkpoint-every",
        type=int_at_least(1),
        help=f"steps between checkpoints {_shown('checkpoint_every', d.checkpoint_every)}",
    )
    opt.add_argument(
        "--seed", type=int_at_least(0), default=d.seed, help="seed (default: %(default)s)"
    )
    speed = p.add_argument_group("device and throughput")
    speed.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto (CUDA when visible), cpu, cuda or cuda:N (default: %(default)s)",
    )
    speed.add_argument(
        "--no-amp",
        action="store_true",
        help="no mixed precision on CUDA (default: bfloat16 autocast, float16 with loss "
        "scaling where bfloat16 is missing; always off on CPU)",
    )
    speed.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout (default: on CUDA only)",
    )
    speed.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile (default: off; "
        "benchmarks/train_throughput.py measures whether it pays on your GPU)",
    )
    speed.add_argument(
        "--synthesis",
        choices=("device", "per-crop"),
        default="device",
        help="blur of sharp photos: device (batched torch ops where the network trains, "
        "sharp windows resident there) or per-crop (NumPy per crop in --workers "
        "processes) (default: %(default)s)",
    )
    speed.add_argument(
        "--pool-size",
        type=int_at_least(1),
        help="--synthesis device: sharp windows kept on the device (default: 2048 on a GPU; "
        "256 on a CPU, which draws fewer crops in a run than that and takes ~46 ms to cut "
        "each)",
    )
    speed.add_argument(
        "--workers",
        type=int_at_least(0),
        default=d.workers,
        help="--synthesis per-crop and paired folders: data-loader processes "
        "(default: %(default)s)",
    )
    speed.add_argument(
        "--threads", type=int_at_least(1), help="CPU threads for torch (default: torch's)"
    )
    p.set_defaults(func=run)


_RECIPE_OPTIONS = (
    "iterations",
    "batch_size",
    "crop",
    "lr",
    "schedule",
    "lr_step",
    "lr_gamma",
    "min_lr",
    "warmup",
    "loss",
    "grad_clip",
    "val_every",
    "checkpoint_every",
)


def recipe(args: argparse.Namespace) -> dict[str, object]:
    """TrainSettings fields from the preset's recipe overridden by the options given."""
    from ..train.presets import RECIPES

    fields: dict[str, object] = dict(RECIPES.get(args.preset, {}))
    for name in _RECIPE_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.time_budget is not None:
        fields["time_budget_s"] = args.time_budget
    if fields.get("time_budget_s") is not None and args.schedule is None:
        fields["schedule"] = "cosine"
    return fields


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    import torch

    from ..data.datasets import (
        PairedFolderDataset,
        SyntheticBlurDataset,
        heldout_dataset,
        training_dataset,
    )
    from ..data.device_batches import DeviceBlurBatches
    from ..errors import SaphnetError
    from ..files import check_writable
    from ..model import read_config
    from ..train.budget import format_duration
    from ..train.device import describe, pick_device
    from ..train.finish import finish_run, split_budget
    from ..train.presets import PRESETS, default_pool_size, default_preset
    from ..train.settings import TrainSettings
    from ..train.trainer import CHECKPOINT, Trainer

    started = time.perf_counter()  # a time budget bounds the run from here
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        k: v
        for k, v in (
            ("widths", args.widths),
            ("pdf_kernel", args.pdf_kernel),
            ("attention_maps", args.attention_maps),
        )
        if v is not None
    }
    if args.no_offsets:
        overrides["use_offsets"] = False
    if args.init and args.resume:
        raise SaphnetError("--init and --resume exclude each other; --resume continues a run")
    device = pick_device(args.device)
    if args.preset is None and not args.init:
        args.preset = default_preset(device.type)
        log.info(
            "preset %s: the default on %s (--preset names another)",
            args.preset,
            "a GPU" if device.type == "cuda" else "a CPU",
        )
    try:
        base = read_config(args.init) if args.init else PRESETS[args.preset]
        config = dataclasses.replace(base, **overrides)
        settings = TrainSettings(
            **recipe(args),  # type: ignore[arg-type]
            seed=args.seed,
            amp=not args.no_amp,
            workers=args.workers,
            identity_start=not args.random_heads,
            channels_last=args.channels_last,
            compile=args.compile,
        )
    except (ValueError, TypeError) as exc:
        raise SaphnetError(f"{exc}; fix the option") from None
    out = Path(args.out)
    checkpoint = out / CHECKPOINT
    if checkpoint.exists() and not (args.resume or args.force):
        raise SaphnetError(
            f"{checkpoint} exists; pass --resume to continue or --force to start over"
        )
    if args.resume and not checkpoint.exists():
        raise SaphnetError(f"--resume: {checkpoint} does not exist; start without --resume")
    if args.export:
        check_writable(args.export, args.force)
    if not (args.data or args.synthetic):
        raise SaphnetError("no training data: give --data DIR, --synthetic, or both")
    train_set = training_dataset(args.data, settings.crop, settings.seed, builtin=args.synthetic)
    if isinstance(train_set, SyntheticBlurDataset) and args.synthesis == "device":
        train_set = DeviceBlurBatches(
            train_set.images,
            settings.crop,
            settings.batch_size,
            settings.seed,
            device,
            train_set.settings,
            pool_size=args.pool_size or default_pool_size(device.type),
            min_scale=train_set.min_scale,
        )
    val_set = (
        PairedFolderDataset(args.val_data, crop=None)
        if args.val_data
        else heldout_dataset(crop=args.val_crop, count=args.val_count)
    )
    trainer = Trainer(config, settings, train_set, val_set, out, device)
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    else:
        if args.force:
            (out / "history.jsonl").unlink(missing_ok=True)
        if args.init:
            trainer.init_weights(args.init)
    split = None
    if settings.time_budget_s is not None:
        split = split_budget(trainer, args.heldout_count, time.perf_counter() - started, args.onnx)
    log.info(
        "training %s on %s (%s), %d parameters, %s",
        args.init or args.preset,
        describe(device),
        " + ".join(filter(None, ["builtin photos" if args.synthetic else "", args.data])),
        sum(p.numel() for p in trainer.model.parameters()),
        f"for {trainer.settings.time_budget_s:.0f} s (at most {settings.iterations} steps)"
        if settings.time_budget_s
        else f"to iteration {settings.iterations}",
    )
    result = trainer.fit()
    extra = None if split is None else {"time_budget": split}
    summary = finish_run(trainer, result, args.heldout_count, args.onnx, extra)
    total = time.perf_counter() - started
    if settings.time_budget_s is not None:
        log.info(
            "the run took %s of its %s budget",
            format_duration(total),
            format_duration(settings.time_budget_s),
        )
    if args.export:
        trainer.model.save(args.export, force=args.force)
    t = result.throughput
    print(
        f"iteration {result.iteration}: validation PSNR {result.val_psnr:.2f} dB "
        f"(blurred input {result.input_psnr:.2f} dB), best {result.best_psnr:.2f} dB, "
        f"{result.elapsed_s / 60:.1f} min, {t['steps_per_s']:.2f} steps/s, "
        f"{t['images_per_s']:.1f} images/s; in {out}: {', '.join(summary['files'].values())}"
    )
    return 0
