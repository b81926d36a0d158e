"""The `watchpost` command: parses arguments and hands over to the module that does the work.

Each command lives in the module of its subsystem, which exposes ``register(subparsers)``;
adding a command is one line in ``COMMANDS``. Every command's (and sub-command's) `--help`
starts with its one-line help as description and shows each option's default
(``Parser``, ``DefaultsFormatter``); a test checks that no option lacks a help text.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from gettext import gettext as _
from pathlib import Path, PurePath
from typing import Any

from watchpost import __version__, config_child, hangup, i18n
from watchpost.i18n import N_

# Each command and the module that adds it, in the order `watchpost --help` lists them.
# Only the module of the command being run is imported: the daemon does not carry the
# installers' and crews' tooling in memory.
COMMANDS: dict[str, str] = {
    "run": "watchpost.app",
    "config": "watchpost.config.command",
    "monitor": "watchpost.monitor",
    **dict.fromkeys(
        ("status", "read", "watch", "alarms", "test-alarm", "selftest"), "watchpost.crew"
    ),
    "backlog": "watchpost.backlog_cli",
    "report": "watchpost.report",
    "simulate": "watchpost.drivers.simulator.cli",
    "anomaly": "watchpost.anomaly_cli",
    "provision": "watchpost.provisioning.bundle",
    "ca": "watchpost.provisioning.bundle",
    "firstboot": "watchpost.provisioning.firstboot",
    "scan": "watchpost.provisioning.scan",
    "version": "watchpost.version",
}

# The config the commands read unless given --config; its `[gateway] language` applies
# when the environment names no language.
DEFAULT_CONFIG = Path("/etc/watchpost/gateway.toml")

# Translated where used: this module is imported before the language is settled.
TEXT_DESCRIPTION = N_("Watchpost safety gateway: sensors, local alarms, store-and-forward to MQTT.")
TEXT_VERBOSE = N_("log more (repeat for debug output)")
TEXT_VERSION = N_("show the version and exit")
TEXT_DEFAULT = N_("{help} (default: {value})")
TEXT_DEFAULT_WORD = N_("default")  # a help text that names its default already


class DefaultsFormatter(argparse.HelpFormatter):
    """Adds ``(default: ...)`` to an option's help when it has a default worth showing and
    the help does not already name it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or _(TEXT_DEFAULT_WORD) in text
            or default in (None, False, argparse.SUPPRESS)
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
            or not action.option_strings
        ):
            return text
        shown = show_default(default).replace("%", "%%")
        return _(TEXT_DEFAULT).format(help=text, value=shown).strip()


def show_default(value: Any) -> str:
    """A default as a user would type it: lists comma-separated, paths as paths."""
    if isinstance(value, list | tuple):
        items = [show_default(v) for v in value]
        numbers = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        if len(numbers) == len(value) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
            return f"{numbers[0]}-{numbers[-1]}"
        return ",".join(items)
    if isinstance(value, PurePath):
        return str(value)
    return str(getattr(value, "value", value))


class SubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-commands whose `--help` opens with their one-line help and shows defaults."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("help") and "description" not in kwargs:
            kwargs["description"] = kwargs["help"]
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        return super().add_parser(name, **kwargs)  # type: ignore[no-any-return]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-command parsers are ``SubParsers``, at every depth."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", SubParsers)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone when it is known, else for every command."""
    parser = Parser(
        prog="watchpost", description=_(TEXT_DESCRIPTION), formatter_class=DefaultsFormatter
    )
    parser.add_argument(
        "--version", action="version", version=f"watchpost {__version__}", help=_(TEXT_VERSION)
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_(TEXT_VERBOSE))
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `watchpost` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command == "run":
        hangup.hold()  # before the daemon's slow imports: a reload must not kill the start
    i18n.apply_configured_language(_config_argument(argv))
    if command == "run" and not {"-h", "--help"} & set(argv):
        # the config is validated in a child process (it inherits the language just settled)
        # while the daemon imports its modules
        config_child.start_early(_config_argument(argv))
    args = build_parser(command).parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pymodbus logs every timeout; the poller reports a device's state once, on change
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.verbose > 2 else logging.CRITICAL)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def _config_argument(argv: Sequence[str]) -> Path:
    """The file a command's ``--config`` names, read before the parser exists."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--config="):
            return Path(arg.partition("=")[2])
    return DEFAULT_CONFIG
