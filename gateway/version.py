"""What this gateway runs: `watchpost version [--json]`, and the same facts for `status`.

::

    {"version": "0.1.0", "architecture": "arm64", "python": "3.11.2",
     "libraries": {"numpy": "1.26.4", "tflite-runtime": "2.14.0", ...},
     "model": {"id": "generic-v1", "sha256": "2b4d..."},
     "update": {"previous": "0.0.9", "confirmed": "0.1.0", "rolled_back_from": null}}

``architecture`` is the Debian architecture the package was built for (from the
``buildinfo.json`` that `scripts/package` writes into the package), or ``source`` for an
install from the repository. ``update`` comes from the update guard's state file
(/var/lib/watchpost-update/state.json, see docs/installer-guide.md); ``rolled_back_from``
names the version that did not come up when this one is running because of a rollback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import platform
from collections.abc import Mapping
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost import __version__
from watchpost.models import SHIPPED_MODEL, shipped_model_path

log = logging.getLogger(__name__)

# the distributions whose versions crews and the platform ask about, in this order
LIBRARIES = (
    "numpy",
    "tflite-runtime",
    "ai-edge-litert",
    "pydantic",
    "pydantic-core",
    "pymodbus",
    "paho-mqtt",
    "pyserial",
    "cryptography",
)
BUILDINFO = Path(__file__).with_name("buildinfo.json")
UPDATE_STATE = Path("/var/lib/watchpost-update/state.json")

TEXT_VERSION_HELP = _("show the version, the bundled libraries and the model")
TEXT_JSON_HELP = _("print JSON")
TEXT_ROLLED_BACK = _("running {version} because {failed} did not come up after an update: {reason}")
LOG_ROLLED_BACK = "running %s because %s did not come up after an update: %s"


def software(update_state: Path = UPDATE_STATE) -> dict[str, Any]:
    """Everything `watchpost version --json` prints."""
    return {
        "version": __version__,
        "architecture": _buildinfo().get("architecture", "source"),
        "python": platform.python_version(),
        "libraries": dict(_libraries()),
        "model": dict(_model()),
        "update": update_info(update_state),
    }


def update_info(path: Path = UPDATE_STATE) -> dict[str, Any]:
    """What the update guard recorded; ``rolled_back_from`` only if that rollback led here."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = {}
    except (OSError, ValueError) as exc:
        return {"error": f"{path}: {exc}"}
    rollback = state.get("last_rollback") or {}
    here = rollback.get("to") == __version__
    return {
        "previous": state.get("previous"),
        "confirmed": state.get("confirmed"),
        "rolled_back_from": rollback.get("from") if here else None,
        "rollback_reason": rollback.get("reason") if here else None,
        "rollback_ts": rollback.get("ts_ms") if here else None,
    }


def log_rollback(path: Path = UPDATE_STATE) -> None:
    """At the daemon's start: say so in the log when it runs because of a rollback."""
    info = update_info(path)
    if info.get("rolled_back_from"):
        log.warning(LOG_ROLLED_BACK, __version__, info["rolled_back_from"], info["rollback_reason"])


@functools.cache
def _buildinfo() -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads(BUILDINFO.read_text())
    except FileNotFoundError:
        return {}
    return info


_known_libraries: dict[str, str] | None = None  # as the config's child read them


def libraries() -> dict[str, str]:
    """The installed versions of ``LIBRARIES``, in that order (the ones not installed left
    out), read from their distributions' metadata."""
    from importlib import metadata  # noqa: PLC0415 - 1 MB with zipfile and csv: see below

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def know_libraries(found: Mapping[str, str]) -> None:
    """Take the versions another process of this install read (``libraries``).

    The config's child (``config_child``) has ``importlib.metadata`` loaded anyway (pydantic's
    plugin lookup) and hands the versions back with the config, so that the daemon does not
    keep ``importlib.metadata``, ``zipfile`` and ``csv`` (1 MB resident) for nine strings.
    """
    global _known_libraries  # noqa: PLW0603 - one value per process, like the cache below
    _known_libraries = {str(name): str(version) for name, version in found.items()}


@functools.cache
def _libraries() -> dict[str, str]:
    return dict(_known_libraries) if _known_libraries is not None else libraries()


@functools.cache
def _model() -> dict[str, Any]:
    card = shipped_model_path().with_suffix(".json")
    try:
        sha = json.loads(card.read_text()).get("sha256")
    except (OSError, ValueError):
        sha = None
    return {"id": SHIPPED_MODEL, "sha256": sha}


# -- the `watchpost version` command ---------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("version", help=TEXT_VERSION_HELP)
    parser.add_argument("--json", action="store_true", help=TEXT_JSON_HELP)
    parser.set_defaults(handler=_version)


def _version(args: argparse.Namespace) -> int:
    info = software()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"watchpost {info['version']} ({info['architecture']}, Python {info['python']})")
    for name, version in info["libraries"].items():
        print(f"  {name} {version}")
    print(f"  model {info['model']['id']} sha256:{(info['model']['sha256'] or '?')[:12]}")
    update = info["update"]
    if update.get("rolled_back_from"):
        print(
            TEXT_ROLLED_BACK.format(
                version=info["version"],
                failed=update["rolled_back_from"],
                reason=update["rollback_reason"],
            )
        )
    return 0
