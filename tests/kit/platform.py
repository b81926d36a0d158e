"""The emergency-management platform's side of a gateway's command topics.

    platform = Platform(broker, sub, "watchpost/v1/mine-7/gw-01/", key=PLATFORM_KEY)
    reply = platform.send("ack", platform.payload(alarm="gas_a/high_alarm", by="duty"))

``sub`` is a Subscriber that sees the replies (``ROOT cmd/+/reply`` or wider).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from watchpost.command_auth import sign

if TYPE_CHECKING:
    from tests.conftest import Broker, Subscriber


class Platform:
    """Publishes commands under ``root`` and waits for each one's reply, matched by id."""

    def __init__(
        self, broker: Broker, sub: Subscriber, root: str, *, key: Ed25519PrivateKey | None = None
    ) -> None:
        self.sub, self.root, self.key = sub, root, key
        self.gateway = root.rstrip("/").rsplit("/", 1)[-1]
        self._ids = itertools.count(1)
        self._name = f"platform-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._name)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # brokers are restarted
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def payload(self, **fields: Any) -> dict[str, Any]:
        """A command body with a fresh id, the time and this gateway, then ``fields``; signed
        with ``key`` if the platform has one."""
        body = {"id": self._fresh_id(), "ts": int(time.time() * 1000), "gateway": self.gateway}
        body.update(fields)
        if self.key is not None:
            body["sig"] = sign(self.key, body)
        return body

    def send(
        self,
        name: str,
        payload: bytes | dict[str, Any],
        *,
        timeout: float = 10.0,
        retain: bool = False,
    ) -> dict[str, Any]:
        """Publish ``payload`` on ``cmd/NAME``; the reply with its id (a dict without one gets
        a fresh id), or for raw bytes the next reply. AssertionError if none comes in time."""
        wanted: Any = None
        if isinstance(payload, dict):
            payload = {"id": self._fresh_id(), **payload}
            wanted = payload["id"]
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        topic = self.root + f"cmd/{name}"
        before = len(self.sub.get(topic + "/reply"))
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)

        def mine(reply: dict[str, Any]) -> bool:
            return wanted is None or reply.get("id") == wanted

        replies = self.sub.wait_for(
            topic + "/reply", timeout=timeout, predicate=lambda got: any(map(mine, got[before:]))
        )
        return next(reply for reply in replies[before:] if mine(reply))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _fresh_id(self) -> str:
        return f"{self._name}-{next(self._ids)}"
