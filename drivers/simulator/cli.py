"""The ``watchpost simulate`` command: run a simulated site until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from gettext import gettext as _
from pathlib import Path

from watchpost.config import EXIT_CONFIG, ConfigError, print_config_error
from watchpost.drivers.simulator.server import SimulatorError, serve
from watchpost.drivers.simulator.site import load_site

EXIT_OS = 71  # EX_OSERR: a port is taken, a link path is a file

TEXT_HELP = _("run a simulated hazard site (Modbus TCP and RTU) until Ctrl-C or SIGTERM")
TEXT_SITE = _("the site file (TOML)")
TEXT_EVENTS = _(
    "keep the buses' addresses and every event in this JSON file, rewritten after each event"
)
TEXT_PORT_BASE = _(
    "serve the TCP buses on this port and the following ones, in the file's "
    "order; 0: any free ports (see the events file)"
)
TEXT_SEED = _("seed of the noise, instead of the file's")
TEXT_DURATION = _("stop by itself after this many seconds")
TEXT_CHECK = _("only check the site file, print ok and exit")
TEXT_OK = _("ok")
TEXT_CANNOT_START = _("cannot start the simulated site: {error}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("simulate", help=TEXT_HELP, description=TEXT_HELP)
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", type=Path, metavar="SITE.toml", help=TEXT_SITE)
    parser.add_argument("--events", type=Path, metavar="FILE", help=TEXT_EVENTS)
    parser.add_argument("--port-base", type=_port, metavar="PORT", help=TEXT_PORT_BASE)
    parser.add_argument("--seed", type=int, help=TEXT_SEED)
    parser.add_argument("--duration", type=_positive, metavar="SECONDS", help=TEXT_DURATION)
    parser.add_argument("--check", action="store_true", help=TEXT_CHECK)


def run(args: argparse.Namespace) -> int:
    """Handler of ``watchpost simulate``; returns the exit status."""
    try:
        site = load_site(args.site)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    if args.check:
        print(TEXT_OK)
        return 0
    try:
        asyncio.run(
            serve(
                site,
                events_path=args.events,
                port_base=args.port_base,
                seed=args.seed,
                duration=args.duration,
            )
        )
    except SimulatorError as exc:
        print(TEXT_CANNOT_START.format(error=exc), file=sys.stderr)
        return EXIT_OS
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m watchpost.drivers.simulator``."""
    parser = argparse.ArgumentParser(prog="watchpost-simulate", description=TEXT_HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(args)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(_("must be 0..65535"))
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(_("must be above 0"))
    return value
