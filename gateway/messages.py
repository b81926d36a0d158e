"""Every message the gateway sends, as plain typed data: the one place the wire format is made.

One class per stream::

    TelemetryBatch   telemetry   stored, committed in batches     QoS 1
    AlarmMessage     alarms      stored, durable at once          QoS 1, sent first
    AnomalyMessage   anomalies   stored, durable at once          QoS 1, sent second
    StatusMessage    status      not stored, retained             QoS 1
    HealthMessage    health      not stored, retained             QoS 0
    CommandReply     reply       not stored, on cmd/{name}/reply  QoS 1

A message holds the *body*: the keys a message carries besides the envelope. The envelope
(``gateway``, ``stream``, ``seq``, ``ts``, and for stored streams ``replay``, ``clock``,
``boot_id``) is made by ``frame`` and nowhere else; the body is encoded once, by
``encode_body``, into the bytes the store keeps. ``frame`` splices the envelope in front of
those bytes when the message leaves, so the bytes stay valid whatever happens meanwhile (a
replay, a clock correction). Only a body stamped before the clock was synchronised is decoded
again, to shift its stamps (``shift_stamps``), once, when it is sent.

The messages are stdlib dataclasses and TypedDicts, built by the gateway's own code (trusted,
not validated again) and encoded by one JSON encoder: the daemon never imports pydantic. Their
annotations carry each key's description and bounds as pydantic ``Field``s, which type
checkers read and pydantic evaluates only when ``message_schemas`` generates the JSON Schemas
in ``gateway/schemas/`` from them (``scripts/schemas``; a test compares them with the committed
files).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic reads TypedDicts on < 3.12

if TYPE_CHECKING:  # read by type checkers, and by pydantic in message_schemas only
    from pydantic import Field
    from pydantic.json_schema import SkipJsonSchema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://watchpost.invalid/schemas/v1/"
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
SCHEMA_FOLDER = Path(__file__).resolve().parent / "schemas"

TEXT_NOT_JSON = "the {stream} body cannot be encoded as JSON: {error}"
TEXT_ENVELOPE = "{model}: a stored body must not have the envelope key(s) {keys}"
ENVELOPE_KEYS = frozenset({"gateway", "stream", "seq", "ts", "replay", "clock", "boot_id"})

Clock = Literal["unsynced", "corrected"]


class EncodeError(ValueError):
    """A body holds something JSON cannot carry (NaN, an object); a programming error."""


class Absent:
    """The value of an optional key the message does not carry (not even as null)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """For ``message_schemas`` only: an instance check, never validated."""
        from pydantic_core import core_schema  # noqa: PLC0415 - schema generation only

        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Any:
        """Not in the schema: absent is not a JSON value."""
        from pydantic_core import PydanticOmit  # noqa: PLC0415 - schema generation only

        raise PydanticOmit


ABSENT = Absent()

# One encoder for every body: compact UTF-8, no NaN or Infinity (JSON has none).
_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
# Bodies that may carry what JSON lacks (a path in a command's result): as text.
_LENIENT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=str)


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _null_default(schema: dict[str, Any]) -> None:
    """An optional key: documented with the default the v1 schema gave it, null."""
    schema["default"] = None


# -- the envelope ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The keys at the top level of every message, before the body's own."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    gateway: Annotated[str, Field(pattern=NAME_PATTERN, description="Gateway id, as in the topic.")]
    stream: Annotated[str, Field(description="The stream, the last topic level.")]
    seq: Annotated[
        int,
        Field(
            ge=1,
            description="Per-stream sequence number: 1, 2, 3, ... without gaps, surviving "
            "restarts.",
        ),
    ]
    ts: Annotated[
        int, Field(ge=0, description="When the message was stamped: UTC epoch milliseconds.")
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEnvelope(Envelope):
    """The envelope of a stored stream: also how it was stamped and whether it is a replay."""

    replay: Annotated[
        Literal[True] | SkipJsonSchema[None],
        Field(
            description="Present when sent from the backlog after an outage.",
            json_schema_extra=_drop_default,
        ),
    ] = None
    clock: Annotated[
        Clock | SkipJsonSchema[None],
        Field(
            description="Absent: stamped with a synchronised clock. unsynced: stamped before "
            "the clock was synchronised and never corrected (ts are ordered within boot_id but "
            "not real UTC). corrected: stamped unsynced, shifted to UTC once the clock "
            "synchronised.",
            json_schema_extra=_drop_default,
        ),
    ] = None
    boot_id: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description="With clock=unsynced: the boot whose monotonic clock made the stamps.",
            json_schema_extra=_drop_default,
        ),
    ] = None


def frame(
    gateway: str,
    stream: str,
    seq: int,
    ts: int,
    body: bytes,
    *,
    replay: bool = False,
    clock: Clock | None = None,
    boot_id: str | None = None,
) -> bytes:
    """The message as it goes on the wire: the envelope, then the body's keys (``body`` is
    what ``encode_body`` made). The only place an envelope is made."""
    head: dict[str, Any] = {"gateway": gateway, "stream": stream, "seq": seq, "ts": ts}
    if replay:
        head["replay"] = True
    if clock is not None:
        head["clock"] = clock
        if boot_id is not None:
            head["boot_id"] = boot_id
    start = _STRICT.encode(head).encode()
    if body == b"{}":
        return start
    return start[:-1] + b"," + body[1:]


# -- the bodies -----------------------------------------------------------------------------


class Message:
    """The body of one outbound message. Subclasses say which stream carries it and how."""

    __slots__ = ()
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    stream: ClassVar[str]
    stored: ClassVar[bool] = False  # through the store (at least once), else sent as it is
    durable: ClassVar[bool] = False  # its put returns only once it is fsync'd
    qos: ClassVar[int] = 1
    retain: ClassVar[bool] = False
    stamp_keys: ClassVar[tuple[str, ...]] = ()  # body keys holding epoch-ms stamps
    lenient: ClassVar[bool] = False  # encode what JSON lacks (a path) as text, not an error

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A stored body must not carry a key of the envelope (``frame`` owns them)."""
        super().__init_subclass__(**kwargs)
        if cls.stored:
            own = inspect.get_annotations(cls)
            keys = {key for key, kind in own.items() if not str(kind).startswith("ClassVar")}
            clash = ENVELOPE_KEYS.intersection(keys)
            if clash:
                raise TypeError(TEXT_ENVELOPE.format(model=cls.__name__, keys=sorted(clash)))

    @classmethod
    def schema_type(cls) -> type:
        """What the JSON Schema of the body is generated from: the class itself."""
        return cls

    def body(self) -> dict[str, Any]:
        """The body as plain JSON types: every key it carries, in the declared order."""
        return {
            f.name: value
            for f in fields(self)  # type: ignore[arg-type]  # every subclass is a dataclass
            if (value := getattr(self, f.name)) is not ABSENT
        }

    def items(self) -> int:
        """How many samples or events the message carries (the backlog counts them)."""
        return 1

    @classmethod
    def shift_stamps(cls, body: dict[str, Any], delta_ms: int) -> dict[str, Any]:
        """Shift the stamps ``body`` carries by ``delta_ms`` (a clock correction)."""
        for key in cls.stamp_keys:
            if isinstance(body.get(key), int):
                body[key] += delta_ms
        return body


def encode_body(message: Message) -> bytes:
    """The body's JSON (UTF-8, compact): what the store keeps and ``frame`` completes."""
    return _encode(message.stream, message.body(), lenient=message.lenient)


def _encode(stream: str, body: dict[str, Any], *, lenient: bool = False) -> bytes:
    try:
        return (_LENIENT if lenient else _STRICT).encode(body).encode()
    except (TypeError, ValueError) as exc:
        raise EncodeError(TEXT_NOT_JSON.format(stream=stream, error=exc)) from exc


def _float(value: float | None) -> float | None:
    """A number for a key of type number: 3 is sent as 3.0, as the schema's models did."""
    return None if value is None else float(value)


class SampleReading(TypedDict):
    """One sample in a telemetry batch."""

    point: Annotated[str, Field(pattern=NAME_PATTERN, description="The point's name.")]
    ts: Annotated[int, Field(ge=0, description="When the value was read, UTC epoch ms.")]
    value: Annotated[
        float | None,
        Field(description="Engineering value; null unless the device gave a number."),
    ]
    quality: Annotated[
        Literal["good", "bad", "comm", "stale"],
        Field(description="good, bad (exception or implausible value), comm (no answer), stale."),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryBatch(Message):
    """`telemetry`: a batch of samples, about one a second, at most 500 samples."""

    stream: ClassVar[str] = "telemetry"
    stored: ClassVar[bool] = True

    samples: Annotated[
        list[SampleReading],
        Field(min_length=1, description="Readings, oldest first per point."),
    ]

    @classmethod
    def of(cls, samples: list[SampleReading]) -> TelemetryBatch:
        """A batch of readings the poller made."""
        return cls(samples=samples)

    def body(self) -> dict[str, Any]:
        return {"samples": self.samples}

    def items(self) -> int:
        return len(self.samples)

    @classmethod
    def shift_stamps(cls, body: dict[str, Any], delta_ms: int) -> dict[str, Any]:
        for sample in body.get("samples", ()):
            if isinstance(sample, dict) and isinstance(sample.get("ts"), int):
                sample["ts"] += delta_ms
        return body


AlarmEventName = Literal["raised", "cleared", "acknowledged", "shelved", "unshelved"]
Level = Literal["prealarm", "alarm", "critical", "fault"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmMessage(Message):
    """`alarms`: one transition of one alarm (or one of the gateway's own faults)."""

    stream: ClassVar[str] = "alarms"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("sample_ts", "decided_ts")

    event: Annotated[AlarmEventName, Field(description="What happened to the alarm.")]
    alarm: Annotated[str, Field(min_length=1, description="Alarm id: point/rule.")]
    point: Annotated[
        str, Field(min_length=1, description="The point (gateway for the gateway's own).")
    ]
    rule: Annotated[str, Field(min_length=1, description="The rule's name within its point.")]
    kind: Annotated[
        str,
        Field(
            min_length=1,
            description="high, low, rate, ... or store_damaged for the gateway's own faults.",
        ),
    ]
    level: Annotated[Level, Field(description="prealarm, alarm, critical or fault.")]
    value: Annotated[float | None, Field(description="The value that decided the event.")]
    threshold: Annotated[
        float | None, Field(description="The rule's threshold, null if it has none.")
    ]
    sample_ts: Annotated[
        int, Field(ge=0, description="Stamp of the sample that decided, UTC epoch ms.")
    ]
    decided_ts: Annotated[int, Field(ge=0, description="When the gateway decided, UTC epoch ms.")]
    # The keys below are not in the schema: v1's schema was published without them, and
    # what it accepts must not change (they are documented in mqtt-contract.md). A key left
    # ABSENT is not sent.
    quality: SkipJsonSchema[str | Absent | None] = ABSENT  # the deciding sample's quality
    active: SkipJsonSchema[bool | Absent] = ABSENT  # the alarm is raised after the event
    acked: SkipJsonSchema[bool | Absent] = ABSENT  # ... acknowledged after the event
    shelved: SkipJsonSchema[bool | Absent] = ABSENT  # ... shelved after the event
    latch: SkipJsonSchema[bool | Absent] = ABSENT  # the rule latches until acknowledged
    by: SkipJsonSchema[str | Absent | None] = ABSENT  # who acted (crew and platform actions)
    note: SkipJsonSchema[str | Absent | None] = ABSENT  # the action's note or reason
    until: SkipJsonSchema[int | Absent | None] = ABSENT  # a shelf's expiry, UTC epoch ms
    test: SkipJsonSchema[bool | Absent] = ABSENT  # a test alarm (watchpost test-alarm)
    detail: SkipJsonSchema[str | Absent | None] = ABSENT  # the reason of an output_fault
    reason: SkipJsonSchema[str | Absent | None] = ABSENT  # store_damaged: what was wrong
    moved_to: SkipJsonSchema[str | Absent | None] = ABSENT  # store_damaged: where it went
    seq_kept: SkipJsonSchema[bool | Absent | None] = ABSENT  # store_damaged: seqs kept
    order: SkipJsonSchema[str | Absent | None] = ABSENT  # the shutdown order the site breaks


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyMessage(Message):
    """`anomalies`: a model's event."""

    stream: ClassVar[str] = "anomalies"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("since", "steady_since")

    event: Annotated[
        Literal["raised", "cleared", "rebaseline_proposed", "rebaseline"],
        Field(
            description="raised or cleared; rebaseline_proposed: the model has stayed raised "
            "while the process held steady at a new level (never applied by itself); "
            "rebaseline: a crew or the platform had the model recalibrate from the next rows."
        ),
    ]
    model: Annotated[str, Field(min_length=1, description="The model entry's name.")]
    score: Annotated[
        float | None, Field(description="The score that decided (not on rebaseline).")
    ] = None
    threshold: Annotated[
        float | None, Field(description="The model's decision threshold (not on rebaseline).")
    ] = None
    points: Annotated[
        list[str],
        Field(
            min_length=1,
            description="The points involved, strongest first; on rebaseline: the model's points.",
        ),
    ]
    since: Annotated[
        int | None,
        Field(
            description="raised, cleared, rebaseline_proposed: when the event began (its first "
            "row above the threshold), UTC epoch ms."
        ),
    ] = None
    steady_since: Annotated[
        int | None,
        Field(
            description="rebaseline_proposed: since when the levels have held steady, UTC epoch ms."
        ),
    ] = None
    by: Annotated[
        str | None, Field(max_length=100, description="rebaseline: who asked for it.")
    ] = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event": self.event, "model": self.model}
        if self.score is not None:
            body["score"] = float(self.score)
        if self.threshold is not None:
            body["threshold"] = float(self.threshold)
        body["points"] = list(self.points)
        if self.since is not None:
            body["since"] = self.since
        if self.steady_since is not None:
            body["steady_since"] = self.steady_since
        if self.by is not None:
            body["by"] = self.by
        return body


class AlarmSummary(TypedDict):
    """One raised or shelved alarm in an `online` status."""

    alarm: Annotated[str, Field(description="Alarm id.")]
    point: Annotated[str, Field(description="The point.")]
    level: Annotated[str, Field(description="The alarm's level.")]
    state: Annotated[str, Field(description="The alarm's state.")]


class OrderSummary(TypedDict):
    """One shutdown order in an `online` status."""

    id: Annotated[str, Field(description="The order's id, as the platform sent it.")]
    start: Annotated[int, Field(description="When the shutdown begins, UTC epoch ms.")]
    end: Annotated[int, Field(description="When it ends, UTC epoch ms.")]
    reason: Annotated[str, Field(description="Why, as the platform sent it.")]
    state: Annotated[
        Literal["pending", "in_force", "ended", "cancelled"],
        Field(description="The order's state when the status was published."),
    ]
    received_ts: Annotated[int, Field(description="When the gateway accepted it, UTC epoch ms.")]
    cancelled_ts: NotRequired[
        Annotated[
            int | None,
            Field(
                description="When it was cancelled; absent or null if it was not.",
                json_schema_extra=_null_default,
            ),
        ]
    ]


def _summary(item: dict[str, Any], declared: tuple[str, ...]) -> dict[str, Any]:
    """An entry of a status list as its model sent it: the declared keys first, then the
    others; no nulls."""
    out = {key: item[key] for key in declared if item.get(key) is not None}
    out.update((key, value) for key, value in item.items() if value is not None and key not in out)
    return out


_ALARM_SUMMARY_KEYS = ("alarm", "point", "level", "state")
_ORDER_SUMMARY_KEYS = ("id", "start", "end", "reason", "state", "received_ts", "cancelled_ts")
_ORDER_INT_KEYS = ("start", "end", "received_ts", "cancelled_ts")


def _order_summary(order: dict[str, Any]) -> dict[str, Any]:
    out = _summary(order, _ORDER_SUMMARY_KEYS)
    for key in _ORDER_INT_KEYS:
        if isinstance(out.get(key), float):
            out[key] = int(out[key])  # whole milliseconds, as the schema says
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyDay(Message):
    """`energy`: the daily figure of one meter energy point (a DL/T 645 energy DI): the
    reading at the start of a local day and at the start of the next, and the day's energy."""

    stream: ClassVar[str] = "energy"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("start_ts", "end_ts")

    point: Annotated[str, Field(min_length=1, description="The energy point.")]
    unit: Annotated[str, Field(description="Its unit (kWh, kvarh, kVAh).")]
    day: Annotated[
        str,
        Field(
            pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            description="The gateway's local date (YYYY-MM-DD) the figure is for.",
        ),
    ]
    start: Annotated[
        float, Field(description="The reading at the day's start (the first of the day).")
    ]
    start_ts: Annotated[int, Field(ge=0, description="When it was read, UTC epoch ms.")]
    end: Annotated[float, Field(description="The reading at the next day's start.")]
    end_ts: Annotated[int, Field(ge=0, description="When it was read, UTC epoch ms.")]
    energy: Annotated[
        float | None,
        Field(
            description="end - start: the day's energy; null when the reading went down (a "
            "new meter, a register that rolled over)."
        ),
    ]
    complete: Annotated[
        bool,
        Field(
            description="Both readings were taken within 15 minutes of their midnights; false "
            "for the day the gateway started in or a day with a gap over midnight."
        ),
    ]

    def body(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "unit": self.unit,
            "day": self.day,
            "start": float(self.start),
            "start_ts": self.start_ts,
            "end": float(self.end),
            "end_ts": self.end_ts,
            "energy": _float(self.energy),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRequest(Message):
    """`csr`: the gateway made a new key because its client certificate expires soon, and
    asks the platform to sign this CSR; the platform answers with `cmd/cert_install`."""

    stream: ClassVar[str] = "csr"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True

    csr: Annotated[
        str,
        Field(
            pattern=r"^-----BEGIN CERTIFICATE REQUEST-----",
            description="The certificate signing request, PEM. The private key never leaves.",
        ),
    ]
    not_after: Annotated[
        int, Field(ge=0, description="When the current certificate expires, epoch ms.")
    ]
    reason: Annotated[
        Literal["expiring", "requested"],
        Field(
            description="expiring: within [uplink] renew_before_days; requested: cmd/cert_renew."
        ),
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusMessage(Message):
    """`status` (retained): online or offline; online carries the alarm picture."""

    stream: ClassVar[str] = "status"
    retain: ClassVar[bool] = True

    state: Annotated[
        Literal["online", "offline"], Field(description="offline is also the last will.")
    ]
    version: Annotated[str, Field(description="The gateway's software version.")]
    boot_id: Annotated[str, Field(min_length=1, description="The kernel's id of this boot.")]
    clock: Annotated[Literal["synced", "unsynced"], Field(description="The clock's state.")]
    active_alarms: Annotated[
        list[AlarmSummary] | SkipJsonSchema[None],
        Field(
            description="In `online` only: every raised or shelved alarm when the gateway "
            "connected (the alarm's id, point, rule, kind, level, state, value, threshold, "
            "raised_ts, acked, shelved_until, ...)."
        ),
    ] = None
    alarms_seq: Annotated[
        Annotated[int, Field(ge=0)] | SkipJsonSchema[None],
        Field(
            description="In `online` only: the `alarms` stream's seq the snapshot is current "
            "to; apply alarm events with a larger seq on top of it."
        ),
    ] = None
    shutdown_orders: Annotated[
        list[OrderSummary] | SkipJsonSchema[None],
        Field(
            description="In `online` only: the shutdown orders the gateway keeps (pending, in "
            "force, ended or cancelled in the last week); republished when one changes."
        ),
    ] = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state,
            "version": self.version,
            "boot_id": self.boot_id,
            "clock": self.clock,
        }
        if self.active_alarms is not None:
            body["active_alarms"] = [
                _summary(dict(alarm), _ALARM_SUMMARY_KEYS) for alarm in self.active_alarms
            ]
        if self.alarms_seq is not None:
            body["alarms_seq"] = self.alarms_seq
        if self.shutdown_orders is not None:
            body["shutdown_orders"] = [_order_summary(dict(o)) for o in self.shutdown_orders]
        return body


class StreamBacklog(TypedDict):
    """What waits on one stream."""

    depth: Annotated[int, Field(ge=0, description="Messages waiting.")]
    items: NotRequired[
        Annotated[
            int | None,
            Field(
                description="Samples (telemetry) or events waiting.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    oldest_ts: NotRequired[
        Annotated[
            int | None,
            Field(description="Stamp of the oldest waiting.", json_schema_extra=_null_default),
        ]
    ]
    first_seq: NotRequired[
        Annotated[
            int | None,
            Field(description="Seq of the oldest waiting.", json_schema_extra=_null_default),
        ]
    ]
    last_seq: NotRequired[
        Annotated[
            int | None,
            Field(description="Seq of the newest waiting.", json_schema_extra=_null_default),
        ]
    ]
    seq: NotRequired[
        Annotated[
            int | SkipJsonSchema[None],
            Field(description="Last seq given on the stream.", json_schema_extra=_null_default),
        ]
    ]


class Eviction(TypedDict):
    """Telemetry dropped at the quota, on one stream."""

    messages: Annotated[int, Field(description="Messages evicted.")]
    items: Annotated[int, Field(description="Samples evicted.")]
    last_seq_range: NotRequired[
        Annotated[
            tuple[int, int] | SkipJsonSchema[None],
            Field(
                description="First and last seq of the last eviction.",
                json_schema_extra=_null_default,
            ),
        ]
    ]


class Backlog(TypedDict):
    """The store's backlog, for `health`."""

    streams: Annotated[dict[str, StreamBacklog], Field(description="Per stream.")]
    bytes: Annotated[int, Field(ge=0, description="Store file and its WAL on disk.")]
    used_bytes: NotRequired[
        Annotated[
            int | SkipJsonSchema[None],
            Field(description="Pages in use.", json_schema_extra=_null_default),
        ]
    ]
    quota_bytes: NotRequired[
        Annotated[
            int | SkipJsonSchema[None],
            Field(description="The quota.", json_schema_extra=_null_default),
        ]
    ]
    evictions: Annotated[dict[str, Eviction], Field(description="Per stream.")]
    recovered: NotRequired[
        Annotated[
            dict[str, Any] | SkipJsonSchema[None],
            Field(
                description="Present after a damaged store was moved aside at start.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    failing: NotRequired[
        Annotated[
            bool | SkipJsonSchema[None],
            Field(
                description="The store cannot commit (a disk error); it keeps retrying.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    kept: NotRequired[
        Annotated[
            dict[str, dict[str, int]] | SkipJsonSchema[None],
            Field(
                description="Sent messages kept for cmd/resend ([store] keep_sent), per "
                "stream: count, first_seq, last_seq.",
                json_schema_extra=_null_default,
            ),
        ]
    ]


class Disk(TypedDict):
    """The store's filesystem."""

    total_bytes: NotRequired[
        Annotated[
            int | SkipJsonSchema[None],
            Field(description="Size.", json_schema_extra=_null_default),
        ]
    ]
    free_bytes: NotRequired[
        Annotated[
            int | SkipJsonSchema[None],
            Field(description="Free space.", json_schema_extra=_null_default),
        ]
    ]


class Cpu(TypedDict):
    """Load of the box."""

    load1: NotRequired[
        Annotated[
            float | SkipJsonSchema[None],
            Field(description="1-minute load.", json_schema_extra=_null_default),
        ]
    ]
    load5: NotRequired[
        Annotated[
            float | SkipJsonSchema[None],
            Field(description="5-minute load.", json_schema_extra=_null_default),
        ]
    ]
    cores: NotRequired[
        Annotated[int | None, Field(description="CPU cores.", json_schema_extra=_null_default)]
    ]


class FailedPart(TypedDict):
    """A part of the gateway that failed and is being restarted."""

    error: Annotated[str, Field(description="Its last error.")]
    ts: Annotated[int, Field(description="When, UTC epoch ms.")]
    count: Annotated[int, Field(ge=1, description="How many times it failed.")]


class HealthBody(TypedDict):
    """`health` (QoS 0, retained): a snapshot of the gateway's state."""

    backlog: Annotated[Backlog, Field(description="The store's backlog.")]
    disk: Annotated[Disk, Field(description="The store's filesystem.")]
    cpu: Annotated[Cpu, Field(description="Load of the box.")]
    uplink: Annotated[dict[str, Any], Field(description="Broker, connects, published, acked.")]
    clock: Annotated[Literal["synced", "unsynced"], Field(description="The clock's state.")]
    devices: NotRequired[
        Annotated[
            dict[str, dict[str, Any]] | SkipJsonSchema[None],
            Field(
                description="Per-device communication state, from the poller.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    active_alarms: NotRequired[
        Annotated[
            Annotated[int, Field(ge=0)] | SkipJsonSchema[None],
            Field(
                description="How many alarms are raised or shelved.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    failed_parts: NotRequired[
        Annotated[
            dict[str, FailedPart] | SkipJsonSchema[None],
            Field(
                description="Parts of the gateway that failed and are being restarted, by "
                "name: error, ts, count.",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    uptime_s: NotRequired[
        Annotated[
            Annotated[int, Field(ge=0)] | SkipJsonSchema[None],
            Field(description="Seconds since the daemon started.", json_schema_extra=_null_default),
        ]
    ]
    software: NotRequired[
        Annotated[
            dict[str, Any] | SkipJsonSchema[None],
            Field(
                description="What runs, as `watchpost version --json` prints it: version, "
                "package architecture, bundled libraries, the model's id, and `update` "
                "(previous version, confirmed version, `rolled_back_from` when a failed update "
                "was rolled back).",
                json_schema_extra=_null_default,
            ),
        ]
    ]
    certificate: NotRequired[
        Annotated[
            dict[str, Any] | SkipJsonSchema[None],
            Field(
                description="Mutual TLS only: the client certificate's `not_after` (epoch ms), "
                "`days_left`, `renewal` (none, pending: a CSR waits for its certificate, "
                "trial: connecting with the new one, retry: the broker did not take it yet and "
                "it is tried again at the next hourly check), `failed_trials` (refused trials "
                "of that certificate; after 3 it is dropped and a new CSR follows) and "
                "`last_error` (why the broker refused a new one).",
                json_schema_extra=_null_default,
            ),
        ]
    ]


# What pydantic's schema says of keys a TypedDict does not name (a TypedDict's body may hold
# annotations only, so the setting is put on the class here).
for _open in (AlarmSummary, OrderSummary, StreamBacklog, Eviction, Backlog, Disk, Cpu, FailedPart):
    setattr(_open, "__pydantic_config__", {"extra": "allow"})  # noqa: B010
setattr(SampleReading, "__pydantic_config__", {"extra": "forbid"})  # noqa: B010
_HEALTH_KEYS = tuple(HealthBody.__annotations__)


@dataclass(frozen=True, slots=True)
class HealthMessage(Message):
    """`health` (QoS 0, retained): a snapshot of the gateway's state (``HealthBody``)."""

    stream: ClassVar[str] = "health"
    qos: ClassVar[int] = 0
    retain: ClassVar[bool] = True
    lenient: ClassVar[bool] = True

    parts: dict[str, Any]

    @classmethod
    def of(cls, parts: dict[str, Any]) -> HealthMessage:
        """The snapshot gathered from the parts (not checked: a part's odd value must not
        cost the whole message)."""
        return cls(parts)

    @classmethod
    def schema_type(cls) -> type:
        return HealthBody

    def body(self) -> dict[str, Any]:
        """The parts, the keys of ``HealthBody`` first."""
        parts = self.parts
        body = {key: parts[key] for key in _HEALTH_KEYS if key in parts}
        body.update((key, value) for key, value in parts.items() if key not in body)
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReply(Message):
    """`cmd/{name}/reply`: the gateway's answer to a command."""

    stream: ClassVar[str] = "reply"
    lenient: ClassVar[bool] = True

    command: Annotated[str, Field(description="The command answered.")]
    id: Annotated[
        Any,
        Field(
            description="The request's id, echoed when it had one.",
            json_schema_extra=_drop_default,
        ),
    ] = ABSENT
    ok: Annotated[bool, Field(description="Whether the command was carried out.")]
    result: Annotated[
        Any,
        Field(description="The command's result, when ok.", json_schema_extra=_drop_default),
    ] = ABSENT
    error: Annotated[
        str | SkipJsonSchema[None] | Absent,
        Field(
            description="Why the command was refused, when not ok.",
            json_schema_extra=_null_default,
        ),
    ] = ABSENT


STREAMS: dict[str, type[Message]] = {
    model.stream: model
    for model in (
        TelemetryBatch,
        AlarmMessage,
        AnomalyMessage,
        EnergyDay,
        CertificateRequest,
        StatusMessage,
        HealthMessage,
        CommandReply,
    )
}
PRIORITY = ("alarms", "anomalies")  # sent ahead of every other stream, in this order
EVICTABLE = frozenset({"telemetry"})  # dropped oldest first at the store's quota


def priority(stream: str) -> tuple[int, str]:
    """Sort key: alarms, then anomalies, then every other stream by name."""
    return (PRIORITY.index(stream) if stream in PRIORITY else len(PRIORITY), stream)


def shift_stamps(stream: str, body: bytes, delta_ms: int) -> bytes:
    """A stored body with its stamps shifted by ``delta_ms`` (the one decode/re-encode)."""
    model = STREAMS.get(stream, Message)
    return _encode(stream, model.shift_stamps(json.loads(body), delta_ms))
