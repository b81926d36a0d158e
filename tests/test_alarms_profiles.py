"""Shipped rule sets (drivers/profiles/*.toml): they load, points take them, and the methane
set does what the coal-mine regulation asks: alarm at 1.0, power cut at 1.5, restore below 1.0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.configs import device, gateway, point, tcp_bus, toml
from watchpost.alarms import AlarmEngine
from watchpost.config import ConfigError, load_config
from watchpost.config.alarms import load_rule_set, rule_set_names
from watchpost.samples import Quality, Sample

T0 = 1_700_000_000_000

# one Modbus TCP device with one point; a test appends keys of that point, or tables
CONFIG = toml(
    gateway(
        site="s",
        gateway_id="g",
        buses=[tcp_bus("face", 502)],
        devices=[device("station", "face", point("ch4_face_1", 0, unit="%CH4"))],
    )
)


def test_every_shipped_rule_set_loads_and_names_its_sources() -> None:
    names = rule_set_names()
    assert {"ch4_coal_face", "co_coal_mine", "o2_deficiency", "h2s", "combustible_lel"} <= set(
        names
    )
    for name in names:
        rule_set = load_rule_set(name)
        assert rule_set.unit, name
        assert rule_set.sources, name
        assert len({rule.name for rule in rule_set.alarms}) == len(rule_set.alarms), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ch4_coal_face", {"high_alarm": 1.0, "high_critical": 1.5}),
        ("co_coal_mine", {"high_alarm": 24.0}),
        ("o2_deficiency", {"low_alarm": 19.5, "low_prealarm": 20.0, "high_prealarm": 23.5}),
        ("h2s", {"high_alarm": 6.6, "high_critical": 10.0}),
        ("combustible_lel", {"high_alarm": 25.0, "high_critical": 50.0}),
    ],
)
def test_rule_sets_hold_the_documented_limits(name: str, expected: dict[str, float]) -> None:
    thresholds = {
        r.name: r.threshold
        for r in load_rule_set(name).alarms  # type: ignore[union-attr]
        if r.kind in ("high", "low")
    }
    assert thresholds == expected
    doc = (Path(__file__).resolve().parents[1] / "docs" / "alarm-rules.md").read_text()
    assert f"`{name}`" in doc


def test_a_point_takes_its_rules_from_a_set_and_overrides_them_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG
        + """rules_from = "ch4_coal_face"
[[devices.points.alarms]]
kind = "high"
level = "alarm"
threshold = 0.8
[[devices.points.alarms]]
kind = "rate_of_rise"
rate = 0.5
"""
    )
    [(_device, point)] = load_config(path).points()
    rules = {rule.name: rule for rule in point.alarms}
    assert sorted(rules) == [
        "comm_loss",
        "high_alarm",
        "high_critical",
        "invalid",
        "rate_of_rise_alarm",
    ]
    assert rules["high_alarm"].threshold == 0.8  # type: ignore[union-attr]
    assert rules["high_critical"].threshold == 1.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            'rules_from = "ch4_longwall"\n',
            "devices[0].points[0]: no rule set 'ch4_longwall' (known: ch4_coal_face, ",
        ),
        (
            'rules_from = "../../etc/passwd"\n',
            "devices[0].points[0]: no rule set '../../etc/passwd'",
        ),
        (
            'rules_from = "h2s"\n',
            "devices[0].points[0]: rule set 'h2s' is for 'ppm', the point is in '%CH4'",
        ),
        (
            '[[devices.points.alarms]]\nkind = "high"\n',
            "devices[0].points[0].alarms[0].threshold: is required",
        ),
        (
            '[[devices.points.alarms]]\nkind = "high"\nthreshold = 1\nlevel = "severe"\n',
            "devices[0].points[0].alarms[0].level: must be one of ",
        ),
        ('[[devices.points.alarms]]\nkind = "spike"\n', "devices[0].points[0].alarms[0]: "),
        (
            '[[devices.points.alarms]]\nkind = "out_of_range"\n',
            "devices[0].points[0]: out_of_range needs a range",
        ),
        (
            '[[devices.points.alarms]]\nkind = "high"\nthreshold = 1\n'
            '[[devices.points.alarms]]\nkind = "high"\nthreshold = 2\n',
            "devices[0].points[0]: rule name 'high_alarm' is used more than once",
        ),
        (
            '[[devices.points.alarms]]\nkind = "rate_of_rise"\nrate = 1\ndeadband = 1\n',
            "devices[0].points[0].alarms[0]: deadband must be below rate",
        ),
        (
            '[[devices.points.alarms]]\nkind = "stuck"\nduration = 60\nname = "test"\n',
            "devices[0].points[0].alarms[0]: rule name 'test' is reserved",
        ),
    ],
)
def test_rule_errors_name_their_key_path(tmp_path: Path, extra: str, error: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors


def test_methane_at_the_face_alarms_cuts_power_and_restores_as_the_regulation_says(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + 'rules_from = "ch4_coal_face"\n')
    config = load_config(path)
    now = [T0]
    engine = AlarmEngine({p.name: p.alarms for _d, p in config.points()}, lambda: now[0])
    ts = T0

    def feed(
        value: float | None, seconds: int = 1, quality: Quality = Quality.GOOD
    ) -> list[tuple[str, str]]:
        nonlocal ts
        out = []
        for _ in range(seconds):
            ts += 1000
            now[0] = ts
            out += [
                (e.event, e.rule)
                for e in engine.evaluate([Sample("ch4_face_1", ts, value, quality)])
            ]
        return out

    assert feed(0.99) == []
    assert feed(1.0) == [("raised", "high_alarm")]
    assert feed(1.49) == []
    assert feed(1.5) == [("raised", "high_critical")]
    assert feed(1.2, 30) == []  # below the power-cut level, not yet below the restore level
    assert feed(0.99, 10) == []  # normal from the first of these samples on: 9 s so far
    assert feed(0.99) == [("cleared", "high_alarm"), ("cleared", "high_critical")]
    assert feed(None, 5, Quality.COMM) == []
    assert feed(None, 1, Quality.COMM) == [("raised", "comm_loss")]
    with pytest.raises(Exception, match="may not be shelved"):
        engine.shelve("ch4_face_1/high_critical", by="crew", reason="x", duration_s=60)
