"""The published JSON Schemas are generated from the message classes and say what they make."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from watchpost import message_schemas, messages
from watchpost.messages import (
    AlarmMessage,
    AnomalyMessage,
    CommandReply,
    HealthMessage,
    StatusMessage,
    TelemetryBatch,
    encode_body,
    frame,
)

from .conftest import SCHEMAS, load_schema


@pytest.mark.parametrize("name", sorted(message_schemas.schemas()))
def test_committed_schemas_are_what_the_models_generate(name: str) -> None:
    """Change a model, run scripts/schemas, commit both: platforms read these files."""
    committed = (SCHEMAS / name).read_text(encoding="utf-8")
    assert committed == message_schemas.render(message_schemas.schemas()[name]), (
        f"gateway/schemas/{name} differs from its model: run scripts/schemas and commit it"
    )


def test_every_schema_file_has_a_model() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(message_schemas.schemas())


def test_the_check_command_notices_a_stale_schema(tmp_path: Any) -> None:
    assert message_schemas.main([str(tmp_path)]) == 0  # writes them
    assert message_schemas.main(["--check", str(tmp_path)]) == 0
    stale = tmp_path / "alarms.json"
    stale.write_text(stale.read_text().replace('"critical"', '"urgent"'))
    assert message_schemas.main(["--check", str(tmp_path)]) == 1


def _on_the_wire(message: messages.Message, **envelope: Any) -> dict[str, Any]:
    wire = frame("gw-1", message.stream, 7, 1_732_000_000_000, encode_body(message), **envelope)
    decoded: dict[str, Any] = json.loads(wire)
    return decoded


ALARM = AlarmMessage(
    event="raised",
    alarm="ch4/high_alarm",
    point="ch4",
    rule="high_alarm",
    kind="high",
    level="alarm",
    value=1.2,
    threshold=1.0,
    sample_ts=1_732_000_000_000,
    decided_ts=1_732_000_000_001,
    quality="good",
    active=True,
    by=None,
    note=None,
    until=None,
)

EXAMPLES: list[tuple[messages.Message, dict[str, Any]]] = [
    (
        TelemetryBatch.of(
            [
                {"point": "ch4", "ts": 1, "value": 0.4, "quality": "good"},
                {"point": "co", "ts": 1, "value": None, "quality": "comm"},
            ]
        ),
        {},
    ),
    (ALARM, {"replay": True}),
    (ALARM, {"clock": "unsynced", "boot_id": "b00t"}),
    (AnomalyMessage(event="raised", model="m", score=3.5, threshold=1.0, points=["a"]), {}),
    (StatusMessage(state="offline", version="1.0", boot_id="b", clock="unsynced"), {}),
    (
        StatusMessage(
            state="online",
            version="1.0",
            boot_id="b",
            clock="synced",
            active_alarms=[{"alarm": "a/b", "point": "a", "level": "alarm", "state": "active"}],
            alarms_seq=4,
        ),
        {},
    ),
    (
        HealthMessage.of(
            {
                "backlog": {"streams": {}, "bytes": 0, "evictions": {}},
                "disk": {},
                "cpu": {},
                "uplink": {},
                "clock": "synced",
                "uptime_s": 3,
            }
        ),
        {},
    ),
    (CommandReply(command="ping", id="x1", ok=True, result={"version": "1"}), {}),
    (CommandReply(command="ack", ok=False, error="no alarm 'x'"), {}),
]


@pytest.mark.parametrize(("message", "envelope"), EXAMPLES)
def test_what_the_models_make_is_valid(
    message: messages.Message, envelope: dict[str, Any], validate: Callable[[str, Any], None]
) -> None:
    validate(message.stream, _on_the_wire(message, **envelope))


def test_the_envelope_comes_first_and_the_body_is_kept_byte_for_byte() -> None:
    body = encode_body(ALARM)
    wire = frame("gw-1", "alarms", 3, 5, body, replay=True)
    assert wire.startswith(b'{"gateway":"gw-1","stream":"alarms","seq":3,"ts":5,"replay":true,')
    assert wire.endswith(body[1:])
    assert frame("gw-1", "status", 1, 5, b"{}") == (
        b'{"gateway":"gw-1","stream":"status","seq":1,"ts":5}'
    )


def test_schemas_refuse_what_the_contract_refuses() -> None:
    schema = load_schema("telemetry")
    good = _on_the_wire(EXAMPLES[0][0])
    jsonschema.validate(good, schema)
    for broken in (
        {**good, "replay": False},  # replay is present and true, or absent
        {**good, "boot_id": "b"},  # boot_id only with clock
        {**good, "samples": [{**good["samples"][0], "unit": "%"}]},  # a sample's keys are closed
        {**good, "seq": 0},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_a_clock_correction_shifts_the_stamps_of_each_stream() -> None:
    telemetry = encode_body(EXAMPLES[0][0])
    shifted = json.loads(messages.shift_stamps("telemetry", telemetry, 1000))
    assert [s["ts"] for s in shifted["samples"]] == [1001, 1001]
    alarm = json.loads(messages.shift_stamps("alarms", encode_body(ALARM), -1))
    assert (alarm["sample_ts"], alarm["decided_ts"]) == (1_731_999_999_999, 1_732_000_000_000)
    assert alarm["until"] is None  # not a stamp that existed: untouched


def test_a_body_json_cannot_carry_fails_loudly() -> None:
    with pytest.raises(messages.EncodeError, match="alarms"):
        encode_body(dataclasses.replace(ALARM, value=float("nan")))
