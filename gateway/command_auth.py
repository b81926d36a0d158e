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

The replay window is kept in memory: after a restart a replay is still refused by ``ts``
once ``max_age`` has passed, so keep ``max_age`` short.

Exceptions::

    CommandRefused    the command must not run; the reason says why; no retry helps
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography loads only where a key is used: the daemon stays light
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

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
    ) -> None:
        self.key = key
        self.gateway = gateway
        self.max_age_ms = max_age_s * 1000
        self._now_ms = now_ms
        # (the id's type, the id) -> its ts, oldest first: 5 and "5" are different ids
        self._seen: OrderedDict[tuple[str, str | int], int] = OrderedDict()

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
