"""The local control socket: the crews' CLI talks to the running daemon through it.

Newline-delimited JSON over a Unix stream socket, one request and one answer per line::

    -> {"op": "status", "args": {}}
    <- {"ok": true, "result": {...}}   or   {"ok": false, "error": "what went wrong"}

The socket is made group-accessible only (mode 0660): the crew's accounts join the
gateway's group. It can never take the file descriptors the alarm path needs: at most
``MAX_CONNECTIONS`` are served at once (one more is told so and closed at once), a connection
that sends no complete request for ``IDLE_TIMEOUT`` seconds is closed, and running out of
descriptors (``accept`` failing) is logged once, and once more when it clears. Exceptions::

    ControlError            the daemon refused or failed the operation; no retry helps
    DaemonNotRunning        nothing listens on the socket; the CLI falls back to direct access
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from gettext import gettext as _
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
MAX_CONNECTIONS = 16  # crews' CLIs open one connection per request
IDLE_TIMEOUT = 15.0  # s a connection may wait before sending a complete request
Handler = Callable[[dict[str, Any]], Awaitable[Any]]

TEXT_UNKNOWN_OP = _("unknown operation {op!r} (known: {known})")
TEXT_BAD_REQUEST = _("a request is one JSON object per line with an 'op'")
TEXT_NOT_RUNNING = _("the daemon is not running (no answer on {path})")
TEXT_NO_ANSWER = _("the daemon did not answer on {path}: {error}")
TEXT_FAILED = _("the daemon could not do {op!r}; its log says why (a retry may help)")
TEXT_BUSY = _("too many control connections ({count} open); try again in a moment (a retry helps)")
TEXT_BUSY_LOG = _(
    "control socket: too many control connections ({count} open): refusing new ones; "
    "idle ones are closed after {idle:g} s"
)
TEXT_BUSY_CLEARED = _("control socket: control connections below the limit again")
TEXT_NO_DESCRIPTORS = _(
    "control socket: cannot accept connections: {error} (out of file descriptors?); "
    "retrying quietly until it clears"
)
TEXT_DESCRIPTORS_BACK = _("control socket: accepting connections again")
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"  # asyncio's own words


class ControlError(Exception):
    """The daemon refused or failed an operation. No retry helps."""


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket."""


class ControlServer:
    """Serves ``handlers`` by name on a Unix socket until cancelled."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.open_connections = 0
        self._refusing = False  # over MAX_CONNECTIONS: logged once until it clears
        self._out_of_descriptors = False  # accept() failed: logged once until it clears
        self.listening = asyncio.Event()  # set once crews can connect

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a daemon that was killed
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST, backlog=MAX_CONNECTIONS
        )
        self.path.chmod(0o660)
        self.listening.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.listening.clear()
            loop.set_exception_handler(previous)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio retries a failed ``accept`` every second and reports each failure; say it
        once, and pass every other report on as usual."""
        if context.get("message") != ACCEPT_OUT_OF_RESOURCES:
            loop.default_exception_handler(context)
            return
        if not self._out_of_descriptors:
            self._out_of_descriptors = True
            log.error(TEXT_NO_DESCRIPTORS.format(error=context.get("exception")))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._out_of_descriptors:
            self._out_of_descriptors = False
            log.warning(TEXT_DESCRIPTORS_BACK)
        if self.open_connections >= MAX_CONNECTIONS:
            self._refuse(writer)
            return
        if self._refusing:
            self._refusing = False
            log.warning(TEXT_BUSY_CLEARED)
        self.open_connections += 1
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    line = await reader.readline()
                if not line:
                    break
                answer = await self._answer(line)
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # idle too long, gone, or a line over MAX_REQUEST: the connection ends
        finally:
            self.open_connections -= 1
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """Tell one connection too many why it is closed; log it once until it clears."""
        if not self._refusing:
            self._refusing = True
            log.error(TEXT_BUSY_LOG.format(count=self.open_connections, idle=IDLE_TIMEOUT))
        answer = {"ok": False, "error": TEXT_BUSY.format(count=self.open_connections)}
        with contextlib.suppress(ConnectionError):  # the client may be gone already
            writer.write(json.dumps(answer).encode() + b"\n")
        writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op, args = request["op"], request.get("args") or {}
            if not isinstance(op, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": TEXT_BAD_REQUEST}
        handler = self.handlers.get(op)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": TEXT_UNKNOWN_OP.format(op=op, known=known)}
        try:
            return {"ok": True, "result": await handler(args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:  # the daemon must outlive a bad request; the log gets the details
            log.exception("control operation %s failed", op)
            return {"ok": False, "error": TEXT_FAILED.format(op=op)}


def request(path: Path, op: str, *, timeout: float = 10.0, **args: Any) -> Any:
    """Ask the daemon for one operation (blocking, for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(TEXT_NOT_RUNNING.format(path=path)) from exc
        try:
            sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
            answer = json.loads(sock.makefile("rb").readline())
        except (OSError, ValueError) as exc:
            raise ControlError(TEXT_NO_ANSWER.format(path=path, error=exc)) from exc
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "?"))
    return answer.get("result")
