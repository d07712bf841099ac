"""Training under a time budget, and the GPU code paths as far as a CPU runs them:
device selection, mixed precision, channels-last, the PDF op under autocast."""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np
import onnx
import pytest
import torch

from saphnet.cli import main
from saphnet.data.datasets import SyntheticBlurDataset
from saphnet.errors import SaphnetError
from saphnet.model import SAPHNet
from saphnet.ops import available_backends
from saphnet.train.budget import cosine_lr, parse_duration
from saphnet.train.device import amp_dtype, pdf_backends, pick_device
from saphnet.train.finish import EVAL, FINAL, MIN_TRAINING_S, ONNX, SUMMARY
from saphnet.train.presets import SMALL_CONFIG
from saphnet.train.settings import TrainSettings
from saphnet.train.trainer import HISTORY, Trainer

CPU = torch.device("cpu")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
pytestmark = pytest.mark.usefixtures("one_thread")


def _data() -> SyntheticBlurDataset:
    g = np.random.default_rng(0)
    images = [g.random((64, 64, 3)).astype(np.float32)]
    return SyntheticBlurDataset(images, crop=32, seed=0, length=10**6)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m", 360), ("90s", 90), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150), ("45", 45)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "6x", "m", "5 m", "-5s", "0s", "0", "1d", "inf"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--time-budget", "6x", "duration"),
        ("--time-budget", "0s", "positive"),
        ("--device", "gpu", "device"),
    ],
)
def test_bad_train_options_are_argparse_errors(option, value, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--synthetic", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and option in err


def test_budget_schedule_warms_up_then_anneals_to_the_floor() -> None:
    lr, floor = 1e-3, 1e-6
    assert cosine_lr(0.0, lr, floor) == pytest.approx(lr)
    assert cosine_lr(0.5, lr, floor) == pytest.approx((lr + floor) / 2)
    assert cosine_lr(1.0, lr, floor) == pytest.approx(floor)
    assert cosine_lr(1.7, lr, floor) == pytest.approx(floor)  # past the budget: the floor
    assert cosine_lr(0.0, lr, floor, warmup=0.1) == pytest.approx(lr / 10)
    assert cosine_lr(0.1, lr, floor, warmup=0.1) == pytest.approx(lr)
    rates = [cosine_lr(p, lr, floor, warmup=0.1) for p in np.linspace(0, 1, 41)]
    peak = int(np.argmax(rates))
    assert all(a <= b for a, b in itertools.pairwise(rates[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(rates[peak:]))


def test_a_budget_needs_the_cosine_schedule() -> None:
    with pytest.raises(ValueError, match="cosine"):
        TrainSettings(time_budget_s=10.0, schedule="step")
    with pytest.raises(ValueError, match="time_budget_s"):
        TrainSettings(time_budget_s=0.0, schedule="cosine")


def test_budgeted_fit_stops_within_one_step_and_anneals(tmp_path, tiny_config) -> None:
    budget = 2.0
    settings = TrainSettings(
        iterations=10**6,
        batch_size=1,
        crop=32,
        lr=1e-3,
        schedule="cosine",
        time_budget_s=budget,
        val_every=10**6,
        checkpoint_every=10**6,
    )
    trainer = Trainer(tiny_config, settings, _data(), None, tmp_path, CPU)
    result = trainer.fit()
    assert result.iteration >= 3
    assert budget <= result.last_step_s <= budget + result.throughput["max_step_s"]
    # The last step started past (budget - one step), where the cosine is near its floor.
    assert trainer.optimizer.param_groups[0]["lr"] < 0.05 * settings.lr
    assert result.throughput["steps_per_s"] > 0


def test_resuming_a_spent_budget_takes_no_step(tmp_path, tiny_config) -> None:
    settings = TrainSettings(
        iterations=10**6, batch_size=1, crop=32, schedule="cosine", time_budget_s=0.5
    )
    first = Trainer(tiny_config, settings, _data(), None, tmp_path, CPU)
    done = first.fit().iteration
    again = Trainer(tiny_config, settings, _data(), None, tmp_path, CPU)
    again.load_checkpoint(tmp_path / "checkpoint.pt")
    assert again.fit().iteration == done


def test_auto_device_is_cuda_only_where_visible() -> None:
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == CPU
    with pytest.raises(SaphnetError, match="auto, cpu, cuda"):
        pick_device("gpu")


@NO_CUDA
def test_cuda_without_a_gpu_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SaphnetError, match="--device cpu"):
        pick_device("cuda")
    assert main(["train", "--synthetic", "--device", "cuda", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU" in err and len(err.splitlines()) == 1


def test_mixed_precision_is_off_on_cpu(tmp_path, tiny_config) -> None:
    assert amp_dtype(CPU) is None and amp_dtype(CPU, enabled=False) is None
    trainer = Trainer(tiny_config, TrainSettings(crop=32), _data(), None, tmp_path, CPU)
    assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()
    assert not trainer.channels_last  # NHWC only by default on CUDA


def test_pdf_backends_are_registered_ones() -> None:
    names = pdf_backends(CPU)
    assert set(names) == {"train", "eval"}
    assert set(names.values()) <= set(available_backends())


def test_network_trains_under_autocast_with_the_pdf_op_in_float32(tiny_config) -> None:
    """The CUDA mixed-precision path, run with CPU autocast: bfloat16 features reach
    the PDF op, which must run (in float32) and pass gradients back."""
    model = SAPHNet(tiny_config).train()
    x = torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    pdf = model.levels[0].encoder.blocks[0].cam.pdf.filter.weight.grad
    assert pdf is not None and float(pdf.abs().sum()) > 0


def test_channels_last_training_matches_contiguous(tmp_path, tiny_config) -> None:
    blurred, sharp = _data()[0]
    batch = (
        torch.from_numpy(blurred.transpose(2, 0, 1).copy())[None],
        torch.from_numpy(sharp.transpose(2, 0, 1).copy())[None],
    )
    losses = []
    for channels_last in (False, True):
        settings = TrainSettings(crop=32, lr=1e-3, channels_last=channels_last)
        trainer = Trainer(tiny_config, settings, _data(), None, tmp_path / str(channels_last), CPU)
        losses.append([trainer.step(*batch)[0] for _ in range(3)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


@pytest.mark.slow
def test_budgeted_cli_run_stops_saves_evaluates_and_exports(tmp_path, capsys, caplog) -> None:
    """Without --preset a CPU run takes the small network (issue 20, item 7), and the
    budget bounds set-up, training and the held-out evaluation together."""
    out = tmp_path / "run"
    argv = [
        "train",
        "--synthetic",
        "--widths",
        "8,16,32",
        "--time-budget",
        "5s",
        "--batch-size",
        "1",
        "--crop",
        "32",
        "--val-count",
        "1",
        "--val-crop",
        "32",
        "--pool-size",
        "8",
        "--heldout-count",
        "2",
        "--channels-last",  # the CUDA default layout, through save, eval and export
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "preset small: the default on a CPU" in caplog.text
    assert "the ONNX export of the final weights runs after the budget" in caplog.text
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["config"]["pdf_kernel"] == SMALL_CONFIG.pdf_kernel
    split = summary["time_budget"]
    assert split["total_s"] == 5.0 and split["heldout_s"] > 0
    left = 5.0 - split["setup_s"] - split["heldout_s"]
    assert split["training_s"] == pytest.approx(max(left, MIN_TRAINING_S), abs=1e-2)
    t = summary["throughput"]
    assert split["training_s"] <= summary["last_step_s"] <= split["training_s"] + t["max_step_s"]
    assert t["steps_per_s"] > 0 and t["images_per_s"] == pytest.approx(t["steps_per_s"])
    assert summary["files"] == {"weights": FINAL, "eval": EVAL, "onnx": ONNX}
    assert summary["mixed_precision"] is None and summary["device"] == "cpu"
    assert summary["channels_last"] is True

    model = SAPHNet.load(out / FINAL)
    assert model.config.widths == (8, 16, 32)
    report = json.loads((out / EVAL).read_text())
    assert report["count"] == 2 and len(report["images"]) == 2
    for image in report["images"]:
        assert image["psnr_gain"] == pytest.approx(image["psnr"] - image["input_psnr"])
    assert set(report["psnr_gain"]) == {"min", "median", "max", "improved"}
    assert "gain per image" in capsys.readouterr().out

    import onnxruntime as ort

    onnx.checker.check_model(str(out / ONNX))
    session = ort.InferenceSession(str(out / ONNX), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-4)
    history = [json.loads(line) for line in (out / HISTORY).read_text().splitlines()]
    assert history[-1]["iteration"] == summary["iterations"]
    assert math.isfinite(history[-1]["val_psnr"])


def test_gpu_short_preset_brings_its_recipe_and_options_win() -> None:
    from saphnet.cli import build_parser
    from saphnet.commands.train import recipe
    from saphnet.train.presets import RECIPES

    args = build_parser().parse_args(["train", "--synthetic", "--preset", "gpu-short"])
    assert recipe(args) == RECIPES["gpu-short"]
    assert TrainSettings(**recipe(args)).time_budget_s == 360.0
    args = build_parser().parse_args(
        ["train", "--synthetic", "--preset", "gpu-short", "--time-budget", "4m", "--crop", "128"]
    )
    fields = recipe(args)
    assert fields["time_budget_s"] == 240.0 and fields["crop"] == 128
    assert fields["batch_size"] == RECIPES["gpu-short"]["batch_size"]
    plain = recipe(build_parser().parse_args(["train", "--synthetic", "--time-budget", "90s"]))
    assert plain == {"time_budget_s": 90.0, "schedule": "cosine"}  # the paper's recipe otherwise
