"""Room for alarms when the disk fills up: the reserve file and the spill file.

Both are used by the store's writer thread only.

``ReserveFile`` (``<store>.reserve``, ``[store] alarm_reserve_mb``): space taken from the
filesystem while it has room (``posix_fallocate``, so the blocks are really held), given
back the moment a commit finds the disk full, so that alarms and the broker's
acknowledgements can still be committed; taken again once the filesystem has twice its size
free.

``AlarmSpill`` (``[store] alarm_spill``, optional, best on another filesystem): durable
messages (alarm events) that the full disk cannot take are appended there as JSON lines and
fsync'd, so that they survive a stop or a kill; at the next start the store reads them back
and commits them with the seqs they already had. The file is removed once all of them are
in the store.

No exceptions of their own: ``OSError`` from the filesystem (a retry may help once there is
room), which the store logs once.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path

from watchpost.files import fsync_folder

log = logging.getLogger(__name__)

TEXT_SPILL_LINE = _("alarm spill %s: line %d cannot be read (%s); skipped")
TEXT_SPILL_READ = _("alarm spill %s: read %d message(s) that the full disk could not take")


class ReserveFile:
    """``size`` bytes held at ``path`` for the alarms; released when the disk is full."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        """Whether the reserve is in place (always, when its size is 0)."""
        if self.size <= 0:
            return True
        try:
            return self.path.stat().st_blocks * 512 >= self.size
        except OSError:
            return False

    def ensure(self, *, need_free: int) -> bool:
        """Take the reserve if the filesystem has ``need_free`` bytes free beyond it; whether
        it is held. OSError if the filesystem refuses (the file is then removed)."""
        if self.held:
            return True
        if shutil.disk_usage(self.path.parent).free < self.size + need_free:
            return False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError:
                os.ftruncate(fd, 0)  # a half-made reserve holds nothing anyone can count on
                raise
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def release(self) -> int:
        """Give the space back; the bytes released (0 when none were held)."""
        try:
            held = self.path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0
        self.path.unlink()
        return held


@dataclass(frozen=True, slots=True)
class Spilled:
    """One message as the spill file keeps it."""

    stream: str
    seq: int
    ts: int
    items: int
    boot: str | None
    body: bytes
    last: str | None

    def line(self) -> bytes:
        record = {
            "stream": self.stream,
            "seq": self.seq,
            "ts": self.ts,
            "items": self.items,
            "boot": self.boot,
            "body": base64.b64encode(self.body).decode("ascii"),
            "last": self.last,
        }
        return json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Spilled:
        """ValueError, KeyError or TypeError for a line that is not one of ours."""
        record = json.loads(line)
        return cls(
            stream=str(record["stream"]),
            seq=int(record["seq"]),
            ts=int(record["ts"]),
            items=int(record["items"]),
            boot=None if record["boot"] is None else str(record["boot"]),
            body=base64.b64decode(record["body"], validate=True),
            last=None if record["last"] is None else str(record["last"]),
        )


class AlarmSpill:
    """The second path for alarm events the full disk cannot take."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0  # messages appended since the file was last cleared

    def read(self) -> list[Spilled]:
        """What an earlier run spilled (a torn last line, from a kill, is skipped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found: list[Spilled] = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                found.append(Spilled.parse(line))
            except (ValueError, KeyError, TypeError) as exc:
                log.error(TEXT_SPILL_LINE, self.path, number, exc)
        if found:
            log.warning(TEXT_SPILL_READ, self.path, len(found))
        self.written = len(found)
        return found

    def append(self, messages: list[Spilled]) -> None:
        """Append and fsync; OSError if the second path cannot take them either."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            data = b"".join(message.line() for message in messages)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no torn line for the next append to run into
                raise
        finally:
            os.close(fd)
        if new:
            fsync_folder(self.path.parent)
        self.written += len(messages)

    def clear(self) -> None:
        """Everything spilled is in the store now."""
        if self.written or self.path.exists():
            self.path.unlink(missing_ok=True)
            fsync_folder(self.path.parent)
        self.written = 0
