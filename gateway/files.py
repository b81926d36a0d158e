"""Files that must survive a power cut whole: the one atomic write of the gateway.

Alarm state, anomaly calibrations, shutdown orders, installed credentials and the
simulator's event file are all written the same way: a temporary file in the same folder
(created 0600), written, flushed and fsync'd, renamed over the old file, then the folder
fsync'd so that the rename itself is on disk. A crash at any moment leaves the old file or
the new one, never a mix and never an empty file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    owner: tuple[int, int] | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically (see the module's docstring).

    ``mode`` and ``owner`` (uid, gid) are set on the temporary file before it takes the
    name, so the content never exists with a wider mode; without ``mode`` the file is 0600.
    ``durable=False`` skips the fsyncs, for files only other programs read (tests, tools).
    OSError if the folder cannot be written; the temporary file is removed then.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
