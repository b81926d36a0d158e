"""paho's network loop run by the asyncio event loop, not by a thread of its own.

The way aiomqtt drives paho: the connected socket is registered with the event loop
(``add_reader``, and ``add_writer`` while paho has bytes to send), and ``loop_misc`` runs
every second for the keepalive. paho's callbacks (CONNACK, PUBACK, a command) then run on the
event loop's thread, and a PUBLISH is written from it: a message and its acknowledgement no
longer cross between threads (two crossings fewer per message, see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from gettext import gettext as _
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from watchpost.ticks import next_tick

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike as _SocketLike

log = logging.getLogger(__name__)

TEXT_WRITE_FAILED = _("could not write to the broker while closing: %s")
MISC_INTERVAL = 1.0  # seconds between keepalive checks; the keepalive itself is >= 2 s


class PahoOnLoop:
    """Drives one connected paho client from ``loop`` until ``stop`` or its socket closes."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._sock: Any = None
        self._misc: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take over the socket of a client whose ``connect`` has returned."""
        client = self._client
        sock = client.socket()
        if sock is None:
            raise ConnectionError(mqtt.error_string(mqtt.MQTT_ERR_NO_CONN))
        self._sock = sock
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote_all
        client.on_socket_close = self._closed
        self._loop.add_reader(sock, self._read)
        if client.want_write():
            self._loop.add_writer(sock, self._write)
        self._misc = self._loop.call_at(next_tick(self._loop.time(), MISC_INTERVAL), self._tick)

    def flush(self) -> None:
        """Write what paho has queued now, rather than on the next turn of the loop."""
        if self._sock is not None and self._client.want_write():
            self._client.loop_write()

    def stop(self) -> None:
        """Send what is queued (a DISCONNECT) if the socket takes it, then let go of it."""
        sock = self._sock
        if sock is None:
            return
        try:
            self.flush()
        except OSError as exc:
            log.info(TEXT_WRITE_FAILED, exc)
        if self._sock is not None:  # paho did not close it after its DISCONNECT
            self._forget(sock)
            sock.close()

    def _read(self) -> None:
        client = self._client
        rc = client.loop_read()
        # TLS: bytes already decrypted wait in the SSL object, where the selector cannot see
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(self._sock, ssl.SSLSocket):
            if not self._sock.pending():
                break
            rc = client.loop_read()

    def _write(self) -> None:
        self._client.loop_write()

    def _tick(self) -> None:
        self._misc = None
        if self._sock is None:
            return
        self._client.loop_misc()
        if self._sock is not None:
            self._misc = self._loop.call_at(next_tick(self._loop.time(), MISC_INTERVAL), self._tick)

    def _want_write(self, _client: mqtt.Client, _userdata: Any, sock: _SocketLike) -> None:
        self._loop.add_writer(sock, self._write)

    def _wrote_all(self, _client: mqtt.Client, _userdata: Any, sock: _SocketLike) -> None:
        self._loop.remove_writer(sock)

    def _closed(self, _client: mqtt.Client, _userdata: Any, sock: _SocketLike) -> None:
        self._forget(sock)

    def _forget(self, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
