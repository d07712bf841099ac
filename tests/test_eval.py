"""Evaluation: known pairs give known numbers; the CLI prints a table and writes JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from saphnet.cli import main
from saphnet.model import SAPHNet
from saphnet.train.evaluate import evaluate
from saphnet.train.metrics import batch_psnr, psnr, ssim


def _image(seed: int = 0, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    return (0.1 + 0.7 * np.random.default_rng(seed).random((*shape, 3))).astype(np.float32)


def test_psnr_of_a_constant_offset_is_known() -> None:
    sharp = _image()
    # MSE = offset^2, so PSNR = -20 log10(offset): 0.01 -> 40 dB, 0.1 -> 20 dB.
    assert psnr(sharp + 0.01, sharp) == pytest.approx(40.0, abs=1e-4)
    assert psnr(sharp - 0.1, sharp) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(sharp, sharp))
    t = torch.from_numpy(sharp.transpose(2, 0, 1))[None]
    assert batch_psnr(t + 0.01, t) == pytest.approx(40.0, abs=1e-3)


def test_ssim_is_one_for_equal_images_and_lower_otherwise() -> None:
    sharp = _image()
    assert ssim(sharp, sharp) == pytest.approx(1.0)
    noisy = np.clip(sharp + 0.1 * np.random.default_rng(1).standard_normal(sharp.shape), 0, 1)
    assert ssim(noisy, sharp) < 0.9


def test_evaluate_scores_output_and_input() -> None:
    sharp = _image()
    report = evaluate(lambda b: b, [("a", sharp + 0.01, sharp), ("b", sharp + 0.1, sharp)])
    a, b = report.scores
    assert a.psnr == pytest.approx(40.0, abs=1e-3) and a.input_psnr == pytest.approx(a.psnr)
    assert b.psnr == pytest.approx(20.0, abs=1e-3)
    data = report.as_dict()
    assert data["mean"]["psnr"] == pytest.approx(30.0, abs=1e-3)
    assert data["mean"]["psnr_gain"] == pytest.approx(0.0, abs=1e-9)
    assert "mean" in report.table().splitlines()[-2]


def _gopro_folder(root, blur_offset: int = 0) -> None:
    sharp = (_image(shape=(32, 48)) * 255).round().astype(np.uint8)
    for seq in ("s1", "s2"):
        for kind in ("blur", "sharp"):
            (root / "data" / seq / kind).mkdir(parents=True)
            image = sharp + np.uint8(blur_offset) if kind == "blur" else sharp
            Image.fromarray(image).save(root / "data" / seq / kind / "0001.png")


def test_eval_cli_on_a_gopro_folder(tmp_path, tiny_config, capsys) -> None:
    _gopro_folder(tmp_path)
    weights = tmp_path / "w.safetensors"
    SAPHNet(tiny_config).save(weights)
    out = tmp_path / "scores.json"
    argv = ["eval", "--data", str(tmp_path / "data"), "--weights", str(weights), "--json", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "s1/0001.png" in table and "s2/0001.png" in table
    data = json.loads(out.read_text())
    assert data["count"] == 2
    assert math.isinf(data["images"][0]["input_psnr"])  # blurred == sharp here
    assert np.isfinite(data["mean"]["psnr"])
    assert main(argv) == 2  # the JSON exists and --force was not given
    assert "--force" in capsys.readouterr().err


def test_eval_cli_without_pairs_fails_in_one_line(tmp_path, tiny_config, capsys) -> None:
    weights = tmp_path / "w.safetensors"
    SAPHNet(tiny_config).save(weights)
    assert main(["eval", "--data", str(tmp_path), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "GoPro" in err and len(err.strip().splitlines()) == 1


def test_eval_cli_scores_an_onnx_file_like_its_weights(
    tmp_path, tiny_weights, tiny_onnx, capsys
) -> None:
    """The deployed file is scored through ONNX Runtime and agrees with PyTorch."""
    _gopro_folder(tmp_path, blur_offset=12)
    data = str(tmp_path / "data")
    scores = {}
    for name, source in (
        ("torch", ["--weights", str(tiny_weights)]),
        ("ort", ["--model", str(tiny_onnx)]),
    ):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--data", data, *source, "--json", str(out)]) == 0
        scores[name] = json.loads(out.read_text())
    assert "onnxruntime" in scores["ort"]["model"] and "torch" in scores["torch"]["model"]
    assert np.isfinite(scores["ort"]["mean"]["psnr"])
    assert scores["ort"]["mean"]["psnr"] == pytest.approx(scores["torch"]["mean"]["psnr"], abs=1e-3)
    assert "s1/0001.png" in capsys.readouterr().out
    both = ["eval", "--data", data, "--model", str(tiny_onnx), "--weights", str(tiny_weights)]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err


def test_report_gives_every_image_its_gain() -> None:
    sharp = _image()
    pairs = [("a", sharp + 0.1, sharp), ("b", sharp + 0.02, sharp)]
    report = evaluate(lambda b: b - 0.05, pairs)  # halves a's error, overshoots b's
    data = report.as_dict()
    gains = {image["name"]: image["psnr_gain"] for image in data["images"]}
    assert gains["a"] == pytest.approx(20 * math.log10(2), abs=1e-3)  # +6.02 dB
    assert gains["b"] < 0
    assert data["psnr_gain"]["improved"] == 1
    assert data["psnr_gain"]["min"] == pytest.approx(gains["b"])
    assert data["psnr_gain"]["max"] == pytest.approx(gains["a"])
    assert "1 of 2 improved" in report.table()
