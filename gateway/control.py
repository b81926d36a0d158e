"""The local control socket: the crews' CLI talks to the running daemon through it.

Newline-delimited JSON over a Unix stream socket, one request and one answer per line::

    -> {"op": "status", "args": {}}
    <- {"ok": true, "result": {...}}   or   {"ok": false, "error": "what went wrong"}

The socket is made group-accessible only (mode 0660): the crew's accounts join the
gateway's group. Exceptions::

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
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[Any]]

TEXT_UNKNOWN_OP = "unknown operation {op!r} (known: {known})"
TEXT_BAD_REQUEST = "a request is one JSON object per line with an 'op'"
TEXT_NOT_RUNNING = "the daemon is not running (no answer on {path})"
TEXT_NO_ANSWER = "the daemon did not answer on {path}: {error}"


class ControlError(Exception):
    """The daemon refused or failed an operation. No retry helps."""


class DaemonNotRunning(ControlError):
    """Nothing answers on the control socket."""


class ControlServer:
    """Serves ``handlers`` by name on a Unix socket until cancelled."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = dict(handlers)

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a daemon that was killed
        server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST
        )
        self.path.chmod(0o660)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
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
        except Exception as exc:  # the daemon must outlive a bad request
            log.exception("control operation %s failed", op)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


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
