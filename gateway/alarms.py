"""The alarm engine: rules evaluated on every sample, before anything is stored.

The engine is synchronous and does no I/O: the poller calls ``evaluate`` with each batch of
samples and hands the resulting events on; nothing here waits on the disk or the network.
Per sample it costs O(rules of that point) and allocates nothing unless an alarm changes.

Each alarm (one rule on one point, id ``point/rule``) goes through the ISA-18.2 states::

    normal --condition--> raised, unacknowledged --ack--> raised, acknowledged
       ^                        | (latching rule: condition     | condition normal
       |                        v  normal, waits for the ack)   v
       +------ cleared <-- latched --ack--> (acknowledged + cleared at once)

A condition is abnormal once a rule's test holds for ``on_delay`` seconds and normal again
once its clearing test (threshold minus deadband) holds for ``off_delay``. Every duration
(delays, rate-of-rise windows, stuck spells, shelves) is measured on the monotonic clock
(``Sample.mono``, the engine's ``monotonic_ms``): a wall clock stepped back or forward neither
stretches nor cuts them. Wall time only stamps events and names a shelf's end.
Threshold and rate rules look at good samples only: a comm loss raises its own alarm and
leaves every other alarm as it was. The power watch (`production_during_shutdown`) is a high
threshold armed only while an ordered shutdown is in force (gateway/shutdown.py): outside an
order its condition is normal, and when the order ends or is cancelled a raised alarm clears
at once, without its off_delay. A shelved alarm emits no raised/cleared events; on
unshelving (by hand or on expiry) it is reconciled with its condition, so that on the stream
the events of every alarm alternate raised, cleared, raised, ...

Exceptions::

    AlarmError            base: an operation on an alarm was refused; no retry helps
    +-- UnknownAlarm      no alarm (or point) with that id
    +-- AlarmStateError   the alarm's state does not allow it (not raised, not shelved, ...)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from gettext import gettext as _
from typing import Any, Literal, Protocol, TypeGuard

from watchpost.alarm_state import STATE_VERSION, AlarmStateFile
from watchpost.log_once import LogOnce
from watchpost.samples import Quality, Sample
from watchpost.settings import (
    CommLossRule,
    DiskFullRule,
    InvalidRule,
    Level,
    OutOfRangeRule,
    OutputFaultRule,
    ProductionRule,
    RateOfRiseRule,
    Rule,
    StateDamagedRule,
    StateUnsavedRule,
    StuckRule,
    ThresholdRule,
)
from watchpost.ticks import sleep_to_tick

log = logging.getLogger(__name__)

TEXT_UNKNOWN_ALARM = _("no alarm {alarm!r} (alarms of point {point!r}: {known})")
TEXT_UNKNOWN_POINT = _("no point {point!r}")
TEXT_NOT_RAISED = _("alarm {alarm!r} is not raised: nothing to acknowledge")
TEXT_ALREADY_ACKED = _("alarm {alarm!r} was already acknowledged by {by!r}")
TEXT_NOT_SHELVABLE = _("alarm {alarm!r} may not be shelved (its rule says shelvable = false)")
TEXT_NOT_SHELVED = _("alarm {alarm!r} is not shelved")
TEXT_SHELVE_EXPIRY = _("shelving needs exactly one of until_ms or duration_s")
TEXT_SHELVE_NOT_A_NUMBER = _("{what} must be a finite number")
TEXT_SHELVE_PAST = _("the shelf of {alarm!r} must expire in the future")
TEXT_SHELVE_TOO_LONG = _(
    "alarm {alarm!r} may be shelved for at most {minutes:g} minutes (its rule's max_shelve "
    "is {max} s)"
)
TEXT_NEEDS_WHO = _("{what} is required (who does it, and why, goes on the record)")
TEXT_EXPIRED = _("shelf expired")
TEXT_STATE_DROPPED = _("alarm state of %s dropped: no such alarm in the config")
TEXT_SAVING_STATE = _("saving the alarm state")
TEXT_UNSAVED_COST = _(
    "retried each second; until then a restart takes the alarms' state from the store's "
    "last events (raised as the fault gateway/state_unsaved)"
)
TEXT_STATE_NOT_SAVED = _(
    "cannot save the alarm state %s at shutdown (%s); the next start takes it from the store"
)

GATEWAY_POINT = "gateway"  # the point of the gateway's own faults

EventName = Literal["raised", "cleared", "acknowledged", "shelved", "unshelved"]
GatewayFault = Literal["disk_full", "state_unsaved"]

_GOOD, _BAD, _COMM, _STALE = Quality.GOOD, Quality.BAD, Quality.COMM, Quality.STALE


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm: the body of a message on the `alarms` stream.

    ``value`` is the quantity the rule compared (the rate for rate_of_rise), ``active``,
    ``acked`` and ``shelved`` the alarm's state after the event.
    """

    event: EventName
    alarm: str
    point: str
    rule: str
    kind: str
    level: str
    value: float | None
    threshold: float | None
    sample_ts: int
    decided_ts: int
    quality: str | None = None
    active: bool = False
    acked: bool = False
    shelved: bool = False
    latch: bool = False
    by: str | None = None
    note: str | None = None
    until: int | None = None
    test: bool = False
    detail: str | None = None
    order: str | None = None  # production_during_shutdown: the shutdown order broken
    reason: str | None = None  # the gateway's own faults: what was wrong
    moved_to: str | None = None  # state_damaged: where the unusable file went

    def body(self) -> dict[str, Any]:
        body = {
            "event": self.event,
            "alarm": self.alarm,
            "point": self.point,
            "rule": self.rule,
            "kind": self.kind,
            "level": self.level,
            "value": self.value,
            "threshold": self.threshold,
            "sample_ts": self.sample_ts,
            "decided_ts": self.decided_ts,
            "quality": self.quality,
            "active": self.active,
            "acked": self.acked,
            "shelved": self.shelved,
            "latch": self.latch,
            "by": self.by,
            "note": self.note,
            "until": self.until,
            "test": self.test,
            "detail": self.detail,
        }
        if self.order is not None:
            body["order"] = self.order
        if self.reason is not None:
            body["reason"] = self.reason
        if self.moved_to is not None:
            body["moved_to"] = self.moved_to
        return body


class AlarmError(Exception):
    """An operation on an alarm was refused. No retry helps."""


class UnknownAlarm(AlarmError):
    """No alarm (or point) with that id."""


class AlarmStateError(AlarmError):
    """The alarm's state does not allow the operation."""


# -- the state of one alarm ---------------------------------------------------------------


class _Alarm:
    """One rule on one point: its condition (after delays) and its lifecycle state."""

    __slots__ = (
        "acked",
        "acked_by",
        "acked_note",
        "acked_ts",
        "cond",
        "id",
        "kind",
        "last_quality",
        "last_ts",
        "latch",
        "level",
        "off_ms",
        "on_ms",
        "pending",
        "point",
        "raised",
        "raised_ts",
        "rule",
        "shelf_deadline",
        "shelved_by",
        "shelved_reason",
        "shelved_until",
        "threshold",
        "value",
    )

    def __init__(self, point: str, rule: Rule) -> None:
        self.point = point
        self.rule = rule
        self.id = f"{point}/{rule.name}"
        self.kind: str = rule.kind  # type: ignore[attr-defined]
        self.level: str = rule.level
        self.latch = rule.latch
        self.on_ms = rule.on_delay * 1000.0
        self.off_ms = rule.off_delay * 1000.0
        self.threshold: float | None = None
        self.value: float | None = None
        self.last_ts: int | None = None
        self.last_quality: Quality | None = None
        self.cond = False  # the condition, confirmed through the delays
        self.pending: int | None = None  # when (monotonic ms) the opposite condition began
        self.raised = False  # what the stream says: raised or cleared
        self.raised_ts: int | None = None
        self.acked = False
        self.acked_by: str | None = None
        self.acked_ts: int | None = None
        self.acked_note: str | None = None
        self.shelved_until: int | None = None  # wall time, for people and the platform
        self.shelf_deadline: int | None = None  # monotonic ms: when the shelf really ends
        self.shelved_by: str | None = None
        self.shelved_reason: str | None = None

    def check(self, sample: Sample) -> bool | None:
        """Is the condition abnormal, given it now is ``self.cond``? None: no information."""
        raise NotImplementedError

    def step(self, sample: Sample) -> bool:
        """Feed one sample; True if the confirmed condition changed."""
        raw = self.check(sample)
        if raw is None:
            return False
        self.last_ts = sample.ts
        self.last_quality = sample.quality
        if raw is self.cond:
            self.pending = None
            return False
        ts = sample.elapsed_ms
        pending = self.pending
        if pending is None or ts < pending:  # samples out of order restart the delay
            self.pending = pending = ts
        if ts - pending < (self.on_ms if raw else self.off_ms):
            return False
        self.pending = None
        self.cond = raw
        return True

    def latched(self) -> bool:
        """Raised on a condition gone normal, waiting for the acknowledgement."""
        return self.raised and not self.cond

    def state(self) -> str:
        if self.shelved_until is not None:
            return "shelved"
        if not self.raised:
            return "normal"
        if not self.cond:
            return "latched"
        return "acknowledged" if self.acked else "unacknowledged"


class _Threshold(_Alarm):
    __slots__ = ("clear_at", "high", "limit")

    def __init__(self, point: str, rule: ThresholdRule) -> None:
        super().__init__(point, rule)
        self.high = rule.kind == "high"
        self.limit = rule.threshold
        self.clear_at = (
            rule.threshold - rule.deadband if self.high else rule.threshold + rule.deadband
        )
        self.threshold = rule.threshold

    def check(self, sample: Sample) -> bool | None:
        value = sample.value
        if sample.quality is not _GOOD or value is None:
            return None
        self.value = value
        if self.high:
            return value >= self.clear_at if self.cond else value >= self.limit
        return value <= self.clear_at if self.cond else value <= self.limit


class _RateOfRise(_Alarm):
    __slots__ = ("clear_rate", "rate", "scale", "times", "values", "window_ms")

    def __init__(self, point: str, rule: RateOfRiseRule) -> None:
        super().__init__(point, rule)
        self.rate = rule.rate
        self.clear_rate = rule.rate - rule.deadband
        self.window_ms = rule.window * 1000.0
        self.scale = 60.0 / rule.window  # rise over the window -> per minute
        self.threshold = rule.rate
        # the window's minimum, kept as a monotonic queue: O(1) amortised per sample
        self.times: deque[int] = deque()
        self.values: deque[float] = deque()

    def check(self, sample: Sample) -> bool | None:
        value = sample.value
        if sample.quality is not _GOOD or value is None:
            return None
        ts = sample.elapsed_ms
        times, values = self.times, self.values
        while values and values[-1] >= value:
            values.pop()
            times.pop()
        times.append(ts)
        values.append(value)
        horizon = ts - self.window_ms
        while times[0] < horizon:
            times.popleft()
            values.popleft()
        rate = (value - values[0]) * self.scale
        self.value = rate
        return rate >= self.clear_rate if self.cond else rate >= self.rate


class _OutOfRange(_Alarm):
    __slots__ = ("high", "low")

    def __init__(self, point: str, rule: OutOfRangeRule) -> None:
        super().__init__(point, rule)
        assert rule.range is not None, "resolve_rules fills the range"
        self.low, self.high = rule.range

    def check(self, sample: Sample) -> bool | None:
        value = sample.value
        if value is None:
            return None
        self.value = value
        if value < self.low:
            self.threshold = self.low
            return True
        if value > self.high:
            self.threshold = self.high
            return True
        return False


class _Stuck(_Alarm):
    __slots__ = ("duration_ms", "hi", "lo", "moved", "since", "tolerance")

    def __init__(self, point: str, rule: StuckRule) -> None:
        super().__init__(point, rule)
        self.duration_ms = rule.duration * 1000.0
        self.tolerance = rule.tolerance
        self.threshold = rule.duration
        self.since: int | None = None
        self.lo = self.hi = 0.0
        self.moved = False  # seen moving at least once: a short still spell is then normal

    def check(self, sample: Sample) -> bool | None:
        value = sample.value
        if sample.quality is not _GOOD or value is None:
            return None
        self.value = value
        ts = sample.elapsed_ms
        if self.since is None or ts < self.since:
            self.since, self.lo, self.hi = ts, value, value
            return None
        lo = value if value < self.lo else self.lo
        hi = value if value > self.hi else self.hi
        if hi - lo > self.tolerance:
            self.since, self.lo, self.hi, self.moved = ts, value, value, True
            return False
        self.lo, self.hi = lo, hi
        if ts - self.since >= self.duration_ms:
            return True
        return False if self.moved else None


class _CommLoss(_Alarm):
    __slots__ = ("stale",)

    def __init__(self, point: str, rule: CommLossRule) -> None:
        super().__init__(point, rule)
        self.stale = rule.stale

    def check(self, sample: Sample) -> bool | None:
        quality = sample.quality
        return quality is _COMM or (self.stale and quality is _STALE)


class _Invalid(_Alarm):
    __slots__ = ("explained",)

    def __init__(
        self, point: str, rule: InvalidRule, explained: tuple[float, float] | None
    ) -> None:
        super().__init__(point, rule)
        self.explained = explained  # an out_of_range rule of the point reports these values

    def check(self, sample: Sample) -> bool | None:
        quality = sample.quality
        if quality is _GOOD:
            return False
        if quality is not _BAD:
            return None
        value = sample.value
        self.value = value
        explained = self.explained
        return not (
            value is not None
            and explained is not None
            and not explained[0] <= value <= explained[1]
        )


class OrderBook(Protocol):
    """What the power watch asks of the shutdown orders (gateway/shutdown.py)."""

    def in_force(self, ts: int) -> Order | None:
        """The order in force at ``ts`` (UTC epoch ms), if any."""


class Order(Protocol):
    @property
    def id(self) -> str: ...


class _Production(_Alarm):
    """A high threshold armed only while a shutdown order is in force."""

    __slots__ = ("clear_at", "limit", "order", "orders")

    def __init__(self, point: str, rule: ProductionRule, orders: OrderBook | None) -> None:
        super().__init__(point, rule)
        self.limit = rule.threshold
        self.clear_at = rule.threshold - rule.deadband
        self.threshold = rule.threshold
        self.orders = orders
        self.order: str | None = None  # the order in force when the condition last rose

    def armed_by(self, ts: int) -> Order | None:
        return None if self.orders is None else self.orders.in_force(ts)

    def check(self, sample: Sample) -> bool | None:
        value = sample.value
        if sample.quality is not _GOOD or value is None:
            return None
        self.value = value
        return value >= self.clear_at if self.cond else value >= self.limit

    def step(self, sample: Sample) -> bool:
        order = self.armed_by(sample.ts)
        if order is None:  # no order in force: normal at once, whatever the power
            if sample.quality is _GOOD and sample.value is not None:
                self.value = sample.value
            return self.disarm(sample.ts, sample.quality)
        if not self.cond:
            self.order = order.id
        return super().step(sample)

    def disarm(self, ts: int, quality: Quality | None = None) -> bool:
        """Condition normal because no order is in force; True if it changed."""
        self.pending = None
        if quality is not None:
            self.last_ts, self.last_quality = ts, quality
        if not self.cond:
            return False
        self.cond = False
        return True


class _OutputFault(_Alarm):
    __slots__ = ()

    def check(self, sample: Sample) -> bool | None:  # pragma: no cover - fed by report_output
        return None


_SIMPLE_ALARMS: dict[type[Rule], Callable[[str, Any], _Alarm]] = {
    ThresholdRule: _Threshold,
    RateOfRiseRule: _RateOfRise,
    OutOfRangeRule: _OutOfRange,
    StuckRule: _Stuck,
    CommLossRule: _CommLoss,
}


def _make_alarm(
    point: str, rule: Rule, rules: Sequence[Rule], orders: OrderBook | None = None
) -> _Alarm:
    for kind in type(rule).__mro__:  # a config model extends its plain rule class
        make = _SIMPLE_ALARMS.get(kind)
        if make is not None:
            return make(point, rule)
    if isinstance(rule, ProductionRule):
        return _Production(point, rule, orders)
    if isinstance(rule, InvalidRule):
        ranges = [r.range for r in rules if isinstance(r, OutOfRangeRule)]
        return _Invalid(point, rule, ranges[0] if ranges else None)
    raise TypeError(f"no alarm for rule kind {type(rule).__name__}")


# -- the engine ---------------------------------------------------------------------------

Listener = Callable[[AlarmEvent], None]


class AlarmEngine:
    """Holds the state of every alarm and turns samples and crew actions into events.

    ``rules`` maps every point name (also those without rules: test alarms need them) to its
    resolved rules; ``outputs`` maps local output names to the level of their output_fault
    alarm. Listeners (the output driver) get every event synchronously; they must not block.
    ``now_ms`` stamps events; ``monotonic_ms`` measures shelves (default: ``now_ms``, for
    tests that drive one fake clock).
    """

    def __init__(
        self,
        rules: Mapping[str, Sequence[Rule]],
        now_ms: Callable[[], int],
        *,
        outputs: Mapping[str, Level] | None = None,
        orders: OrderBook | None = None,
        monotonic_ms: Callable[[], int] | None = None,
    ) -> None:
        self._now_ms = now_ms
        self._mono_ms = monotonic_ms or now_ms
        self._points = frozenset(rules)
        self._by_point: dict[str, tuple[_Alarm, ...]] = {}
        self._alarms: dict[str, _Alarm] = {}
        for point, point_rules in rules.items():
            alarms = tuple(_make_alarm(point, rule, point_rules, orders) for rule in point_rules)
            if alarms:
                self._by_point[point] = alarms
            for alarm in alarms:
                self._alarms[alarm.id] = alarm
        for name, level in (outputs or {}).items():
            alarm = _OutputFault(name, OutputFaultRule(level=level))
            self._alarms[alarm.id] = alarm
        for rule in (StateDamagedRule(), DiskFullRule(), StateUnsavedRule()):
            fault = _OutputFault(GATEWAY_POINT, rule)  # the gateway's own faults
            self._alarms[fault.id] = fault
        self._watches = [a for a in self._alarms.values() if isinstance(a, _Production)]
        self._shelved: set[_Alarm] = set()
        self._next_expiry: int | None = None
        self._listeners: list[Listener] = []
        self.revision = 0  # counts changes of what snapshot() returns

    # -- the poll path ----------------------------------------------------------------------

    def evaluate(self, samples: Iterable[Sample]) -> list[AlarmEvent]:
        """Events caused by ``samples`` (and by shelves that expired meanwhile)."""
        events: list[AlarmEvent] = []
        if self._next_expiry is not None and self._mono_ms() >= self._next_expiry:
            events.extend(self.tick())
        by_point = self._by_point
        for sample in samples:
            alarms = by_point.get(sample.point)
            if alarms is None:
                continue
            for alarm in alarms:
                if alarm.step(sample):
                    self.revision += 1
                    event = self._settle(alarm, sample.ts)
                    if event is not None:
                        events.append(self._publish(event))
        return events

    def tick(self, monotonic_ms: int | None = None) -> list[AlarmEvent]:
        """Expire shelves whose time (monotonic ms) has come, clear power watches whose order
        is over (orders are calendar time: wall clock); the app calls it every second."""
        events = self.check_orders()
        if self._next_expiry is None:
            return events
        mono = self._mono_ms() if monotonic_ms is None else monotonic_ms
        if mono < self._next_expiry:
            return events
        now = self._now_ms()
        for alarm in sorted(self._shelved, key=lambda a: (a.shelf_deadline, a.id)):
            if alarm.shelf_deadline is not None and alarm.shelf_deadline <= mono:
                events.extend(self._unshelve(alarm, by=None, note=TEXT_EXPIRED, now=now))
        return events

    def check_orders(self, now_ms: int | None = None) -> list[AlarmEvent]:
        """Clear every raised power watch whose order has ended or was cancelled (also
        when its meter has gone quiet); call it after a cancellation."""
        events: list[AlarmEvent] = []
        if not self._watches:
            return events
        now = self._now_ms() if now_ms is None else now_ms
        for alarm in self._watches:
            if alarm.cond and alarm.armed_by(now) is None and alarm.disarm(now):
                self.revision += 1
                event = self._settle(alarm, now)
                if event is not None:
                    events.append(self._publish(event))
        return events

    # -- crew and platform actions ---------------------------------------------------------

    def acknowledge(self, alarm: str, *, by: str, note: str = "") -> list[AlarmEvent]:
        """Acknowledge a raised alarm: [acknowledged], or [acknowledged, cleared] if latched."""
        state = self._get(alarm)
        _require(by, "by")
        if not state.raised:
            raise AlarmStateError(TEXT_NOT_RAISED.format(alarm=alarm))
        if state.acked:
            raise AlarmStateError(TEXT_ALREADY_ACKED.format(alarm=alarm, by=state.acked_by))
        now = self._now_ms()
        state.acked, state.acked_by, state.acked_ts, state.acked_note = True, by, now, note
        self.revision += 1
        events = [self._publish(self._event(state, "acknowledged", now, by=by, note=note))]
        if not state.cond and state.shelved_until is None:
            state.raised = False  # latched on a normal condition: the ack releases it
            events.append(self._publish(self._event(state, "cleared", now)))
        return events

    def shelve(
        self,
        alarm: str,
        *,
        by: str,
        reason: str,
        duration_s: float | None = None,
        until_ms: int | None = None,
    ) -> list[AlarmEvent]:
        """Shelve an alarm until a mandatory expiry; shelving again moves the expiry."""
        state = self._get(alarm)
        _require(by, "by")
        _require(reason, "reason")
        if not state.rule.shelvable:
            raise AlarmStateError(TEXT_NOT_SHELVABLE.format(alarm=alarm))
        if (duration_s is None) == (until_ms is None):
            raise AlarmStateError(TEXT_SHELVE_EXPIRY)
        now = self._now_ms()
        if duration_s is not None:
            if not _finite_number(duration_s):
                raise AlarmStateError(TEXT_SHELVE_NOT_A_NUMBER.format(what="duration_s"))
            if duration_s > state.rule.max_shelve:
                raise _shelf_too_long(alarm, state.rule.max_shelve)
            until_ms = now + round(duration_s * 1000)
        if not _finite_number(until_ms) or until_ms != int(until_ms):
            raise AlarmStateError(TEXT_SHELVE_NOT_A_NUMBER.format(what="until_ms"))
        until_ms = int(until_ms)
        if until_ms <= now:
            raise AlarmStateError(TEXT_SHELVE_PAST.format(alarm=alarm))
        if until_ms - now > state.rule.max_shelve * 1000:
            raise _shelf_too_long(alarm, state.rule.max_shelve)
        # every check is done: only now does the shelf touch the alarm's state
        state.shelf_deadline = self._mono_ms() + (until_ms - now)
        state.shelved_until, state.shelved_by, state.shelved_reason = until_ms, by, reason
        self._shelved.add(state)
        self._reschedule()
        self.revision += 1
        return [
            self._publish(self._event(state, "shelved", now, by=by, note=reason, until=until_ms))
        ]

    def unshelve(self, alarm: str, *, by: str, note: str = "") -> list[AlarmEvent]:
        """End a shelf now: [unshelved], then raised or cleared if the condition moved."""
        state = self._get(alarm)
        _require(by, "by")
        if state.shelved_until is None:
            raise AlarmStateError(TEXT_NOT_SHELVED.format(alarm=alarm))
        return self._unshelve(state, by=by, note=note, now=self._now_ms())

    def test_alarm(self, point: str, *, by: str = "", level: Level = "alarm") -> list[AlarmEvent]:
        """A test alarm on ``point``: raised then cleared at once, both marked test."""
        if point not in self._points:
            raise UnknownAlarm(TEXT_UNKNOWN_POINT.format(point=point))
        now = self._now_ms()
        events = []
        steps: tuple[tuple[EventName, bool], ...] = (("raised", True), ("cleared", False))
        for name, active in steps:
            event = AlarmEvent(
                event=name,
                alarm=f"{point}/test",
                point=point,
                rule="test",
                kind="test",
                level=level,
                value=None,
                threshold=None,
                sample_ts=now,
                decided_ts=now,
                active=active,
                by=by or None,
                test=True,
            )
            events.append(self._publish(event))
        return events

    def report_output(
        self, output: str, *, ok: bool, detail: str = "", value: float | None = None
    ) -> list[AlarmEvent]:
        """The output driver's verdict on a write to ``output``: raises or clears its fault."""
        state = self._get(f"{output}/output_fault")
        state.value = value
        now = self._now_ms()
        state.last_ts = now
        if state.cond == (not ok):
            return []
        state.cond = not ok
        self.revision += 1
        event = self._settle(state, now, detail=detail or None)
        return [] if event is None else [self._publish(event)]

    def report_state_damaged(self, *, reason: str, moved_to: str | None) -> list[AlarmEvent]:
        """The alarm state file could not be used: raise the latched `state_damaged` fault
        (point ``gateway``); it stays raised until acknowledged."""
        state = self._get(f"{GATEWAY_POINT}/state_damaged")
        now = self._now_ms()
        state.last_ts = now
        state.cond = True
        state.raised = False  # raised anew even if a saved state said it was
        self.revision += 1
        event = self._settle(state, now, detail=None)
        state.cond = False  # nothing to come back from: the acknowledgement clears it
        if event is None:
            return []
        return [self._publish(replace(event, reason=reason, moved_to=moved_to))]

    def report_gateway_fault(
        self, kind: GatewayFault, *, active: bool, reason: str | None = None
    ) -> list[AlarmEvent]:
        """One of the gateway's own faults that comes and goes (``disk_full``,
        ``state_unsaved``, point ``gateway``): raised while ``active``, cleared after."""
        state = self._get(f"{GATEWAY_POINT}/{kind}")
        if state.cond == active:
            return []
        now = self._now_ms()
        state.last_ts = now
        state.cond = active
        self.revision += 1
        event = self._settle(state, now)
        return [] if event is None else [self._publish(replace(event, reason=reason))]

    # -- state for status, the CLI, the platform and restarts --------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every event, as it is decided."""
        self._listeners.append(listener)

    def active(self) -> list[dict[str, Any]]:
        """Every raised or shelved alarm, for `status`, the CLI and the reconnect snapshot."""
        return [
            self._describe(a)
            for a in self._alarms.values()
            if a.raised or a.shelved_until is not None
        ]

    def active_count(self) -> int:
        """How many alarms are raised (shelved ones included)."""
        return sum(1 for a in self._alarms.values() if a.raised)

    def describe(self, alarm: str) -> dict[str, Any]:
        """The state of one alarm, in the form of active()."""
        return self._describe(self._get(alarm))

    def alarm_ids(self) -> list[str]:
        """Every alarm the config defines."""
        return list(self._alarms)

    def snapshot(self) -> dict[str, Any]:
        """What must survive a restart (JSON-serialisable): latches, acks, shelves."""
        alarms = {}
        for a in self._alarms.values():
            if a.raised or a.cond or a.shelved_until is not None:
                alarms[a.id] = {
                    "raised": a.raised,
                    "cond": a.cond,
                    "raised_ts": a.raised_ts,
                    "acked": a.acked,
                    "acked_by": a.acked_by,
                    "acked_ts": a.acked_ts,
                    "acked_note": a.acked_note,
                    "value": a.value,
                    "last_ts": a.last_ts,
                    "shelved_until": a.shelved_until,
                    "shelved_by": a.shelved_by,
                    "shelved_reason": a.shelved_reason,
                }
                if isinstance(a, _Production) and a.order is not None:
                    alarms[a.id]["order"] = a.order
        return {"version": STATE_VERSION, "alarms": alarms}

    def restore(self, snapshot: Mapping[str, Any] | None) -> list[str]:
        """Take back a snapshot() (at start, before the first sample); returns dropped ids."""
        if not snapshot:
            return []
        dropped = []
        for alarm_id, saved in dict(snapshot.get("alarms", {})).items():
            state = self._alarms.get(alarm_id)
            if state is None:
                log.warning(TEXT_STATE_DROPPED, alarm_id)
                dropped.append(alarm_id)
                continue
            state.raised = bool(saved.get("raised"))
            state.cond = bool(saved.get("cond"))
            state.raised_ts = saved.get("raised_ts")
            state.acked = bool(saved.get("acked")) and state.raised
            state.acked_by = saved.get("acked_by")
            state.acked_ts = saved.get("acked_ts")
            state.acked_note = saved.get("acked_note")
            state.value = saved.get("value")
            state.last_ts = saved.get("last_ts")
            if isinstance(state, _Production):
                state.order = saved.get("order")
            until = saved.get("shelved_until")
            if until is not None and state.rule.shelvable:
                self._restore_shelf(
                    state, int(until), saved.get("shelved_by"), saved.get("shelved_reason")
                )
        self._reschedule()
        self.revision += 1
        return dropped

    def reconcile(
        self, last_events: Mapping[str, Mapping[str, Any]], *, complete: bool = False
    ) -> list[str]:
        """Align each alarm's lifecycle with its last event the store committed (``alarm id
        -> event body``), after ``restore``: what the platform has been told wins over a
        state file saved a moment earlier or later, so that a kill between the two neither
        repeats an event nor loses one. ``complete``: the store has the last event of every
        alarm it ever stored, so an alarm without one was never raised as far as the platform
        knows. Returns the ids that were changed."""
        changed = []
        never: Mapping[str, Any] = {"active": False, "acked": False, "shelved": False}
        ids = self._alarms if complete else last_events
        for alarm_id in ids:
            state = self._alarms.get(alarm_id)
            body = last_events.get(alarm_id, never)
            if state is None or body.get("test"):
                continue
            raised, acked = bool(body.get("active")), bool(body.get("acked"))
            shelved = bool(body.get("shelved"))
            if (raised, acked and raised, shelved) == (
                state.raised,
                state.acked,
                state.shelved_until is not None,
            ):
                continue
            changed.append(alarm_id)
            if raised != state.raised:
                state.cond = raised  # the fresh samples decide again, through the delays
                state.pending = None
            state.raised, state.acked = raised, acked and raised
            if not shelved:
                state.shelved_until = state.shelf_deadline = None
                state.shelved_by = state.shelved_reason = None
                self._shelved.discard(state)
            elif state.shelved_until is None and isinstance(body.get("until"), int):
                self._restore_shelf(state, body["until"], body.get("by"), body.get("note"))
        if changed:
            self._reschedule()
            self.revision += 1
        return changed

    def _restore_shelf(self, state: _Alarm, until: int, by: str | None, reason: str | None) -> None:
        """A shelf carried over a restart: only the wall clock links the two runs, and the
        shelf can still not outlast its rule's max_shelve from now."""
        left = min(max(until - self._now_ms(), 0), int(state.rule.max_shelve * 1000))
        state.shelf_deadline = self._mono_ms() + left
        state.shelved_until = until
        state.shelved_by, state.shelved_reason = by, reason
        self._shelved.add(state)

    # -- internals ---------------------------------------------------------------------------

    def _get(self, alarm: str) -> _Alarm:
        state = self._alarms.get(alarm)
        if state is None:
            point = alarm.partition("/")[0]
            known = ", ".join(a.id for a in self._by_point.get(point, ())) or "none"
            raise UnknownAlarm(TEXT_UNKNOWN_ALARM.format(alarm=alarm, point=point, known=known))
        return state

    def _settle(
        self, alarm: _Alarm, sample_ts: int, *, detail: str | None = None
    ) -> AlarmEvent | None:
        """The event, if any, after the confirmed condition of ``alarm`` changed."""
        if alarm.shelved_until is not None:
            return None  # reconciled when the shelf ends
        if alarm.cond:
            if alarm.raised:
                return None  # latched and abnormal again: still raised, still unacknowledged
            now = self._now_ms()
            alarm.raised, alarm.raised_ts, alarm.acked = True, now, False
            alarm.acked_by = alarm.acked_ts = alarm.acked_note = None
            return self._event(alarm, "raised", now, sample_ts=sample_ts, detail=detail)
        if not alarm.raised or (alarm.latch and not alarm.acked):
            return None
        alarm.raised = False
        return self._event(alarm, "cleared", self._now_ms(), sample_ts=sample_ts, detail=detail)

    def _unshelve(self, alarm: _Alarm, *, by: str | None, note: str, now: int) -> list[AlarmEvent]:
        alarm.shelved_until = alarm.shelf_deadline = None
        alarm.shelved_by = alarm.shelved_reason = None
        self._shelved.discard(alarm)
        self._reschedule()
        self.revision += 1
        events = [self._publish(self._event(alarm, "unshelved", now, by=by, note=note or None))]
        sample_ts = alarm.last_ts if alarm.last_ts is not None else now
        if alarm.cond != alarm.raised:
            event = self._settle(alarm, sample_ts)
            if event is not None:
                events.append(self._publish(event))
        return events

    def _reschedule(self) -> None:
        self._next_expiry = min(
            (a.shelf_deadline for a in self._shelved if a.shelf_deadline is not None), default=None
        )

    def _event(
        self,
        alarm: _Alarm,
        event: EventName,
        now: int,
        *,
        sample_ts: int | None = None,
        by: str | None = None,
        note: str | None = None,
        until: int | None = None,
        detail: str | None = None,
    ) -> AlarmEvent:
        if sample_ts is None:
            sample_ts = alarm.last_ts if alarm.last_ts is not None else now
        quality = alarm.last_quality
        return AlarmEvent(
            event=event,
            alarm=alarm.id,
            point=alarm.point,
            rule=alarm.rule.name,
            kind=alarm.kind,
            level=alarm.level,
            value=alarm.value,
            threshold=alarm.threshold,
            sample_ts=sample_ts,
            decided_ts=now,
            quality=None if quality is None else quality.value,
            active=alarm.raised,
            acked=alarm.acked,
            shelved=alarm.shelved_until is not None,
            latch=alarm.latch,
            by=by,
            note=note,
            until=until,
            detail=detail,
            order=alarm.order if isinstance(alarm, _Production) else None,
        )

    def _publish(self, event: AlarmEvent) -> AlarmEvent:
        for listener in self._listeners:
            listener(event)
        return event

    def _describe(self, a: _Alarm) -> dict[str, Any]:
        described = {
            "alarm": a.id,
            "point": a.point,
            "rule": a.rule.name,
            "kind": a.kind,
            "level": a.level,
            "state": a.state(),
            "raised": a.raised,
            "condition": "abnormal" if a.cond else "normal",
            "acked": a.acked,
            "latch": a.latch,
            "value": a.value,
            "threshold": a.threshold,
            "sample_ts": a.last_ts,
            "raised_ts": a.raised_ts,
            "acked_by": a.acked_by,
            "acked_ts": a.acked_ts,
            "ack_note": a.acked_note,
            "shelved": a.shelved_until is not None,
            "shelved_by": a.shelved_by,
            "shelved_until": a.shelved_until,
            "shelve_reason": a.shelved_reason,
        }
        if isinstance(a, _Production):
            described["order"] = a.order
        return described


def _finite_number(value: object) -> TypeGuard[int | float]:
    """A real, finite number (not a bool, not NaN, not an infinity)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _require(text: str, what: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise AlarmStateError(TEXT_NEEDS_WHO.format(what=what))


# -- restart safety -------------------------------------------------------------------------


class AlarmHousekeeper:
    """The engine's clockwork, run as a task: shelf expiry each second, state saved on change.

    The events of expired shelves reach the engine's listeners; give ``emit`` only if no
    listener stores them.
    """

    def __init__(
        self,
        engine: AlarmEngine,
        state: AlarmStateFile,
        emit: Listener | None = None,
        *,
        interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.state = state
        self._emit = emit
        self.interval = interval
        self._saved = -1
        self._save_failures = LogOnce(log, TEXT_SAVING_STATE, TEXT_UNSAVED_COST)

    def restore(self) -> list[str]:
        """Load the saved state into the engine (before polling starts). A file that could
        not be used was moved aside: ``report_damage`` raises its fault once the engine's
        listeners are there to store it."""
        dropped = self.engine.restore(self.state.load())
        self._saved = self.engine.revision
        return dropped

    def report_damage(self) -> list[AlarmEvent]:
        """The `state_damaged` fault if ``restore`` found the file unusable (once)."""
        damage, self.state.damage = self.state.damage, None
        if damage is None:
            return []
        moved_to = None if damage.moved_to is None else str(damage.moved_to)
        return self.engine.report_state_damaged(reason=damage.reason, moved_to=moved_to)

    async def run(self) -> None:
        try:
            while True:
                await sleep_to_tick(self.interval)  # with the other periodic loops
                for event in self.engine.tick():
                    if self._emit is not None:
                        self._emit(event)
                await self.save_if_changed()
        finally:
            if self.engine.revision != self._saved:
                try:
                    self.state.save(self.engine.snapshot())  # at shutdown: blocking is fine
                except OSError as exc:
                    log.error(TEXT_STATE_NOT_SAVED, self.state.path, exc)

    async def save_if_changed(self) -> None:
        """Save the state if it changed; a failure (a full disk) is logged once, raises the
        `state_unsaved` fault and is retried at the next turn; never lost in silence."""
        revision = self.engine.revision
        if revision == self._saved:
            return
        try:
            await asyncio.to_thread(self.state.save, self.engine.snapshot())
        except OSError as exc:
            self._save_failures.failed(exc)
            self._fault(active=True, reason=str(exc))
            return
        self._saved = revision
        self._save_failures.succeeded()
        self._fault(active=False)  # a change again: saved at the next turn

    def _fault(self, *, active: bool, reason: str | None = None) -> None:
        for event in self.engine.report_gateway_fault(
            "state_unsaved", active=active, reason=reason
        ):
            if self._emit is not None:
                self._emit(event)


def _shelf_too_long(alarm: str, max_shelve: float) -> AlarmStateError:
    """The refusal of a shelf past the rule's limit, in minutes (what crews and the platform
    give), with the rule's own figure in seconds."""
    return AlarmStateError(
        TEXT_SHELVE_TOO_LONG.format(alarm=alarm, minutes=max_shelve / 60, max=max_shelve)
    )
