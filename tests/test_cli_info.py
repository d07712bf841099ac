"""``saphnet info`` and the CLI's one-line errors."""

from __future__ import annotations

import json

from saphnet.cli import main
from saphnet.model import SAPHNet


def test_info_reports_parameters_macs_and_config(tiny_config, tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    SAPHNet(tiny_config).save(weights)
    assert main(["info", "--weights", str(weights), "--size", "64x96", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"] == sum(p.numel() for p in SAPHNet(tiny_config).parameters())
    assert report["height"] == 64 and report["width"] == 96
    assert 0 < report["pdf_macs"] < report["macs"]
    assert report["config"]["pdf_kernel"] == 3


def test_info_bad_weights_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    assert main(["info", "--weights", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("saphnet info: error:") and "not a safetensors file" in err
    assert "\n" not in err


def test_info_paper_config_counts_the_full_network(capsys):
    assert main(["info", "--paper", "--size", "32x32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == "None"
    assert report["config"]["widths"] == [32, 64, 128]
    assert report["parameters"] == sum(p.numel() for p in SAPHNet().parameters())
