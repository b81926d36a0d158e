"""The alarm engine: rules evaluated on every sample, before anything is stored.

The engine is synchronous and does no I/O: the poller calls ``evaluate`` with each batch of
samples and hands the resulting events on; nothing here waits on the disk or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from watchpost.samples import Sample


class AlarmRule(BaseModel):
    """A threshold rule on one point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["high", "low"] = Field(description="high: raise above; low: raise below.")
    level: Literal["prealarm", "alarm", "critical"] = Field(
        default="alarm", description="Severity of the alarm.")
    threshold: float = Field(allow_inf_nan=False, description="Value at which the alarm raises.")
    deadband: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="How far back past the threshold the value must go to clear.")

    @property
    def name(self) -> str:
        """The rule's id within its point, e.g. ``high_alarm``."""
        return f"{self.kind}_{self.level}"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm: the body of a message on the `alarms` stream."""

    event: Literal["raised", "cleared"]
    alarm: str
    point: str
    rule: str
    kind: str
    level: str
    value: float | None
    threshold: float
    sample_ts: int
    decided_ts: int

    def body(self) -> dict[str, Any]:
        return asdict(self)


class _RuleState:
    __slots__ = ("active", "point", "rule")

    def __init__(self, point: str, rule: AlarmRule) -> None:
        self.point = point
        self.rule = rule
        self.active = False

    def step(self, value: float) -> bool | None:
        """The new state if ``value`` changes it, else None."""
        rule = self.rule
        if rule.kind == "high":
            raise_now = value >= rule.threshold
            clear_now = value < rule.threshold - rule.deadband
        else:
            raise_now = value <= rule.threshold
            clear_now = value > rule.threshold + rule.deadband
        if not self.active and raise_now:
            return True
        if self.active and clear_now:
            return False
        return None


class AlarmEngine:
    """Holds the state of every rule and turns samples into alarm events."""

    def __init__(self, rules: Mapping[str, Sequence[AlarmRule]], now_ms: Callable[[], int]) -> None:
        self._states: dict[str, list[_RuleState]] = {
            point: [_RuleState(point, rule) for rule in point_rules]
            for point, point_rules in rules.items() if point_rules
        }
        self._now_ms = now_ms

    def evaluate(self, samples: Iterable[Sample]) -> list[AlarmEvent]:
        """Events caused by ``samples``; only good samples move an alarm."""
        events: list[AlarmEvent] = []
        for sample in samples:
            states = self._states.get(sample.point)
            if not states or not sample.good:
                continue
            value = float(sample.value)  # type: ignore[arg-type]
            for state in states:
                change = state.step(value)
                if change is not None:
                    state.active = change
                    events.append(self._event(state, sample, "raised" if change else "cleared"))
        return events

    def active(self) -> list[tuple[str, str, str]]:
        """(point, rule, level) of every raised alarm."""
        return [(s.point, s.rule.name, s.rule.level)
                for states in self._states.values() for s in states if s.active]

    def _event(self, state: _RuleState, sample: Sample, event: Literal["raised", "cleared"]
               ) -> AlarmEvent:
        rule = state.rule
        return AlarmEvent(
            event=event, alarm=f"{state.point}/{rule.name}", point=state.point, rule=rule.name,
            kind=rule.kind, level=rule.level, value=sample.value, threshold=rule.threshold,
            sample_ts=sample.ts, decided_ts=self._now_ms(),
        )
