"""End-to-end signed commands: only the platform, not anyone on the broker, steers alarms.

With ``[commands] verify_key`` (the platform's Ed25519 public key, PEM) every command but
`ping` must carry::

    id        a text or a whole number, unique per command (1-128 characters)
    ts        when the platform sent it, UTC epoch milliseconds
    gateway   the id of the gateway it is meant for
    sig       base64 of the Ed25519 signature over canonical(payload without sig)

``canonical`` is ``json.dumps(payload_without_sig, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8. A command is refused when it is unsigned or badly signed,
meant for another gateway, its ``ts`` further than ``max_age`` from the gateway's clock
(either way), or its ``id`` was already accepted within ``max_age`` (a replay). A
*retained* command is never executed, signed or not: a broker keeps handing it to every
new session (one retained `cmd/reload` restarted a gateway every second). Without a key,
commands are accepted as before; the daemon warns at start and `selftest` says so.

The replay window (the ids accepted within ``max_age``, with their ``ts``) is also kept in a
small file in the state folder (``command_ids.json``), written atomically before the command
runs, so that a command replayed right after a restart is refused as well. A file that
cannot be read is reported and ignored (the window then starts empty: a replay is refused
by ``ts`` once ``max_age`` has passed); one that cannot be written is logged once.

Exceptions::

    CommandRefused    the command must not run; the reason says why; no retry helps
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchpost.files import atomic_write
from watchpost.log_once import LogOnce

if TYPE_CHECKING:  # cryptography loads only where a key is used: the daemon stays light
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

log = logging.getLogger(__name__)

SEEN_FILE = "command_ids.json"  # the replay window, in the state folder
UNSIGNED = frozenset({"ping"})  # answered without a signature: it changes nothing
MAX_ID_LENGTH = 128
MAX_REMEMBERED = 100_000  # ids kept for the replay window; far above any platform's rate

TEXT_RETAINED = _("a retained command is never executed: publish commands without retain")
TEXT_UNSIGNED = _("{name} must be signed (sig): this gateway verifies commands")
TEXT_NEEDS = _("a signed command needs {key}")
TEXT_BAD_ID = _("id must be a text of 1-{max} characters or a whole number")
TEXT_BAD_TS = _("ts must be a whole number of epoch milliseconds")
TEXT_BAD_SIG = _("sig is not base64 of a 64-byte Ed25519 signature")
TEXT_WRONG_SIG = _("the signature does not match the command (or another key signed it)")
TEXT_OTHER_GATEWAY = _("meant for gateway {got!r}, this is {ours!r}")
TEXT_TOO_OLD = _("ts is {age:.0f} s from this gateway's clock; at most {max_age:g} s are allowed")
TEXT_REPLAY = _("id {id!r} was already executed: a replay is refused")
TEXT_BAD_KEY = _("{path}: not an Ed25519 public key in PEM ({error})")
TEXT_SEEN_UNREADABLE = _(
    "cannot read the ids of executed commands from %s (%s): a command replayed within "
    "max_age of this start is refused only by its ts"
)
TEXT_SEEN_COST = _("a command replayed after the next restart is refused only by its ts")


class CommandRefused(Exception):
    """The command must not run. No retry helps."""


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the payload without ``sig``, keys sorted, no spaces."""
    body = {key: value for key, value in payload.items() if key != "sig"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign(key: Ed25519PrivateKey, payload: Mapping[str, Any]) -> str:
    """``sig`` for ``payload`` (what the platform does; for tests and tooling)."""
    return base64.b64encode(key.sign(canonical(payload))).decode("ascii")


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """The platform's public key; ValueError naming the file if it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(TEXT_BAD_KEY.format(path=path, error=exc)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(TEXT_BAD_KEY.format(path=path, error=type(key).__name__))
    return key


class CommandVerifier:
    """Decides whether one command may run: retained, signature, gateway, age, replay."""

    def __init__(
        self,
        key: Ed25519PublicKey | None,
        *,
        gateway: str,
        max_age_s: float,
        now_ms: Callable[[], int],
        seen_file: Path | None = None,
    ) -> None:
        self.key = key
        self.gateway = gateway
        self.max_age_ms = max_age_s * 1000
        self._now_ms = now_ms
        # (the id's type, the id) -> its ts, oldest first: 5 and "5" are different ids
        self._seen: OrderedDict[tuple[str, str | int], int] = OrderedDict()
        self._seen_file = seen_file if key is not None else None
        self._changes = 0  # ids remembered so far; the file holds those up to _written
        self._written = 0
        self._write_lock = threading.Lock()
        self._write_failures = LogOnce(log, "saving the ids of executed commands", TEXT_SEEN_COST)
        if self._seen_file is not None:
            self._load(self._seen_file)

    @property
    def verifying(self) -> bool:
        """Whether commands must be signed (a key is configured)."""
        return self.key is not None

    def check(self, name: str, payload: Mapping[str, Any]) -> None:
        """Raise CommandRefused unless command ``name`` with ``payload`` may run now. (A
        retained command is refused before, by the uplink, which sees the MQTT flag.)"""
        if self.key is None or name in UNSIGNED:
            return
        sig = payload.get("sig")
        if sig is None:
            raise CommandRefused(TEXT_UNSIGNED.format(name=name))
        command_id, ts = _id(payload), _ts(payload)
        gateway = payload.get("gateway")
        if not isinstance(gateway, str):
            raise CommandRefused(TEXT_NEEDS.format(key="gateway"))
        self._verify(sig, payload)
        if gateway != self.gateway:
            raise CommandRefused(TEXT_OTHER_GATEWAY.format(got=gateway[:64], ours=self.gateway))
        now = self._now_ms()
        if abs(now - ts) > self.max_age_ms:
            raise CommandRefused(
                TEXT_TOO_OLD.format(age=abs(now - ts) / 1000, max_age=self.max_age_ms / 1000)
            )
        self._remember(command_id, ts, now)

    async def persist(self) -> None:
        """Write the replay window to its file (atomically, in a worker thread) if it
        changed: call it after ``check`` accepted a command and before the command runs."""
        if self._seen_file is None or self._written >= self._changes:
            return
        version = self._changes
        entries = [[kind, command_id, ts] for (kind, command_id), ts in self._seen.items()]
        data = json.dumps({"format": 1, "seen": entries}, separators=(",", ":")).encode()
        await asyncio.to_thread(self._write, self._seen_file, data, version)

    def _write(self, path: Path, data: bytes, version: int) -> None:
        with self._write_lock:  # a later window is never overwritten by an earlier one
            if version <= self._written:
                return
            try:
                atomic_write(path, data, mode=0o600)
            except OSError as exc:
                self._write_failures.failed(exc)
                return
            self._write_failures.succeeded()
            self._written = version

    def _load(self, path: Path) -> None:
        """The window saved before a restart, without the ids that are already too old."""
        try:
            data = json.loads(path.read_bytes())
            entries = data["seen"] if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise TypeError(type(entries).__name__)
            horizon = self._now_ms() - self.max_age_ms
            for kind, command_id, ts in entries:
                if kind not in ("str", "int") or type(command_id).__name__ != kind:
                    raise TypeError(kind)
                if isinstance(ts, int) and not isinstance(ts, bool) and ts >= horizon:
                    self._seen[(kind, command_id)] = ts
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning(TEXT_SEEN_UNREADABLE, path, exc)
            self._seen.clear()

    def _verify(self, sig: object, payload: Mapping[str, Any]) -> None:
        assert self.key is not None
        if not isinstance(sig, str):
            raise CommandRefused(TEXT_BAD_SIG)
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CommandRefused(TEXT_BAD_SIG) from exc
        if len(raw) != 64:
            raise CommandRefused(TEXT_BAD_SIG)
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        try:
            self.key.verify(raw, canonical(payload))
        except (InvalidSignature, ValueError) as exc:  # ValueError: NaN, not JSON-able
            raise CommandRefused(TEXT_WRONG_SIG) from exc

    def _remember(self, command_id: str | int, ts: int, now: int) -> None:
        """Refuse an id seen in the window; keep it for as long as a replay could pass."""
        seen = self._seen
        horizon = now - self.max_age_ms
        while seen and (next(iter(seen.values())) < horizon or len(seen) >= MAX_REMEMBERED):
            seen.popitem(last=False)
        key = (type(command_id).__name__, command_id)
        if key in seen:
            raise CommandRefused(TEXT_REPLAY.format(id=command_id))
        seen[key] = ts
        self._changes += 1


def _id(payload: Mapping[str, Any]) -> str | int:
    value = payload.get("id")
    if value is None:
        raise CommandRefused(TEXT_NEEDS.format(key="id"))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return value
    if isinstance(value, str) and 1 <= len(value) <= MAX_ID_LENGTH:
        return value
    raise CommandRefused(TEXT_BAD_ID.format(max=MAX_ID_LENGTH))


def _ts(payload: Mapping[str, Any]) -> int:
    value = payload.get("ts")
    if value is None:
        raise CommandRefused(TEXT_NEEDS.format(key="ts"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused(TEXT_BAD_TS)
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise CommandRefused(TEXT_BAD_TS)
    return int(value)
