"""The `watchpost` command: parses arguments and hands over to the module that does the work.

Each command lives in the module of its subsystem, which exposes ``register(subparsers)``;
adding a command is one line in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from gettext import gettext as _

from watchpost import __version__

# Modules that add commands, in the order `watchpost --help` lists them.
COMMAND_MODULES = (
    "watchpost.app",
    "watchpost.config",
    "watchpost.monitor",
    "watchpost.crew",
    "watchpost.backlog_cli",
    "watchpost.report",
    "watchpost.drivers.simulator.cli",
    "watchpost.anomaly_cli",
    "watchpost.provisioning.bundle",
    "watchpost.provisioning.firstboot",
    "watchpost.provisioning.scan",
)

TEXT_DESCRIPTION = _("Watchpost safety gateway: sensors, local alarms, store-and-forward to MQTT.")
TEXT_VERBOSE = _("log more (repeat for debug output)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchpost", description=TEXT_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"watchpost {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=TEXT_VERBOSE)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `watchpost` command; returns the exit status."""
    args = build_parser().parse_args(argv)
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
