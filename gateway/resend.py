"""Gap repair (`cmd/resend`): the platform found seqs missing, the gateway sends them again.

A broker can lose what it has acknowledged (a crash of one with persistence loses what it
had not yet written). The store keeps every message the broker acknowledged for
``[store] keep_sent`` (table ``sent``); ``cmd/resend`` names a stream and a seq range, and
the rows still kept go out again through the uplink, framed by the outbox like any stored
row but with ``"replay": true``, after every live stream. The reply says what happened to
each seq of the range, as ``[first, last]`` runs:

    resent     kept: queued to go out again
    waiting    not yet acknowledged: the uplink sends them by itself
    not_kept   neither: past keep_sent, dropped at the quota, or telemetry evicted unsent
    last_seq   the stream's last seq; seqs after it were never given out

The signature, age and replay checks are those of every command (``command_auth``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from gettext import gettext as _
from typing import TYPE_CHECKING, Any

from watchpost.commands import CommandError

if TYPE_CHECKING:
    from watchpost.store import Store

TEXT_BUSY = _("too many messages already wait to be sent again; ask again later")


class GapRepair:
    """Answers `cmd/resend` from the store's kept rows; ``queue`` hands them to the uplink
    (False: it has too many waiting)."""

    def __init__(self, store: Store, queue: Callable[[list[int]], bool]) -> None:
        self._store = store
        self._queue = queue

    async def __call__(self, stream: str, first: int, last: int) -> dict[str, Any]:
        found = await asyncio.to_thread(self._store.sent_range, stream, first, last)
        kept = [seq for seq, _row in found.kept]
        if kept and not self._queue([row for _seq, row in found.kept]):
            raise CommandError(TEXT_BUSY)
        known = set(kept) | set(found.waiting)
        missing = [seq for seq in range(first, min(last, found.last_seq) + 1) if seq not in known]
        return {
            "stream": stream,
            "from_seq": first,
            "to_seq": last,
            "resent": runs(kept),
            "waiting": runs(found.waiting),
            "not_kept": runs(missing),
            "last_seq": found.last_seq,
            "keep_sent_s": self._store.keep_sent_ms / 1000,
        }


def runs(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted seqs as ``[first, last]`` runs: ``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]``."""
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out
