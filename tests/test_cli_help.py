"""Every subcommand has a description, and every option a one-line help that shows its
default (issue 15, item 10). Walks the real parser, so options added later are held
to the same rule."""

from __future__ import annotations

import argparse

import pytest

from saphnet.cli import build_parser

NO_HELP_NEEDED = (argparse._HelpAction, argparse._VersionAction)
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)
"""A flag's default is "not given"; its help says what giving it does."""


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


SUBCOMMANDS = sorted(_subparsers())


def test_the_walk_finds_every_subcommand() -> None:
    assert {"deblur", "export", "compare", "info", "train", "inspect", "build"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_has_a_description(name: str) -> None:
    parser = _subparsers()[name]
    assert parser.description and len(parser.description) > 20, name


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help_that_shows_its_default(name: str) -> None:
    parser = _subparsers()[name]
    missing = []
    for action in parser._actions:
        if isinstance(action, NO_HELP_NEEDED):
            continue
        label = "/".join(action.option_strings) or action.dest
        text = action.help
        if not text or text == argparse.SUPPRESS or not text.strip():
            missing.append(f"{label}: no help")
            continue
        if "\n" in text:
            missing.append(f"{label}: help is more than one line")
        # what runs when an option is left out must be said ("%(default)s" or in words)
        optional = action.option_strings and not action.required
        if optional and not isinstance(action, FLAGS) and "default" not in text:
            missing.append(f"{label}: help does not show the default")
    assert not missing, f"saphnet {name}: " + "; ".join(missing)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_renders(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0 and "default" in capsys.readouterr().out
