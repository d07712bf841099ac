"""Small edges between commands (issue 20, items 6, 7 and 9): every README command
parses, ``--tile`` suggests only valid sides, ports and hosts are checked in one line,
a failed deblur leaves no folder behind, non-finite outputs are named for what was
seen, the auto backend imports no torch on a CPU, and training's default preset
follows the device."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saphnet.cli import build_parser, main

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDERS = {"HxW": "720x1280"}
"""Metavars a synopsis shows where a value goes, and a value of that form."""


def readme_commands() -> list[str]:
    """Every ``saphnet ...`` line of the README's code blocks, continuation lines joined
    and comments dropped; a synopsis's ``[optional]`` parts kept and ``a|b`` choices
    taken at their first, so every option it names is parsed too."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["saphnet"]:
                text = re.sub(r"\[([^\]]*)\]", r"\1", " ".join(shlex.quote(w) for w in words))
                words = [PLACEHOLDERS.get(w, w).split("|")[0] for w in shlex.split(text)]
                commands.append(shlex.join(words))
    return commands


def test_the_readme_has_commands_of_every_kind() -> None:
    names = {shlex.split(c)[1] for c in readme_commands()}
    assert {"deblur", "export", "train", "serve", "compare"} <= names


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses(command: str) -> None:
    """`saphnet train -o DIR`, three README examples, was an argparse error."""
    build_parser().parse_args(shlex.split(command)[1:])


def test_train_takes_o_for_its_run_folder() -> None:
    args = build_parser().parse_args(["train", "--synthetic", "-o", "runs/x"])
    assert args.out == "runs/x" and args.preset is None  # the device picks the preset


def test_default_preset_and_pool_follow_the_device() -> None:
    from saphnet.train.presets import default_pool_size, default_preset

    assert default_preset("cuda") == "paper" and default_preset("cpu") == "small"
    assert default_pool_size("cuda") == 2048 and default_pool_size("cpu") == 256
    assert build_parser().parse_args(["train", "--synthetic"]).pool_size is None


# --- --tile: valid, distinct suggestions; the minimum in --help -------------------


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [("16", "(try 32)"), ("20", "(try 32)"), ("40", "(try 32 or 48)"), ("500", "(try 496 or 512)")],
)
def test_tile_suggests_only_valid_distinct_sides(
    value: str, suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deblur", "a.png", "-o", "o", "--tile", value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(suggestion) and "at least 32" in err


def test_tile_help_states_the_minimum(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["deblur", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "a multiple of 16 of at least 32" in help_text


# --- serve: ports by argparse, the host named when it is the host ------------------


def test_serve_ports_are_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("99999", "0", "65536"):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["serve", "--http-port", value])
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "ports run from 1 to 65535" in err and "Traceback" not in err
    assert build_parser().parse_args(["serve", "--grpc-port", "65535"]).grpc_port == 65535


def test_serve_bad_host_names_the_host_not_a_port(
    tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", str(tiny_onnx), "--host", "not-a-host"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--host 'not-a-host' is not an address" in err[0]
    assert "port" not in err[0]


# --- deblur: no empty folder left behind -------------------------------------------


def test_a_failed_deblur_leaves_no_output_folder(
    tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "newdir"
    argv = ["-q", "deblur", str(tmp_path / "nope.png"), "-o", f"{out}/", "--backend", "torch"]
    assert main([*argv, "--weights", str(tiny_weights)]) == 1
    assert "nope.png" in capsys.readouterr().err
    assert not out.exists()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "a.png")
    argv[2] = str(tmp_path / "a.png")
    assert main([*argv, "--weights", str(tiny_weights)]) == 0
    assert (out / "a.png").is_file()  # a run that writes makes the folder


# --- non-finite outputs: what was seen, then the likely causes ----------------------


class _Overflowing:
    """A backend whose finite weights overflow: Inf out of a finite input."""

    name, precision = "onnxruntime", "fp32"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.full_like(batch, np.float32(3e38)) * np.float32(10)

    def close(self) -> None:
        pass


def test_overflow_is_reported_as_non_finite_activations() -> None:
    """It was reported as "the model's weights hold NaN/Inf", which finite weights
    that overflow do not."""
    from saphnet.runtime.api import NonFiniteError, deblur

    with pytest.raises(NonFiniteError) as info, np.errstate(over="ignore"):
        deblur(_Overflowing(), np.full((40, 40, 3), 100, np.uint8))
    message = str(info.value)
    assert message.startswith("the network's activations became non-finite")
    assert "finite weights so large that activations overflow" in message
    assert "weights hold NaN/Inf (" not in message


# --- the auto backend on a CPU imports no torch ------------------------------------


@pytest.mark.slow
def test_auto_deblur_on_a_cpu_does_not_import_torch(tmp_path: Path, tiny_weights: Path) -> None:
    """torch alone is ~190 MB of the 1 GB default budget; ``--backend auto`` imported
    it to look for CUDA even where it then ran ONNX Runtime on the CPU."""
    from saphnet.runtime.api import cached_onnx

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
    try:
        cached_onnx(tiny_weights)  # exported once, as a first run of the command does
    finally:
        os.environ.pop("XDG_CACHE_HOME")
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "a.png")
    code = (
        "import sys\nfrom saphnet.cli import main\n"
        f"code = main(['-q', 'deblur', {str(tmp_path / 'a.png')!r}, '-o', "
        f"{str(tmp_path / 'o.png')!r}, '--weights', {str(tiny_weights)!r}])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["0", "False"], result.stderr
    assert (tmp_path / "o.png").is_file()


# --- noise the user cannot act on ---------------------------------------------------


def test_polygraphy_logs_without_the_colored_module_warning() -> None:
    """``compare`` and ``selftest`` printed "[W] 'colored' module is not installed"."""
    code = (
        "import saphnet.runtime.compare\n"
        "from polygraphy.logger import G_LOGGER\n"
        "G_LOGGER.warning('probe')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    output = result.stdout + result.stderr
    assert "probe" in output and "colored" not in output


# --- the README's measured tables are the benchmarks' results -----------------------


def _readme_tables():
    import importlib.util

    path = README.parent / "benchmarks" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_are_what_the_results_files_hold() -> None:
    """The README's serving figures had drifted from a fresh run; now they are copied
    from benchmarks/results/ by benchmarks/readme_tables.py."""
    tables = _readme_tables()
    text = README.read_text()
    assert tables.render(text) == text, "run python benchmarks/readme_tables.py"
    for name in tables.BLOCKS:
        start = text.index(f"<!-- results: {name} ")
        assert "| " in text[start : text.index(f"<!-- end of results: {name} -->")]
    edited = text.replace(
        "<!-- end of results: serving -->", "| 99.9 |\n<!-- end of results: serving -->"
    )
    assert tables.render(edited) == text  # a hand edit is overwritten, so --check fails on it
