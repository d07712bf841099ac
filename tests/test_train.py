"""Training: the loss goes down, resuming equals not stopping, checkpoints deploy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saphnet.cli import main
from saphnet.data.datasets import SyntheticBlurDataset
from saphnet.model import SAPHNet, SAPHNetConfig
from saphnet.train.losses import make_loss
from saphnet.train.settings import TrainSettings
from saphnet.train.trainer import (
    BEST,
    CHECKPOINT,
    HISTORY,
    LATEST,
    Trainer,
    make_scheduler,
    to_tensor,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(seed: int = 0) -> SyntheticBlurDataset:
    g = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(g.random((96, 96, 3)), axis=0), axis=1)
    images = [(smooth / smooth.max()).astype(np.float32), g.random((96, 96, 3)).astype(np.float32)]
    return SyntheticBlurDataset(images, crop=32, seed=seed, length=10**6)


def _settings(**kw) -> TrainSettings:
    base = dict(iterations=6, batch_size=2, crop=32, lr=1e-3, val_every=3, checkpoint_every=3)
    return TrainSettings(**{**base, **kw})


# One 32x32 crop per step and one validation crop: the smallest run that exercises it all.
TINY_RUN = [
    *("--batch-size", "1", "--crop", "32", "--val-count", "1", "--val-crop", "32"),
    *("--pool-size", "8", "--heldout-count", "0", "--no-onnx"),
]


def test_a_few_steps_lower_the_loss(tmp_path, tiny_config: SAPHNetConfig) -> None:
    blurred, sharp = _data()[0]
    batch = to_tensor([blurred, blurred]), to_tensor([sharp, sharp])
    trainer = Trainer(tiny_config, _settings(iterations=40, lr=5e-3), _data(), None, tmp_path, CPU)
    losses = [trainer.step(*batch)[0] for _ in range(40)]  # from identity: the blurred loss
    assert np.mean(losses[-3:]) < 0.9 * losses[0]


def test_resumed_training_equals_uninterrupted(tmp_path, tiny_config: SAPHNetConfig) -> None:
    settings = _settings(iterations=4, checkpoint_every=2)
    whole = Trainer(tiny_config, settings, _data(), None, tmp_path / "a", CPU)
    whole.fit()

    first = Trainer(tiny_config, settings, _data(), None, tmp_path / "b", CPU)
    first.fit(stop_at=2)
    torch.manual_seed(123)  # a fresh process would not share the first one's RNG
    second = Trainer(tiny_config, settings, _data(), None, tmp_path / "b", CPU)
    second.load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert second.iteration == 2
    second.fit()

    assert second.iteration == whole.iteration == 4
    a, b = whole.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = whole.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    assert whole.scheduler.get_last_lr() == second.scheduler.get_last_lr()


def test_fit_writes_loadable_weights_and_history(tmp_path, tiny_config: SAPHNetConfig) -> None:
    val = SyntheticBlurDataset(_data().images, crop=32, seed=99, length=2)
    trainer = Trainer(tiny_config, _settings(), _data(), val, tmp_path, CPU)
    result = trainer.fit()
    assert result.iteration == 6 and np.isfinite(result.val_psnr)
    for name in (CHECKPOINT, LATEST, BEST):
        assert (tmp_path / name).is_file()
    assert SAPHNet.load(tmp_path / LATEST).config == tiny_config
    lines = (tmp_path / HISTORY).read_text().splitlines()
    assert len(lines) == 2  # validations at 3 and 6


def test_step_schedule_halves_the_rate() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-4)
    sched = make_scheduler(opt, TrainSettings(lr=1e-4, lr_step=3, lr_gamma=0.5))
    rates = []
    for _ in range(7):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([1e-4] * 3 + [5e-5] * 3 + [2.5e-5])


def test_paper_recipe_is_the_default() -> None:
    s = TrainSettings()
    assert (s.lr, s.lr_step, s.lr_gamma, s.batch_size, s.crop, s.schedule) == (
        1e-4,
        200_000,
        0.5,
        6,
        256,
        "step",
    )


@pytest.mark.parametrize("name", ["l1", "mse", "charbonnier"])
def test_losses_are_zero_only_for_equal_images(name: str) -> None:
    loss = make_loss(name)
    x = torch.rand(1, 3, 8, 8)
    assert float(loss(x, x)) < 2e-3
    assert float(loss(x, x + 0.1)) > 5e-3


def test_train_cli_runs_and_refuses_to_clobber(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--synthetic",
        "--preset",
        "small",
        "--widths",
        "8,16,32",
        "--iterations",
        "2",
        *TINY_RUN,
        "--threads",
        "1",
        "--out",
        str(out),
        "--export",
        str(tmp_path / "w.safetensors"),
    ]
    assert main(args) == 0
    assert "iteration 2" in capsys.readouterr().out
    assert SAPHNet.load(tmp_path / "w.safetensors").config.widths == (8, 16, 32)
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    resumed = [*args[:-2], "--resume"]
    resumed[resumed.index("--iterations") + 1] = "3"
    assert main(resumed) == 0
    assert "iteration 3" in capsys.readouterr().out
    no_data = [a for a in args if a != "--synthetic"]
    assert main([*no_data[:-2], "--force"]) == 2
    assert "--data DIR, --synthetic" in capsys.readouterr().err


def test_train_cli_fine_tunes_from_weights(tmp_path, tiny_config: SAPHNetConfig) -> None:
    start = tmp_path / "start.safetensors"
    SAPHNet(tiny_config).save(start)
    out = tmp_path / "run"
    argv = [
        "train",
        "--synthetic",
        "--init",
        str(start),
        "--iterations",
        "1",
        *TINY_RUN,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    tuned = SAPHNet.load(out / LATEST)
    assert tuned.config == tiny_config
    before = SAPHNet.load(start).state_dict()
    after = tuned.state_dict()
    # one small Adam step: every tensor moved by at most about the learning rate
    assert max(float((after[k] - before[k]).abs().max()) for k in before) <= 2e-4
    assert main([*argv, "--resume"]) == 2


@pytest.mark.parametrize("identity_start", [True, False])
def test_untrained_network_starts_at_identity(tmp_path, tiny_config, identity_start) -> None:
    trainer = Trainer(
        tiny_config, _settings(identity_start=identity_start), _data(), None, tmp_path, CPU
    )
    blurred = to_tensor([_data()[0][0]])
    trainer.model.train()  # no clamp: the residual path alone
    with torch.no_grad():
        same = torch.equal(trainer.model(blurred), blurred)
    assert same is identity_start
