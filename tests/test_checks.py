"""What the daemon receives is checked without pydantic, and refused exactly as pydantic would.

``watchpost.checks`` reads the same classes pydantic reads when it generates the command
schemas; here pydantic validates the same requests, and every answer (the value, or each
error line as ``describe_error`` words it) must be the same.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from watchpost import checks, message_schemas
from watchpost.actions import ACTIONS
from watchpost.alarm_state import SavedState
from watchpost.commands import COMMANDS
from watchpost.error_text import describe_error

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**53 + 1,
    10**30,
    1.0,
    5.5,
    float("nan"),
    float("inf"),
    -0.0,
    "",
    "x",
    "5",
    " 7 ",
    "5.0",
    "1e3",
    "true",
    "a" * 101,
    "a" * 1001,
    "bad id!",
    "alarms",
    [],
    [1],
    {},
    {"a": 1},
]

GOOD: dict[str, dict[str, Any]] = {
    "ping": {},
    "ack": {"alarm": "a/b", "by": "me", "note": "n"},
    "shelve": {"alarm": "a/b", "by": "me", "reason": "r", "minutes": 5},
    "unshelve": {"alarm": "a/b", "by": "me"},
    "shutdown_order": {"id": "o1", "start": 1000, "end": 2000, "reason": "r"},
    "shutdown_cancel": {"id": "c1", "order": "o1"},
    "anomaly_rebaseline": {"model": "m1", "by": "me"},
    "cert_install": {"certificate": "PEM"},
    "resend": {"stream": "alarms", "from_seq": 1, "to_seq": 5},
    "test_alarm": {"point": "p"},
}


def requests(good: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The good request, each key (and a few others) set to each value or left out, and
    random mixes of wrong keys."""
    keys = [*good, "id", "ts", "sig", "zz"]
    out = [good]
    for key in keys:
        out += [{**good, key: value} for value in VALUES]
        out.append({k: v for k, v in good.items() if k != key})
    pick = random.Random(seed)
    for _ in range(80):
        request = dict(good)
        for key in pick.sample(keys, k=3):
            request[key] = pick.choice(VALUES)
        out.append(request)
    return out


def answer(check: Any, request: Any) -> tuple[str, Any]:
    try:
        return "ok", dataclasses.asdict(check(request))
    except ValidationError as exc:
        return "refused", [describe_error(_as_model(e)) for e in exc.errors()]
    except checks.Invalid as exc:
        return "refused", [describe_error(e) for e in exc.errors]


def _as_model(error: Any) -> Any:
    """pydantic words an unknown key of a dataclass as an unexpected argument; the gateway
    keeps the wording its models had (``extra_forbidden``: "is not a known key")."""
    if error["type"] == "unexpected_keyword_argument":
        return {**error, "type": "extra_forbidden"}
    return error


def pydantic_check(cls: type) -> Any:
    return TypeAdapter(message_schemas._resolvable(cls)).validate_python


def kept_stream(request: dict[str, Any]) -> bool:
    """pydantic does not know the gateway's own key checks (``__field_checks__``)."""
    return request.get("stream", "alarms") in ("alarms", "anomalies", "telemetry")


CLASSES = {**{name: COMMANDS[name] for name in COMMANDS}, "test_alarm": ACTIONS["test_alarm"]}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_requests_are_checked_as_pydantic_checks_them(name: str) -> None:
    cls = CLASSES[name]
    by_pydantic = pydantic_check(cls)
    compared = 0
    for request in requests(GOOD[name], seed=len(name)):
        if not kept_stream(request):
            continue
        assert answer(lambda r: checks.parse(cls, r), request) == answer(by_pydantic, request), (
            request
        )
        compared += 1
    assert compared > 100


def test_the_saved_alarm_state_is_checked_as_pydantic_checks_it() -> None:
    good = {"raised": True, "cond": False, "raised_ts": 5, "value": 1.5, "acked_by": None}
    by_pydantic = pydantic_check(SavedState)
    documents: list[Any] = [
        {"version": 1, "alarms": {}},
        {"version": 2, "alarms": {}},
        {"version": True, "alarms": {}},
        {"alarms": {}},
        {"version": 1, "alarms": None},
        {"version": 1, "alarms": {"a" * 501: good}},
        {"version": 1, "alarms": {}, "zz": 1},
    ]
    for request in requests(good, seed=1):
        documents.append({"version": 1, "alarms": {"a/b": request, "c/d": {**good, "x": 1}}})
    for document in documents:
        assert answer(lambda d: checks.parse(SavedState, d), document) == answer(
            by_pydantic, document
        ), document


def test_the_gateway_s_own_checks_refuse_with_the_key() -> None:
    with pytest.raises(checks.Invalid) as refused:
        checks.parse(COMMANDS["resend"], {"stream": "status", "from_seq": 2, "to_seq": 1})
    assert [describe_error(e) for e in refused.value.errors] == [
        "stream: 'status' is not a stream the gateway keeps; resend covers alarms, anomalies, "
        "csr, energy, telemetry (got 'status')"
    ]
    with pytest.raises(checks.Invalid) as refused:
        checks.parse(COMMANDS["resend"], {"stream": "alarms", "from_seq": 2, "to_seq": 1})
    assert [describe_error(e) for e in refused.value.errors] == ["from_seq (2) is after to_seq (1)"]


def test_checking_a_command_loads_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from watchpost import checks\n"
        "from watchpost.shutdown import ShutdownOrder\n"
        "from watchpost.alarm_state import SavedState\n"
        "checks.parse(ShutdownOrder, {'id': 'o', 'start': 1, 'end': 2, 'reason': 'r'})\n"
        "checks.parse(SavedState, {'version': 1, 'alarms': {'a/b': {'raised': True}}})\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
