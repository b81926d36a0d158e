"""A listener that answers every MQTT 5 CONNECT with one CONNACK reason code, for tests.

Brokers answer "server busy" (0x89), "quota exceeded" (0x97), "connection rate exceeded"
(0x9F), "use another server" (0x9C) and "server moved" (0x9D) only under load or in a
cluster; this speaks just enough MQTT 5 to give those answers on demand on a loopback port.
It counts the CONNECTs it was sent.
"""

from __future__ import annotations

import socket
import threading
import time


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def connack(code: int, *, reason: str | None = None, server: str | None = None) -> bytes:
    """An MQTT 5 CONNACK packet with ``code`` and the optional reason string / reference."""
    properties = b""
    if reason is not None:
        properties += b"\x1f" + _utf8(reason)
    if server is not None:
        properties += b"\x1c" + _utf8(server)
    body = b"\x00" + bytes([code]) + _varint(len(properties)) + properties
    return b"\x20" + _varint(len(body)) + body


class ConnackBroker:
    """Accepts TCP connections on 127.0.0.1 and refuses every CONNECT with ``code``."""

    def __init__(self, code: int, *, reason: str | None = None, server: str | None = None):
        self.packet = connack(code, reason=reason, server=server)
        self.connects: list[float] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True, name="connack-broker")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                try:
                    if connection.recv(1) != b"\x10":  # not a CONNECT
                        continue
                    length, shift = 0, 0
                    while True:
                        byte = connection.recv(1)[0]
                        length += (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    while length > 0:
                        length -= len(connection.recv(length))
                    self.connects.append(time.monotonic())
                    connection.sendall(self.packet)
                    time.sleep(0.05)  # let the client read it before the close
                except (OSError, IndexError):
                    continue

    def close(self) -> None:
        self._closed = True
        self._socket.close()
        self._thread.join(timeout=5)
