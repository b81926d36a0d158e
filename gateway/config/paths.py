"""Paths the daemon must be able to write: checked by `config check` and before `run`.

A store, a history or a state folder that cannot be made or written is a config error
(exit 78: a restart will not help), found before the daemon starts, with the key and the
reason; never a traceback and a restart loop. The checks look at the file system as the
process running them sees it: `config check` run as another user than the daemon may see
other permissions.

- ``[store] path`` and ``[history] path`` (when history is on): a regular file or nothing
  yet, never a directory (it is not a damaged store to move aside); writable, in a folder
  that is writable or can be made;
- ``[store] alarm_spill`` (when set): the same as a store file;
- ``[gateway] state_dir``: a folder, writable or makeable;
- ``[control] socket``: short enough for a Unix socket, a socket or nothing yet (the daemon
  replaces a socket a killed daemon left, never another file), its folder writable or makeable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.settings import GatewayConfig

TEXT_MISSING = _("{path} does not exist")
TEXT_WORLD_WRITABLE = _("{path}: others can change this file (chmod o-w)")
TEXT_WORLD_READABLE = _(
    "{path}: others can read this file, which points at credentials (chmod 640)"
)
TEXT_SECRET_READABLE = _("{path} can be read by others (mode {mode}); chmod 600")
TEXT_KEY_WRITABLE = _(
    "{path}: others can replace the key that decides which commands run (chmod 644)"
)
SOCKET_PATH_MAX = 107  # bytes: sun_path holds 108 with its terminating NUL (Linux)

TEXT_IS_DIRECTORY = _("{path} is a directory, not a file; name a file in it")
TEXT_NOT_REGULAR = _("{path} exists and is not a regular file")
TEXT_NOT_SOCKET = _(
    "{path} exists and is not a socket; the daemon would have to delete it: move it away"
)
TEXT_NOT_A_FOLDER = _("{path} is a file, not a folder")
TEXT_PARENT_FILE = _("{path} cannot be made: {parent} is a file, not a folder")
TEXT_NOT_WRITABLE = _("cannot write in {folder} ({reason})")
TEXT_FILE_READ_ONLY = _("{path} cannot be written ({reason})")
TEXT_SOCKET_TOO_LONG = _(
    "{path} is {length} bytes long; a Unix socket path may have at most {max}: "
    "choose a shorter path"
)
TEXT_READ_ONLY_FS = _("the file system is read-only")
TEXT_NO_PERMISSION = _("no permission")


def check_paths(config: GatewayConfig) -> list[str]:
    """Every problem with the paths the daemon writes, each with its key."""
    state_dir = config.gateway.state_dir or config.store.path.parent
    history = config.history.path or state_dir / "history.db"
    problems = [f"store.path: {p}" for p in _file_problems(config.store.path)]
    if config.store.alarm_spill is not None:
        problems += [f"store.alarm_spill: {p}" for p in _file_problems(config.store.alarm_spill)]
    problems += [f"gateway.state_dir: {p}" for p in _folder_problems(state_dir)]
    if config.history.enabled:
        problems += [f"history.path: {p}" for p in _file_problems(history)]
    problems += [f"control.socket: {p}" for p in _socket_problems(config.control.socket)]
    return problems


def _file_problems(path: Path) -> Iterable[str]:
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # not there, or under a file
        yield from _folder_problems(path.parent)
        return
    except OSError as exc:
        yield TEXT_FILE_READ_ONLY.format(path=path, reason=exc.strerror)
        return
    if stat.S_ISDIR(mode):
        yield TEXT_IS_DIRECTORY.format(path=path)
    elif not stat.S_ISREG(mode):
        yield TEXT_NOT_REGULAR.format(path=path)
    elif not _writable(path):
        yield TEXT_FILE_READ_ONLY.format(path=path, reason=_why_not_writable(path))
    else:
        yield from _folder_problems(path.parent)  # SQLite writes its -wal and -shm beside it


def _socket_problems(path: Path) -> Iterable[str]:
    length = len(os.fsencode(path))
    if length > SOCKET_PATH_MAX:
        yield TEXT_SOCKET_TOO_LONG.format(path=path, length=length, max=SOCKET_PATH_MAX)
        return
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # not there, or under a file
        yield from _folder_problems(path.parent)
        return
    except OSError as exc:
        yield TEXT_FILE_READ_ONLY.format(path=path, reason=exc.strerror)
        return
    if not stat.S_ISSOCK(mode):
        yield TEXT_NOT_SOCKET.format(path=path)
    else:
        yield from _folder_problems(path.parent)


def _folder_problems(folder: Path) -> Iterable[str]:
    """A folder that is there and writable, or that can be made (its nearest existing
    ancestor is a writable folder)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            break
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            yield TEXT_NOT_A_FOLDER.format(path=folder)
        else:
            yield TEXT_PARENT_FILE.format(path=folder, parent=existing)
        return
    if not _writable(existing):
        yield TEXT_NOT_WRITABLE.format(folder=existing, reason=_why_not_writable(existing))


def _writable(path: Path) -> bool:
    flags = os.W_OK | (os.X_OK if path.is_dir() else 0)
    return os.access(path, flags)


def _why_not_writable(path: Path) -> str:
    """Why ``path`` cannot be written: a read-only file system, or permissions."""
    try:
        probe = os.statvfs(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    if probe.f_flag & os.ST_RDONLY:
        return TEXT_READ_ONLY_FS
    return TEXT_NO_PERMISSION


def check_file_modes(
    config: GatewayConfig, path: Path, *, require_files: bool = False
) -> list[str]:
    """Files that others may read or change although they hold secrets or steer the gateway.

    A key or password file must be readable by its owner only; the config file must not
    be writable by others, nor readable by them once it points at credentials. With
    ``require_files`` (the daemon's start) every file the uplink needs must exist; a config
    checked elsewhere, e.g. in a bundle before it is installed, may point at files not there yet.
    """
    problems = []
    mode = path.stat().st_mode
    if mode & 0o002:
        problems.append(TEXT_WORLD_WRITABLE.format(path=path))
    secrets = (
        ("uplink.key_file", config.uplink.key_file),
        ("uplink.password_file", config.uplink.password_file),
    )
    if mode & 0o004 and any(file is not None for _key, file in secrets):
        problems.append(TEXT_WORLD_READABLE.format(path=path))
    if require_files:
        for key, file in (
            ("uplink.ca_file", config.uplink.ca_file),
            ("uplink.cert_file", config.uplink.cert_file),
            *secrets,
        ):
            if file is not None and not file.is_file():
                problems.append(f"{key}: " + TEXT_MISSING.format(path=file))
    verify_key = config.commands.verify_key
    if verify_key is not None:
        if require_files and not verify_key.is_file():
            problems.append("commands.verify_key: " + TEXT_MISSING.format(path=verify_key))
        elif verify_key.exists() and verify_key.stat().st_mode & 0o022:
            problems.append("commands.verify_key: " + TEXT_KEY_WRITABLE.format(path=verify_key))
    for key, file in secrets:
        if file is None or not file.exists():
            continue
        file_mode = file.stat().st_mode
        if file_mode & 0o077:
            problems.append(
                f"{key}: " + TEXT_SECRET_READABLE.format(path=file, mode=oct(file_mode & 0o777))
            )
    return problems
