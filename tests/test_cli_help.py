"""Every command's and sub-command's `--help`: a description, a help text for every option
and argument, and the defaults shown."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from watchpost.cli import build_parser, main


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_and_argument_has_a_help_text_and_every_command_a_description():
    missing = []
    for path, parser in _parsers(build_parser()):
        if path and not parser.description:
            missing.append(f"{' '.join(path)}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"{' '.join(path) or 'watchpost'} {name}: no help")
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["scan"], ["find the Modbus RTU units", "(default: 1-247)", "(default: N,E,O)"]),
        (["alarms", "shelve"], ["shelve an alarm", "--by BY", "(default: crew)"]),
        (["report"], ["(default: /etc/watchpost/gateway.toml)"]),
        (["read"], ["(default: holding)", "(default: uint16)", "(default: 1)"]),
    ],
)
def test_help_pages_show_descriptions_and_defaults(argv, expected, capsys):
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # the page, its lines joined
    for text in expected:
        assert text in out, (argv, text, out)
    assert "(default: None)" not in out
    assert "(default: False)" not in out
