"""Signed commands, decided alone: signature, gateway, age, replay, retained."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.kit.processes import cli
from watchpost.command_auth import (
    CommandRefused,
    CommandVerifier,
    canonical,
    load_verify_key,
    sign,
)

NOW = 1_800_000_000_000
KEY = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def verifier(clock: Clock | None = None, key: Ed25519PrivateKey | None = KEY) -> CommandVerifier:
    return CommandVerifier(
        None if key is None else key.public_key(),
        gateway="gw-1",
        max_age_s=300,
        now_ms=clock or Clock(),
    )


def signed(key: Ed25519PrivateKey = KEY, **fields: Any) -> dict[str, Any]:
    payload = {"id": "c-1", "ts": NOW, "gateway": "gw-1", "alarm": "ch4/high_alarm", "by": "duty"}
    payload.update(fields)
    payload = {k: v for k, v in payload.items() if v is not None}
    payload["sig"] = sign(key, payload)
    return payload


def test_the_canonical_form_is_the_one_the_contract_names() -> None:
    payload = {"ts": 1, "by": "值班员", "id": "x", "sig": "dropped", "a": [1, 2.5]}
    expected = json.dumps(
        {k: v for k, v in payload.items() if k != "sig"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert canonical(payload) == expected
    assert "值班员".encode() in canonical(payload)


def test_a_signed_command_runs_once() -> None:
    check = verifier()
    check.check("ack", signed())
    with pytest.raises(CommandRefused, match="replay"):
        check.check("ack", signed())
    check.check("ack", signed(id="c-2"))
    check.check("ack", signed(id=5))
    check.check("ack", signed(id="5"))  # a text id is not the number


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sig": None}, "must be signed"),
        ({"sig": "not base64!"}, "not base64"),
        ({"sig": "AAAA"}, "not base64 of a 64-byte"),
        ({"alarm": "ch4/high_critical"}, "does not match"),  # changed after signing
        ({"id": None}, "needs id"),
        ({"ts": None}, "needs ts"),
        ({"gateway": None}, "needs gateway"),
        ({"ts": "soon"}, "ts must be"),
        ({"id": ""}, "id must be"),
        ({"id": "x" * 129}, "id must be"),
        ({"id": True}, "id must be"),
    ],
)
def test_a_command_that_is_not_properly_signed_is_refused(
    change: dict[str, Any], reason: str
) -> None:
    payload = signed()
    for key, value in change.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    if "sig" in payload and "sig" not in change and "alarm" not in change:
        payload["sig"] = sign(KEY, payload)  # a well-signed payload missing a field
    with pytest.raises(CommandRefused, match=reason):
        verifier().check("ack", payload)


def test_another_key_another_gateway_and_the_wrong_time_are_refused() -> None:
    with pytest.raises(CommandRefused, match="does not match"):
        verifier().check("ack", signed(Ed25519PrivateKey.generate()))
    with pytest.raises(CommandRefused, match="meant for gateway 'gw-2'"):
        verifier().check("ack", signed(gateway="gw-2"))
    for offset in (-301_000, +301_000):
        with pytest.raises(CommandRefused, match="at most 300 s"):
            verifier().check("ack", signed(ts=NOW + offset))
    verifier().check("ack", signed(ts=NOW - 299_000))


def test_a_replay_after_the_window_is_refused_by_its_age() -> None:
    clock = Clock()
    check = verifier(clock)
    check.check("shelve", signed())
    clock.now += 301_000
    with pytest.raises(CommandRefused, match="at most 300 s"):
        check.check("shelve", signed())


def test_ping_needs_no_signature_and_no_key_verifies_nothing() -> None:
    verifier().check("ping", {"id": 1})
    verifier(key=None).check("ack", {"id": 1, "alarm": "a/b", "by": "x"})


def test_watchpost_ca_command_key_makes_a_pair_the_verifier_takes(tmp_path: Path) -> None:
    result = cli("ca", "command-key", "--out", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    private = tmp_path / "k" / "command-signing.key"
    public = tmp_path / "k" / "command-verify.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in result.stdout + result.stderr
    key = load_pem_private_key(private.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    check = CommandVerifier(
        load_verify_key(public), gateway="gw-1", max_age_s=300, now_ms=lambda: NOW
    )
    check.check("ack", signed(key))
    again = cli("ca", "command-key", "--out", str(tmp_path / "k"))
    assert again.returncode != 0  # never replaces a key
    assert load_verify_key(public)  # still the same readable key


def test_a_file_that_is_not_an_ed25519_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ValueError, match=r"key\.pem: not an Ed25519 public key"):
        load_verify_key(path)


def test_the_replay_window_survives_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ids accepted within max_age are kept in a file, so that a command replayed right
    after a restart is refused too; ids past max_age are forgotten on the way."""
    clock, path = Clock(), tmp_path / "command_ids.json"

    def started() -> CommandVerifier:
        return CommandVerifier(
            KEY.public_key(), gateway="gw-1", max_age_s=300, now_ms=clock, seen_file=path
        )

    first = started()
    first.check("ack", signed(id="c-1"))
    first.check("ack", signed(id=7))
    asyncio.run(first.persist())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    restarted = started()  # the daemon came back: a replay is refused at once
    with pytest.raises(CommandRefused, match="replay"):
        restarted.check("ack", signed(id="c-1"))
    with pytest.raises(CommandRefused, match="replay"):
        restarted.check("ack", signed(id=7))
    restarted.check("ack", signed(id="7"))  # another id: "7" is not 7
    asyncio.run(restarted.persist())
    saved = json.loads(path.read_text())["seen"]
    assert [entry[:2] for entry in saved] == [["str", "c-1"], ["int", 7], ["str", "7"]]

    clock.now += 301_000  # past max_age: those ids cannot be replayed anyway
    later = started()
    later.check("ack", signed(id="c-2", ts=clock.now))
    asyncio.run(later.persist())
    assert [entry[1] for entry in json.loads(path.read_text())["seen"]] == ["c-2"]

    path.write_text('{"seen": [["str", 5, 1]]}')  # damaged: reported, never a stop
    with caplog.at_level(logging.WARNING):
        damaged = started()
    assert "cannot read the ids of executed commands" in caplog.text
    damaged.check("ack", signed(id="c-3", ts=clock.now))
    asyncio.run(damaged.persist())
    assert [entry[1] for entry in json.loads(path.read_text())["seen"]] == ["c-3"]


def test_no_key_no_replay_file(tmp_path: Path) -> None:
    path = tmp_path / "command_ids.json"
    unsigned = CommandVerifier(None, gateway="gw-1", max_age_s=300, now_ms=Clock(), seen_file=path)
    unsigned.check("ack", {"id": "u-1"})
    asyncio.run(unsigned.persist())
    assert not path.exists()
