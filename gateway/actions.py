"""Alarm actions (ack, shelve, unshelve, test alarm): one service for crews and platforms.

The control socket (the crews' CLI) and the platform's commands (`cmd/ack`, ...) both call
``AlarmActions.perform``, the single entry point: the same validation, the same errors, the
same answer. An action is checked in full before it touches any state: its arguments by
their model (a shelf's length finite, above 0, at most 7 days; unknown keys refused), then
against the alarm (it exists, its state allows the action, a shelf within the rule's
``max_shelve``); only then does the engine change. The answer is the list of alarm events
the action caused, each with the ``seq`` it got once durable on the `alarms` stream.

Exceptions::

    ActionError     the action was refused and nothing changed; no retry helps as it is
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from gettext import gettext as _
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from watchpost.alarms import AlarmError
from watchpost.checks import Invalid, parse
from watchpost.error_text import describe_error

if TYPE_CHECKING:
    from pydantic import Field  # the rules' declaration; read by checks, and by pydantic

    from watchpost.alarms import AlarmEngine, AlarmEvent
    from watchpost.recorder import AlarmRecorder

TEXT_UNKNOWN_ACTION = _("unknown alarm action {name!r} (known: {known})")
TEXT_INVALID = _("invalid {action}: {errors}")
TEXT_NOT_STORED = _("the action was done but its events could not be stored: {error}")

MAX_SHELVE_MINUTES = 7 * 24 * 60


class ActionError(Exception):
    """The action was refused and nothing changed. No retry helps without a change."""


@dataclass(frozen=True, kw_only=True)
class Action:
    """What every alarm action carries (checked by ``watchpost.checks``: unknown keys are
    refused)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}


@dataclass(frozen=True, kw_only=True)
class Acknowledge(Action):
    """Acknowledge a raised alarm."""

    alarm: Annotated[
        str, Field(min_length=1, max_length=200, description="Alarm id, e.g. ch4/high_alarm.")
    ]
    by: Annotated[str, Field(min_length=1, max_length=100, description="Who acknowledges.")]
    note: Annotated[str, Field(max_length=1000, description="A note for the record.")] = ""


@dataclass(frozen=True, kw_only=True)
class Shelve(Action):
    """Shelve an alarm for maintenance, with a mandatory expiry."""

    alarm: Annotated[str, Field(min_length=1, max_length=200, description="Alarm id.")]
    by: Annotated[str, Field(min_length=1, max_length=100, description="Who shelves.")]
    reason: Annotated[str, Field(min_length=1, max_length=1000, description="Why, for the record.")]
    minutes: Annotated[
        float,
        Field(
            gt=0,
            le=MAX_SHELVE_MINUTES,
            allow_inf_nan=False,
            description="The shelf expires after this many minutes.",
        ),
    ]


@dataclass(frozen=True, kw_only=True)
class Unshelve(Action):
    """End a shelf now."""

    alarm: Annotated[str, Field(min_length=1, max_length=200, description="Alarm id.")]
    by: Annotated[str, Field(min_length=1, max_length=100, description="Who unshelves.")]


@dataclass(frozen=True, kw_only=True)
class TestAlarm(Action):
    """Raise and clear a test alarm on a point (`watchpost test-alarm`)."""

    point: Annotated[str, Field(min_length=1, max_length=200, description="The point's name.")]
    by: Annotated[str, Field(min_length=1, max_length=100, description="Who tests.")] = "crew"


ACTIONS: dict[str, type[Action]] = {
    "ack": Acknowledge,
    "shelve": Shelve,
    "unshelve": Unshelve,
    "test_alarm": TestAlarm,
}


def parse_action(name: str, request: Mapping[str, Any] | Action) -> Action:
    """The action ``name`` with its arguments checked; ActionError naming each wrong key."""
    model = ACTIONS.get(name)
    if model is None:
        raise ActionError(TEXT_UNKNOWN_ACTION.format(name=name, known=", ".join(ACTIONS)))
    if isinstance(request, model):
        return request
    values = dataclasses.asdict(request) if isinstance(request, Action) else request
    try:
        return parse(model, values)
    except Invalid as exc:
        errors = "; ".join(describe_error(e) for e in exc.errors)
        raise ActionError(TEXT_INVALID.format(action=name, errors=errors)) from exc


class AlarmActions:
    """The alarm actions over the engine; answers once their events are durable."""

    def __init__(self, engine: AlarmEngine, recorder: AlarmRecorder) -> None:
        self._engine = engine
        self._recorder = recorder

    async def perform(self, name: str, request: Mapping[str, Any] | Action) -> list[dict[str, Any]]:
        """Check, then do action ``name``; return its events, each with its ``seq``.

        The single entry point for the control socket and the platform's commands.
        """
        action = parse_action(name, request)
        try:
            events = self._apply(action)
        except AlarmError as exc:
            raise ActionError(str(exc)) from exc
        # the recorder holds them now; take their futures before anything can await
        pending = self._recorder.stored(events)
        try:
            seqs = await asyncio.gather(*pending)
        except Exception as exc:  # the store failed: say so, the state has changed
            raise ActionError(TEXT_NOT_STORED.format(error=exc)) from exc
        return [{**event.body(), "seq": seq} for event, seq in zip(events, seqs, strict=True)]

    def _apply(self, action: Action) -> list[AlarmEvent]:
        """Change the engine; every check that can refuse is made before the change."""
        engine = self._engine
        match action:
            case Acknowledge(alarm=alarm, by=by, note=note):
                return engine.acknowledge(alarm, by=by, note=note)
            case Shelve(alarm=alarm, by=by, reason=reason, minutes=minutes):
                assert math.isfinite(minutes)  # the model refuses NaN and infinities
                return engine.shelve(alarm, by=by, reason=reason, duration_s=minutes * 60)
            case Unshelve(alarm=alarm, by=by):
                return engine.unshelve(alarm, by=by)
            case TestAlarm(point=point, by=by):
                return engine.test_alarm(point, by=by)
        raise ActionError(TEXT_UNKNOWN_ACTION.format(name=type(action).__name__, known=""))
