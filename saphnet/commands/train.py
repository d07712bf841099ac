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


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..train.settings import SCHEDULES, TrainSettings

    d = TrainSettings()
    p = sub.add_parser(
        "train",
        help="train SAPHNet (defaults: the paper's recipe)",
        description="Train SAPHNet. Data: --data DIR (GoPro-layout <seq>/blur, <seq>/sharp "
        "pairs, or a folder of sharp images blurred on the fly) and/or --synthetic (photos "
        "shipped by scikit-image and matplotlib, blurred on the fly; with --data DIR of "
        "sharp images, both sets). The run folder holds a resumable checkpoint.pt, "
        "latest/best .safetensors and history.jsonl.",
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
    p.add_argument("--out", default="saphnet-run", help="run folder (default: %(default)s)")
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
    net = p.add_argument_group("network")
    net.add_argument(
        "--preset",
        choices=("paper", "small"),
        default="paper",
        help="paper: the full network; small: the shipped checkpoint's (default: %(default)s)",
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
    opt = p.add_argument_group("recipe (defaults: the paper's)")
    recipe = (
        ("--iterations", int_at_least(1), d.iterations, "optimizer steps in total"),
        ("--batch-size", int_at_least(1), d.batch_size, "crops per step"),
        ("--crop", int_at_least(32), d.crop, "training crop side, a multiple of 16"),
        ("--lr", float_at_least(0.0), d.lr, "Adam's initial learning rate"),
        ("--lr-step", int_at_least(1), d.lr_step, "step schedule: steps per drop"),
        ("--lr-gamma", float_at_least(0.0), d.lr_gamma, "step schedule: drop factor"),
        ("--min-lr", float_at_least(0.0), d.min_lr, "cosine schedule: final lr"),
        ("--val-every", int_at_least(1), d.val_every, "steps between validations"),
        ("--checkpoint-every", int_at_least(1), d.checkpoint_every, "steps between checkpoints"),
        ("--seed", int_at_least(0), d.seed, "seeds the initialisation and every data item"),
        ("--workers", int_at_least(0), d.workers, "data-loader processes"),
    )
    for option, kind, default, what in recipe:
        opt.add_argument(option, type=kind, default=default, help=f"{what} (default: %(default)s)")
    opt.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=d.schedule,
        help="learning-rate schedule (default: %(default)s)",
    )
    opt.add_argument(
        "--loss",
        choices=("l1", "mse", "charbonnier"),
        default=d.loss,
        help="training loss (default: %(default)s)",
    )
    opt.add_argument(
        "--grad-clip",
        type=float_at_least(0.0),
        default=None,
        help="clip the gradient norm to this (default: no clipping)",
    )
    opt.add_argument(
        "--random-heads",
        action="store_true",
        help="keep the decoders' random last convs (default: zeroed, the net starts as identity)",
    )
    opt.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    opt.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N (default: %(default)s)",
    )
    opt.add_argument(
        "--threads", type=int_at_least(1), help="CPU threads for torch (default: torch's)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from ..data.datasets import PairedFolderDataset, heldout_dataset, training_dataset
    from ..errors import SaphnetError
    from ..files import check_writable
    from ..model import read_config
    from ..train.presets import PRESETS
    from ..train.settings import TrainSettings
    from ..train.trainer import CHECKPOINT, Trainer, pick_device

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
    try:
        base = read_config(args.init) if args.init else PRESETS[args.preset]
        config = dataclasses.replace(base, **overrides)
        settings = TrainSettings(
            iterations=args.iterations,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=args.lr,
            schedule=args.schedule,
            lr_step=args.lr_step,
            lr_gamma=args.lr_gamma,
            min_lr=args.min_lr,
            loss=args.loss,
            grad_clip=args.grad_clip,
            val_every=args.val_every,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            amp=not args.no_amp,
            workers=args.workers,
            identity_start=not args.random_heads,
        )
    except ValueError as exc:
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
    val_set = (
        PairedFolderDataset(args.val_data, crop=None)
        if args.val_data
        else heldout_dataset(crop=args.val_crop, count=args.val_count)
    )
    trainer = Trainer(config, settings, train_set, val_set, out, pick_device(args.device))
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    else:
        if args.force:
            (out / "history.jsonl").unlink(missing_ok=True)
        if args.init:
            trainer.init_weights(args.init)
    log.info(
        "training %s on %s (%s), %d parameters, to iteration %d",
        args.init or args.preset,
        trainer.device,
        " + ".join(filter(None, ["builtin photos" if args.synthetic else "", args.data])),
        sum(p.numel() for p in trainer.model.parameters()),
        settings.iterations,
    )
    result = trainer.fit()
    if args.export:
        trainer.model.save(args.export, force=args.force)
    print(
        f"iteration {result.iteration}: validation PSNR {result.val_psnr:.2f} dB "
        f"(blurred input {result.input_psnr:.2f} dB), best {result.best_psnr:.2f} dB, "
        f"{result.elapsed_s / 60:.1f} min; weights in {out}"
    )
    return 0
