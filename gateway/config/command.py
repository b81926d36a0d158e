"""The `watchpost config` command: check a config file, print or write the demo config.

It loads the config layer only, never the daemon, so it stays small on a gateway.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from gettext import gettext as _
from pathlib import Path

from watchpost.config.base import EXIT_CONFIG, ConfigError
from watchpost.config.errors import print_config_error
from watchpost.config.file import check_file_modes, load_config
from watchpost.config.paths import check_paths

TEXT_OK = _("ok")
TEXT_CHECK_HELP = _("check a config file and print every error with its key path")
TEXT_CONFIG_HELP = _("work with the gateway's config file")
TEXT_FILE_HELP = _("the config file (TOML)")
TEXT_EXAMPLE_HELP = _("print the demo gateway config, or write it and the demo site to --out")
TEXT_OUT_HELP = _("a folder to write gateway.toml and site.toml into")
TEXT_EXISTS = _("{path} exists already; not overwritten")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help=TEXT_CONFIG_HELP)
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help=TEXT_CHECK_HELP)
    check.add_argument("file", type=Path, help=TEXT_FILE_HELP)
    check.set_defaults(handler=_check)
    example = actions.add_parser("example", help=TEXT_EXAMPLE_HELP)
    example.add_argument("--out", type=Path, help=TEXT_OUT_HELP)
    example.set_defaults(handler=_example)


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
        problems = check_file_modes(config, args.file) + check_paths(config)
        if problems:
            raise ConfigError(args.file, problems)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    print(TEXT_OK)
    return 0


def _example(args: argparse.Namespace) -> int:
    demo = importlib.resources.files("watchpost") / "examples" / "demo"
    if args.out is None:
        print((demo / "gateway.toml").read_text(encoding="utf-8"), end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("gateway.toml", "site.toml"):
        target = args.out / name
        if target.exists():
            print(TEXT_EXISTS.format(path=target), file=sys.stderr)
            return 1
        target.write_text((demo / name).read_text(encoding="utf-8"), encoding="utf-8")
        print(target)
    return 0
