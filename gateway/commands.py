"""Commands from the platform (`cmd/{name}` on MQTT): validated, then carried out.

Every request is a JSON object checked against its pydantic model (the JSON Schemas in
`schemas/cmd-*.json` are generated from the same models); anything malformed, unknown or
too large is answered with an error and changes nothing. The uplink publishes each
handler's result, or the text of its ``CommandError``, on `cmd/{name}/reply`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from gettext import gettext as _
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from watchpost.alarms import AlarmEngine, AlarmError, AlarmEvent
from watchpost.config import describe_error

MAX_COMMAND_BYTES = 16 * 1024

TEXT_TOO_LARGE = _("the command is {size} bytes; at most {limit} are accepted")
TEXT_INVALID = _("invalid command: {errors}")
TEXT_RELOADING = _("the config file is valid; the gateway restarts with it now")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """The command was refused; nothing was changed. No retry helps without a change."""


class Request(BaseModel):
    """What every command may carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | int | None = Field(default=None, description="Echoed in the reply.")


class Ping(Request):
    """`cmd/ping`: is the gateway there? Answers with its clock and uptime."""


class Acknowledge(Request):
    """`cmd/ack`: acknowledge a raised alarm."""

    alarm: str = Field(min_length=1, max_length=200, description="Alarm id, e.g. ch4/high_alarm.")
    by: str = Field(min_length=1, max_length=100, description="Who acknowledges.")
    note: str = Field(default="", max_length=1000, description="A note for the record.")


class Shelve(Request):
    """`cmd/shelve`: shelve an alarm for maintenance, with a mandatory expiry."""

    alarm: str = Field(min_length=1, max_length=200, description="Alarm id.")
    by: str = Field(min_length=1, max_length=100, description="Who shelves.")
    reason: str = Field(min_length=1, max_length=1000, description="Why, for the record.")
    minutes: float = Field(
        gt=0,
        le=7 * 24 * 60,
        allow_inf_nan=False,
        description="The shelf expires after this many minutes.",
    )


class Unshelve(Request):
    """`cmd/unshelve`: end a shelf now."""

    alarm: str = Field(min_length=1, max_length=200, description="Alarm id.")
    by: str = Field(min_length=1, max_length=100, description="Who unshelves.")


class Reload(Request):
    """`cmd/reload`: re-read the config file; refused, and nothing changes, if it is bad."""


COMMANDS: dict[str, type[Request]] = {
    "ping": Ping,
    "ack": Acknowledge,
    "shelve": Shelve,
    "unshelve": Unshelve,
    "reload": Reload,
}


def parse(name: str, request: dict[str, Any]) -> Request:
    """Check a request against its model; raise CommandError naming each wrong key."""
    size = len(json.dumps(request, default=str))
    if size > MAX_COMMAND_BYTES:
        raise CommandError(TEXT_TOO_LARGE.format(size=size, limit=MAX_COMMAND_BYTES))
    try:
        return COMMANDS[name].model_validate(request)
    except ValidationError as exc:
        errors = "; ".join(describe_error(e) for e in exc.errors())
        raise CommandError(TEXT_INVALID.format(errors=errors)) from exc


class PlatformCommands:
    """The handlers the uplink serves, over the alarm engine and the daemon's controls."""

    def __init__(
        self,
        alarms: AlarmEngine,
        *,
        ping: Callable[[], dict[str, Any]],
        reload: Callable[[], Awaitable[list[str]]],
        durable: Callable[[list[AlarmEvent]], Awaitable[list[dict[str, Any]]]],
    ) -> None:
        self._alarms = alarms
        self._ping = ping
        self._reload = reload
        self._durable = durable  # answers once the events are stored, with their seq

    def handlers(self) -> dict[str, Handler]:
        return {name: self._handler(name) for name in COMMANDS}

    def _handler(self, name: str) -> Handler:
        async def handle(request: dict[str, Any]) -> Any:
            command = parse(name, request)
            try:
                return await self._run(command)
            except AlarmError as exc:
                raise CommandError(str(exc)) from exc

        return handle

    async def _run(self, command: Request) -> Any:
        match command:
            case Ping():
                return self._ping()
            case Acknowledge(alarm=alarm, by=by, note=note):
                return await self._durable(self._alarms.acknowledge(alarm, by=by, note=note))
            case Shelve(alarm=alarm, by=by, reason=reason, minutes=minutes):
                return await self._durable(
                    self._alarms.shelve(alarm, by=by, reason=reason, duration_s=minutes * 60)
                )
            case Unshelve(alarm=alarm, by=by):
                return await self._durable(self._alarms.unshelve(alarm, by=by))
            case Reload():
                errors = await self._reload()
                if errors:
                    raise CommandError("; ".join(errors))
                return {"reloading": True, "message": TEXT_RELOADING}
        raise CommandError(type(command).__name__)
