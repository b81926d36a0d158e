"""Property tests: whatever samples, acknowledgements, shelves and restarts come, the stream
of every alarm stays consistent: raised and cleared alternate (never raised twice, never
cleared twice, never a state without its event), acks only on raised alarms, silence while
shelved, latching alarms cleared only after their ack.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from watchpost.alarms import AlarmEngine, AlarmError, AlarmEvent
from watchpost.config.alarms import AlarmRule, resolve_rules
from watchpost.samples import Quality, Sample

T0 = 1_700_000_000_000
VALUES = [None, -1.0, 0.0, 0.1, 0.2, 0.25, 0.9, 0.95, 1.0, 1.05, 1.5, 1.6, 2.5, 5.0]
THRESHOLD_KINDS = {"high", "low", "rate_of_rise"}


def build_rules(
    high_latch: bool, crit_latch: bool, deadband: float, on_delay: float, off_delay: float
) -> list[Any]:
    specs = [
        {
            "kind": "high",
            "threshold": 1.0,
            "deadband": deadband,
            "on_delay": on_delay,
            "off_delay": off_delay,
            "latch": high_latch,
        },
        {
            "kind": "high",
            "level": "critical",
            "threshold": 1.5,
            "deadband": 0.5,
            "latch": crit_latch,
            "shelvable": False,
        },
        {"kind": "low", "threshold": 0.2, "deadband": 0.05, "on_delay": on_delay},
        {"kind": "rate_of_rise", "rate": 3.0, "window": 10, "deadband": 1.0},
        {"kind": "stuck", "duration": 5},
        {"kind": "comm_loss", "on_delay": on_delay, "latch": high_latch},
        {"kind": "invalid", "off_delay": off_delay},
        {"kind": "out_of_range"},
    ]
    return resolve_rules(
        TypeAdapter(list[AlarmRule]).validate_python(specs),
        rules_from=None,
        unit="",
        point_range=(0.0, 4.0),
    )


QUALITIES = [Quality.GOOD] * 5 + [Quality.BAD, Quality.COMM, Quality.STALE]
samples = st.tuples(
    st.just("sample"),
    st.sampled_from(QUALITIES),
    st.sampled_from(VALUES),
    st.sampled_from([0, 500, 1000, 1000, 1000, 3000]),
)
holds = st.tuples(st.just("hold"), st.sampled_from(VALUES[1:]), st.integers(1, 12))
acks = st.tuples(st.just("ack"), st.integers(0, 9), st.sampled_from(["crew", "platform"]))
shelves = st.tuples(st.just("shelve"), st.integers(0, 9), st.integers(1, 20))
unshelves = st.tuples(st.just("unshelve"), st.integers(0, 9))
ticks = st.tuples(st.just("tick"), st.integers(0, 15_000))
restarts = st.tuples(st.just("restart"))
operations = st.lists(
    st.one_of(samples, samples, samples, holds, acks, shelves, unshelves, ticks, restarts),
    min_size=5,
    max_size=150,
)


class Run:
    def __init__(self, rules: list[Any]) -> None:
        self.rules = rules
        self.now = T0
        self.events: list[AlarmEvent] = []
        self.engine = self._engine()
        self.ids = self.engine.alarm_ids()

    def _engine(self) -> AlarmEngine:
        engine = AlarmEngine({"p": self.rules}, lambda: self.now)
        engine.add_listener(self.events.append)
        return engine

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        try:
            if kind == "sample":
                _, quality, value, dt = op
                self.now += dt
                if quality is Quality.GOOD and value is None:
                    value = 0.5
                self.engine.evaluate([Sample("p", self.now, value, quality)])
            elif kind == "hold":  # a value held steady: delays, stuck sensors
                for _ in range(op[2]):
                    self.now += 1000
                    self.engine.evaluate([Sample("p", self.now, op[1], Quality.GOOD)])
            elif kind == "ack":
                self.engine.acknowledge(self.ids[op[1] % len(self.ids)], by=op[2])
            elif kind == "shelve":
                self.engine.shelve(
                    self.ids[op[1] % len(self.ids)], by="crew", reason="work", duration_s=op[2]
                )
            elif kind == "unshelve":
                self.engine.unshelve(self.ids[op[1] % len(self.ids)], by="crew")
            elif kind == "tick":
                self.now += op[1]
                self.engine.tick()
            else:
                saved = json.loads(json.dumps(self.engine.snapshot()))
                self.engine = self._engine()
                assert self.engine.restore(saved) == []
        except AlarmError:
            pass  # refused operations are fine; they must leave no trace


def check_stream(run: Run) -> None:
    latch = {f"p/{rule.name}": rule.latch for rule in run.rules}
    kinds = {f"p/{rule.name}": rule.kind for rule in run.rules}
    raised: dict[str, bool] = defaultdict(bool)
    acked: dict[str, bool] = defaultdict(bool)
    shelved: dict[str, bool] = defaultdict(bool)
    for event in run.events:
        alarm = event.alarm
        if event.event == "raised":
            assert not raised[alarm], f"{alarm} raised twice"
            assert not shelved[alarm], f"{alarm} raised while shelved"
            raised[alarm], acked[alarm] = True, False
        elif event.event == "cleared":
            assert raised[alarm], f"{alarm} cleared while not raised"
            assert not shelved[alarm], f"{alarm} cleared while shelved"
            assert acked[alarm] or not latch[alarm], f"latching {alarm} cleared without ack"
            raised[alarm] = False
        elif event.event == "acknowledged":
            assert raised[alarm], f"{alarm} acknowledged while not raised"
            assert not acked[alarm], f"{alarm} acknowledged twice"
            acked[alarm] = True
        elif event.event == "shelved":
            shelved[alarm] = True
        elif event.event == "unshelved":
            assert shelved[alarm], f"{alarm} unshelved while not shelved"
            shelved[alarm] = False
        assert event.active == raised[alarm], f"{alarm}: active flag disagrees with the stream"
        assert event.shelved == shelved[alarm]
        if kinds[alarm] in THRESHOLD_KINDS and event.event in ("raised", "cleared"):
            assert event.quality in ("good", None), "threshold state from a sample not good"
    for alarm in run.ids:
        state = run.engine.describe(alarm)
        assert state["raised"] == raised[alarm], f"{alarm}: engine state without its event"
        assert state["shelved"] == shelved[alarm]
        if state["raised"]:
            assert state["acked"] == acked[alarm]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations,
    config=st.tuples(
        st.booleans(),
        st.booleans(),
        st.sampled_from([0.0, 0.1]),
        st.sampled_from([0.0, 2.0]),
        st.sampled_from([0.0, 2.0]),
    ),
)
def test_no_sequence_leaves_an_alarm_without_its_event_or_clears_it_twice(
    ops: list[tuple[Any, ...]], config: tuple[bool, bool, float, float, float]
) -> None:
    run = Run(build_rules(*config))
    for op in ops:
        run.apply(op)
    check_stream(run)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-10, 10, allow_nan=False), max_size=200),
    deadband=st.floats(0, 2, allow_nan=False),
)
def test_a_threshold_alarm_is_raised_exactly_when_hysteresis_says_so(
    values: list[float], deadband: float
) -> None:
    rules = TypeAdapter(list[AlarmRule]).validate_python(
        [{"kind": "high", "threshold": 1.0, "deadband": deadband}]
    )
    engine = AlarmEngine({"p": rules}, lambda: T0)
    expected = False
    for i, value in enumerate(values):
        events = engine.evaluate([Sample("p", T0 + i, value, Quality.GOOD)])
        before = expected
        expected = value >= 1.0 - deadband if expected else value >= 1.0
        assert [e.event for e in events] == (
            [] if expected == before else ["raised" if expected else "cleared"]
        )
        assert engine.describe("p/high_alarm")["raised"] == expected
