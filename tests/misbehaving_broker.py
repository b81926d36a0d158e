"""An MQTT 3.1.1 broker that misbehaves on purpose, on a loopback port, for tests.

Brokers break in ways a healthy Mosquitto never shows: one accepts CONNECT and every
PUBLISH but never acknowledges any (a broker whose storage is stuck, a bridge that lost its
far side); another acknowledges a message and then drops the link, every time (a crashing
plugin, a proxy with a byte limit). This one speaks just enough MQTT to do that on demand:

- ``"no_puback"``: CONNACK, SUBACK and PINGRESP as usual, PUBLISH taken and never answered;
- ``"drop_after_puback"``: the first QoS 1 PUBLISH of a connection is acknowledged, then the
  link is closed (what else the client sent on it is read and never answered);
- ``"ok"``: every QoS 1 PUBLISH acknowledged (a broker that only records, for ordering).

It records every PUBLISH per connection (topic, payload), in the order they arrived, and
forwards nothing anywhere.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["no_puback", "drop_after_puback", "ok"]

CONNACK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


@dataclass
class Connection:
    """What one client connection sent: its PUBLISHes as (topic, payload), in order."""

    published: list[tuple[str, bytes]] = field(default_factory=list)
    acked: list[tuple[str, bytes]] = field(default_factory=list)  # PUBACK sent for these
    times: list[float] = field(default_factory=list)  # monotonic arrival of each PUBLISH


class _Closed(Exception):
    """The client's side of the link closed."""


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise _Closed
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One MQTT packet: its first byte and its body (remaining length bytes)."""
    first = _read_exact(sock, 1)[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = _read_exact(sock, 1)[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, _read_exact(sock, length)


def _swallow(sock: socket.socket, timeout: float = 2.0) -> None:
    """Read and drop what the client still sends until it closes its side (or ``timeout``)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass  # timed out or reset: the link is gone either way


class MisbehavingBroker:
    """Listens on 127.0.0.1 (a free port) and answers every connection as ``mode`` says."""

    def __init__(self, mode: Mode, port: int = 0) -> None:
        self.mode: Mode = mode
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", port))
        self.port = int(self._socket.getsockname()[1])
        self._closed = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="bad-broker")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def published(self) -> list[tuple[str, bytes]]:
        """Every PUBLISH of every connection, in arrival order."""
        with self._lock:
            return [message for c in self.connections for message in c.published]

    def acked(self) -> list[tuple[str, bytes]]:
        """Every PUBLISH it acknowledged, in arrival order."""
        with self._lock:
            return [message for c in self.connections for message in c.acked]

    def first_seen(self, topic: str) -> float | None:
        """When (monotonic) the first PUBLISH on ``topic`` arrived, or None."""
        with self._lock:
            return min(
                (
                    t
                    for c in self.connections
                    for (name, _), t in zip(c.published, c.times, strict=True)
                    if name == topic
                ),
                default=None,
            )

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._socket.accept()
            except OSError:
                return
            connection = Connection()
            with self._lock:
                self.connections.append(connection)
                self._clients.append(client)
            threading.Thread(
                target=self._serve, args=(client, connection), daemon=True, name="bad-broker-link"
            ).start()

    def _serve(self, client: socket.socket, connection: Connection) -> None:
        client.settimeout(120)
        try:
            with client:
                while not self._closed.is_set():
                    kind, body = _read_packet(client)
                    if not self._answer(client, connection, kind, body):
                        return
        except (_Closed, OSError):
            return

    def _answer(
        self, client: socket.socket, connection: Connection, kind: int, body: bytes
    ) -> bool:
        """Answer one packet; False once the link is to be dropped."""
        packet = kind >> 4
        if packet == 1:  # CONNECT
            client.sendall(CONNACK)
        elif packet == 8:  # SUBSCRIBE: grant QoS 1 to each filter
            filters, at = 0, 2
            while at < len(body):
                at += 2 + int.from_bytes(body[at : at + 2], "big") + 1
                filters += 1
            client.sendall(bytes([0x90, 2 + filters]) + body[:2] + b"\x01" * filters)
        elif packet == 12:  # PINGREQ
            client.sendall(PINGRESP)
        elif packet == 14:  # DISCONNECT
            return False
        elif packet == 3:
            return self._publish(client, connection, kind, body)
        return True

    def _publish(
        self, client: socket.socket, connection: Connection, kind: int, body: bytes
    ) -> bool:
        qos = (kind >> 1) & 3
        length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + length].decode()
        at = 2 + length
        packet_id = body[at : at + 2] if qos else b""
        message = (topic, body[at + (2 if qos else 0) :])
        with self._lock:
            connection.published.append(message)
            connection.times.append(time.monotonic())
        if qos == 0 or self.mode == "no_puback":
            return True
        client.sendall(b"\x40\x02" + packet_id)
        with self._lock:
            connection.acked.append(message)
        if self.mode == "drop_after_puback":
            client.shutdown(socket.SHUT_WR)  # the PUBACK, then the end of the link
            _swallow(client)  # the rest of the burst, never answered (a close with unread
            return False  # bytes would be a RST, which could overtake the PUBACK)
        return True

    def close(self) -> None:
        self._closed.set()
        self._socket.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):  # already closed by the client or the mode
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
