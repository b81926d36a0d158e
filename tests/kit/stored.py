"""Test helpers for the store and the outbox: raw bodies in, framed messages out."""

from __future__ import annotations

import json
from typing import Any

from watchpost.outbox import Outbox
from watchpost.store import Store

_OUTBOXES: dict[int, Outbox] = {}


async def put(store: Store, stream: str, body: dict[str, Any], *, ts: int, durable: bool) -> int:
    """Store a body given as a dict (any keys: the store keeps bytes); return its seq."""
    items = len(body.get("samples", ())) if stream == "telemetry" else 1
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return await store.put(stream, data, ts=ts, durable=durable, items=items)


def outbox(store: Store, gateway: str = "gw1") -> Outbox:
    """The one outbox over ``store`` (made once: it reports a damaged store when made)."""
    key = id(store)
    if key not in _OUTBOXES or _OUTBOXES[key].store is not store:
        _OUTBOXES[key] = Outbox(store, gateway=gateway, clock=store._clock)
    return _OUTBOXES[key]
