"""Commands from the platform and the crew's alarm commands, against a running daemon.

A small simulated site holds two gas readings above a latching alarm limit; the platform
acknowledges one over MQTT, the crew the other at the CLI. A fuzzed batch of malformed,
unknown and oversized commands is answered with errors and changes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Broker
from tests.kit.configs import Table, alarm, gas, gas_gateway, gas_site, toml, write_config
from tests.kit.control import crew
from tests.kit.platform import Platform
from tests.kit.processes import SimulatorProcess, running_gateway
from watchpost import message_schemas
from watchpost.commands import COMMANDS, MAX_COMMAND_BYTES, CommandError, parse

ROOT = "watchpost/v1/cmd-site/gw-9/"

SITE = toml(gas_site("cmd-site", 150, 150))  # 15.0 %LEL: both above their limit


def gateway_config(broker: str, port: int) -> Table:
    latched = alarm("high", threshold=10.0, latch=True)
    return gas_gateway(
        broker,
        port,
        gas("gas_a", 0, latched, scale=0.1),
        gas("gas_b", 1, latched, scale=0.1),
        site="cmd-site",
        gateway_id="gw-9",
    )


# -- the requests alone ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    name=st.sampled_from(sorted(COMMANDS)),
    request=st.dictionaries(
        st.sampled_from(["id", "alarm", "by", "note", "reason", "minutes", "x"])
        | st.text(max_size=8),
        json_values,
        max_size=6,
    ),
)
def test_any_request_is_either_valid_or_refused_with_a_reason(name, request):
    try:
        command: object = parse(name, request)
    except CommandError as exc:
        command = str(exc)
    assert isinstance(command, COMMANDS[name]) or command  # a model, or a reason in words


def test_an_oversized_request_is_refused():
    with pytest.raises(CommandError, match="at most"):
        parse("ack", {"alarm": "x" * MAX_COMMAND_BYTES, "by": "me"})


def test_a_shelf_needs_its_expiry_and_reason():
    with pytest.raises(CommandError, match="minutes: is required"):
        parse("shelve", {"alarm": "a/high_alarm", "by": "op", "reason": "maintenance"})
    with pytest.raises(CommandError, match="reason"):
        parse("shelve", {"alarm": "a/high_alarm", "by": "op", "reason": "", "minutes": 5})


# -- against the daemon ----------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path, broker: Broker):
    with SimulatorProcess.start(SITE, tmp_path) as sim:
        config = gateway_config(broker.url, sim.tcp_port("tcp"))
        path = write_config(tmp_path / "gateway.toml", config)
        with running_gateway(path, clean_stop=False) as process:
            yield process, path


@pytest.mark.slow
def test_acknowledgement_from_the_platform_and_the_crew(daemon, broker, subscriber, validate):
    process, config = daemon
    sub = subscriber(ROOT + "#")
    sub.wait_for(
        ROOT + "alarms",
        timeout=20,
        predicate=lambda got: (
            {m["alarm"] for m in got if m["event"] == "raised"}
            >= {"gas_a/high_alarm", "gas_b/high_alarm"}
        ),
    )
    platform = Platform(broker, sub, ROOT)
    try:
        reply = platform.send(
            "ack",
            {"alarm": "gas_a/high_alarm", "by": "duty-officer", "note": "ventilation crew sent"},
        )
        validate("reply", reply)
        assert reply["ok"] is True, reply
        again = platform.send("ack", {"alarm": "gas_a/high_alarm", "by": "duty-officer"})
        assert again["ok"] is False
        assert "gas_a/high_alarm" in again["error"]
    finally:
        platform.close()
    acked = sub.wait_for(
        ROOT + "alarms",
        timeout=10,
        predicate=lambda got: any(
            m["event"] == "acknowledged" and m["alarm"] == "gas_a/high_alarm" for m in got
        ),
    )
    event = next(m for m in acked if m["event"] == "acknowledged")
    assert event["by"] == "duty-officer"
    validate("alarms", event)

    listed = crew(config, "alarms", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {a["alarm"]: a for a in json.loads(listed.stdout)}
    assert states["gas_a/high_alarm"]["acked"] is True
    assert states["gas_b/high_alarm"]["acked"] is False

    ack = crew(config, "alarms", "ack", "gas_b/high_alarm", "--by", "shift-7")
    assert ack.returncode == 0, ack.stderr
    sub.wait_for(
        ROOT + "alarms",
        timeout=10,
        predicate=lambda got: any(
            m["event"] == "acknowledged"
            and m["alarm"] == "gas_b/high_alarm"
            and m["by"] == "shift-7"
            for m in got
        ),
    )
    unknown = crew(config, "alarms", "ack", "gas_c/high_alarm")
    assert unknown.returncode != 0
    assert "gas_c/high_alarm" in unknown.stderr
    assert process.poll() is None


@pytest.mark.slow
def test_malformed_commands_are_answered_with_errors_and_change_nothing(daemon, broker, subscriber):
    process, _config = daemon
    sub = subscriber(ROOT + "#")
    sub.wait_for(ROOT + "alarms", timeout=20, predicate=lambda got: len(got) >= 2)
    platform = Platform(broker, sub, ROOT)
    events_before = len(sub.get(ROOT + "alarms"))
    try:
        assert platform.send("ping", {})["ok"] is True
        fixed = [
            ("ack", b"{not json"),
            ("ack", b"[1, 2, 3]"),
            ("launch", {"what": "missiles"}),
            ("ack", {"alarm": "gas_a/high_alarm"}),  # no 'by'
            ("shelve", {"alarm": "gas_a/high_alarm", "by": "x", "reason": "r"}),  # no expiry
            ("shelve", {"alarm": "gas_a/high_alarm", "by": "x", "reason": "r", "minutes": 1e9}),
            ("ack", {"alarm": "y" * (MAX_COMMAND_BYTES + 10), "by": "x"}),
            ("unshelve", {"alarm": "gas_a/high_alarm", "by": "x"}),  # not shelved
        ]
        for name, payload in fixed:
            reply = platform.send(name, payload)
            assert reply["ok"] is False, (name, payload, reply)
            assert reply["error"]

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(
            name=st.sampled_from(["ack", "shelve", "unshelve", "reload"]),
            body=st.dictionaries(
                st.sampled_from(["alarm", "by", "minutes", "reason", "zzz"]),
                json_values,
                max_size=4,
            ),
        )
        def fuzz(name, body):
            body = {
                k: v
                for k, v in body.items()
                if not (k == "alarm" and isinstance(v, str) and v.startswith("gas_"))
            }
            body.setdefault("zzz", 1)  # an unknown key: every one of these must be refused
            reply = platform.send(name, body)
            assert reply["ok"] is False
            assert reply["error"]

        fuzz()
        assert platform.send("ping", {})["ok"] is True
    finally:
        platform.close()
    assert process.poll() is None
    time.sleep(1.0)
    assert len(sub.get(ROOT + "alarms")) == events_before  # nothing changed


@pytest.mark.slow
def test_reload_refuses_a_bad_file_and_takes_a_good_one(daemon, broker, subscriber):
    process, config = daemon
    sub = subscriber(ROOT + "#")
    sub.wait_for(
        ROOT + "status", timeout=20, predicate=lambda got: any(m["state"] == "online" for m in got)
    )
    platform = Platform(broker, sub, ROOT)
    good = config.read_text()
    try:
        config.write_text(good.replace("threshold = 10.0", 'threshold = "ten"', 1))
        reply = platform.send("reload", {})
        assert reply["ok"] is False
        assert "devices[0].points[0].alarms[0].threshold: must be a number" in reply["error"]
        assert platform.send("ping", {})["ok"] is True  # still running on the old file

        config.write_text(good.replace("interval = 0.5", "interval = 0.25"))
        onlines = len([m for m in sub.get(ROOT + "status") if m["state"] == "online"])
        reply = platform.send("reload", {})
        assert reply["ok"] is True, reply
        sub.wait_for(
            ROOT + "status",
            timeout=30,
            predicate=lambda got: len([m for m in got if m["state"] == "online"]) > onlines,
        )
        assert platform.send("ping", {})["ok"] is True
    finally:
        platform.close()
    assert process.poll() is None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_published_command_schemas_match_the_models(name):
    """gateway/schemas/cmd-*.json are what platforms read; they must say what the code checks."""
    published = json.loads(
        (
            Path(__file__).resolve().parents[1] / "gateway" / "schemas" / f"cmd-{name}.json"
        ).read_text()
    )
    expected = message_schemas.command_schema(name, COMMANDS[name])
    for key in ("$schema", "$id", "title"):
        published.pop(key)
        expected.pop(key, None)
    assert published == expected


@pytest.mark.slow
def test_status_after_a_reconnect_carries_the_alarm_picture(daemon, broker, subscriber, validate):
    process, _config = daemon
    sub = subscriber(ROOT + "#")
    raised = sub.wait_for(
        ROOT + "alarms",
        timeout=20,
        predicate=lambda got: len([m for m in got if m["event"] == "raised"]) >= 2,
    )
    broker.stop()
    time.sleep(1.0)
    broker.start()
    statuses = sub.wait_for(
        ROOT + "status",
        timeout=40,
        predicate=lambda got: any(
            m["state"] == "online" and m.get("alarms_seq", 0) >= 2 for m in got
        ),
    )
    status = next(m for m in reversed(statuses) if m["state"] == "online")
    validate("status", status)
    assert {a["alarm"] for a in status["active_alarms"]} == {"gas_a/high_alarm", "gas_b/high_alarm"}
    assert status["alarms_seq"] >= max(m["seq"] for m in raised)
    assert process.poll() is None
