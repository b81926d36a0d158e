"""Every message the gateway sends, as a typed model: the one place the wire format is made.

One model per stream::

    TelemetryBatch   telemetry   stored, committed in batches     QoS 1
    AlarmMessage     alarms      stored, durable at once          QoS 1, sent first
    AnomalyMessage   anomalies   stored, durable at once          QoS 1, sent second
    StatusMessage    status      not stored, retained             QoS 1
    HealthMessage    health      not stored, retained             QoS 0
    CommandReply     reply       not stored, on cmd/{name}/reply  QoS 1

A model holds the *body*: the keys a message carries besides the envelope. The envelope
(``gateway``, ``stream``, ``seq``, ``ts``, and for stored streams ``replay``, ``clock``,
``boot_id``) is made by ``frame`` and nowhere else; the body is encoded once, by
``encode_body``, into the bytes the store keeps. ``frame`` splices the envelope in front of
those bytes when the message leaves, so the bytes stay valid whatever happens meanwhile (a
replay, a clock correction). Only a body stamped before the clock was synchronised is decoded
again, to shift its stamps (``shift_stamps``), once, when it is sent.

The JSON Schemas in ``gateway/schemas/`` are generated from these models (``schemas()``;
``scripts/schemas`` writes them, a test compares them with the committed files).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from pydantic.json_schema import GenerateJsonSchema, SkipJsonSchema
from typing_extensions import TypedDict  # pydantic reads its fields on Python < 3.12

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


# -- the envelope ---------------------------------------------------------------------------


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class Envelope(BaseModel):
    """The keys at the top level of every message, before the body's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: str = Field(pattern=NAME_PATTERN, description="Gateway id, as in the topic.")
    stream: str = Field(description="The stream, the last topic level.")
    seq: int = Field(
        ge=1,
        description="Per-stream sequence number: 1, 2, 3, ... without gaps, surviving restarts.",
    )
    ts: int = Field(ge=0, description="When the message was stamped: UTC epoch milliseconds.")


class StoredEnvelope(Envelope):
    """The envelope of a stored stream: also how it was stamped and whether it is a replay."""

    replay: Literal[True] | SkipJsonSchema[None] = Field(
        default=None,
        description="Present when sent from the backlog after an outage.",
        json_schema_extra=_drop_default,
    )
    clock: Clock | SkipJsonSchema[None] = Field(
        default=None,
        description="Absent: stamped with a synchronised clock. unsynced: stamped before the "
        "clock was synchronised and never corrected (ts are ordered within boot_id but not "
        "real UTC). corrected: stamped unsynced, shifted to UTC once the clock synchronised.",
        json_schema_extra=_drop_default,
    )
    boot_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="With clock=unsynced: the boot whose monotonic clock made the stamps.",
        json_schema_extra=_drop_default,
    )


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
    start = json.dumps(head, separators=(",", ":")).encode()
    if body == b"{}":
        return start
    return start[:-1] + b"," + body[1:]


# -- the bodies -----------------------------------------------------------------------------


class Message(BaseModel):
    """The body of one outbound message. Subclasses say which stream carries it and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: ClassVar[str]
    stored: ClassVar[bool] = False  # through the store (at least once), else sent as it is
    durable: ClassVar[bool] = False  # its put returns only once it is fsync'd
    qos: ClassVar[int] = 1
    retain: ClassVar[bool] = False
    stamp_keys: ClassVar[tuple[str, ...]] = ()  # body keys holding epoch-ms stamps
    lenient: ClassVar[bool] = False  # encode what JSON lacks (a path) as text, not an error

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A stored body must not carry a key of the envelope (``frame`` owns them)."""
        super().__pydantic_init_subclass__(**kwargs)
        if cls.stored:
            clash = ENVELOPE_KEYS.intersection(cls.model_fields)
            if clash:
                raise TypeError(TEXT_ENVELOPE.format(model=cls.__name__, keys=sorted(clash)))

    def body(self) -> dict[str, Any]:
        """The body as plain JSON types."""
        return self.model_dump(mode="json")

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
        return json.dumps(
            body,
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
            default=str if lenient else None,
        ).encode()
    except (TypeError, ValueError) as exc:
        raise EncodeError(TEXT_NOT_JSON.format(stream=stream, error=exc)) from exc


@with_config(ConfigDict(extra="forbid"))
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


class TelemetryBatch(Message):
    """`telemetry`: a batch of samples, about one a second, at most 500 samples."""

    stream: ClassVar[str] = "telemetry"
    stored: ClassVar[bool] = True

    samples: list[SampleReading] = Field(
        min_length=1, description="Readings, oldest first per point."
    )

    @classmethod
    def of(cls, samples: list[SampleReading]) -> TelemetryBatch:
        """A batch of readings the poller made (trusted: not validated again, on the hot path)."""
        return cls.model_construct(samples=samples)

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


class AlarmMessage(Message):
    """`alarms`: one transition of one alarm (or one of the gateway's own faults)."""

    stream: ClassVar[str] = "alarms"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("sample_ts", "decided_ts")

    event: AlarmEventName = Field(description="What happened to the alarm.")
    alarm: str = Field(min_length=1, description="Alarm id: point/rule.")
    point: str = Field(min_length=1, description="The point (gateway for the gateway's own).")
    rule: str = Field(min_length=1, description="The rule's name within its point.")
    kind: str = Field(
        min_length=1,
        description="high, low, rate, ... or store_damaged for the gateway's own faults.",
    )
    level: Level = Field(description="prealarm, alarm, critical or fault.")
    value: float | None = Field(description="The value that decided the event.")
    threshold: float | None = Field(description="The rule's threshold, null if it has none.")
    sample_ts: int = Field(ge=0, description="Stamp of the sample that decided, UTC epoch ms.")
    decided_ts: int = Field(ge=0, description="When the gateway decided, UTC epoch ms.")
    # The keys below are not in the schema: v1's schema was published without them, and
    # what it accepts must not change (they are documented in mqtt-contract.md).
    quality: SkipJsonSchema[str | None] = Field(
        default=None, description="The deciding sample's quality."
    )
    active: SkipJsonSchema[bool] = Field(
        default=False, description="The alarm is raised after the event."
    )
    acked: SkipJsonSchema[bool] = Field(
        default=False, description="The alarm is acknowledged after the event."
    )
    shelved: SkipJsonSchema[bool] = Field(
        default=False, description="The alarm is shelved after the event."
    )
    latch: SkipJsonSchema[bool] = Field(
        default=False, description="The rule latches until acknowledged."
    )
    by: SkipJsonSchema[str | None] = Field(
        default=None, description="Who acted (crew and platform actions)."
    )
    note: SkipJsonSchema[str | None] = Field(
        default=None, description="The action's note or reason."
    )
    until: SkipJsonSchema[int | None] = Field(
        default=None, description="A shelf's expiry, UTC epoch ms."
    )
    test: SkipJsonSchema[bool] = Field(
        default=False, description="A test alarm (watchpost test-alarm)."
    )
    detail: SkipJsonSchema[str | None] = Field(
        default=None, description="The reason of an output_fault."
    )
    reason: SkipJsonSchema[str | None] = Field(
        default=None, description="store_damaged: what was wrong with the store."
    )
    moved_to: SkipJsonSchema[str | None] = Field(
        default=None, description="store_damaged: where the damaged file was moved."
    )
    seq_kept: SkipJsonSchema[bool | None] = Field(
        default=None, description="store_damaged: false when the seq counters restarted at 1."
    )
    order: SkipJsonSchema[str | None] = Field(
        default=None,
        description="production_during_shutdown: the id of the shutdown order the site breaks.",
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class AnomalyMessage(Message):
    """`anomalies`: a model's event."""

    # validator built at the first anomaly event: only daemons with a model send one
    model_config = ConfigDict(defer_build=True)

    stream: ClassVar[str] = "anomalies"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("since", "steady_since")

    event: Literal["raised", "cleared", "rebaseline_proposed", "rebaseline"] = Field(
        description="raised or cleared; rebaseline_proposed: the model has stayed raised "
        "while the process held steady at a new level (never applied by itself); "
        "rebaseline: a crew or the platform had the model recalibrate from the next rows."
    )
    model: str = Field(min_length=1, description="The model entry's name.")
    score: float | None = Field(
        default=None, description="The score that decided (not on rebaseline)."
    )
    threshold: float | None = Field(
        default=None, description="The model's decision threshold (not on rebaseline)."
    )
    points: list[str] = Field(
        min_length=1,
        description="The points involved, strongest first; on rebaseline: the model's points.",
    )
    since: int | None = Field(
        default=None,
        description="raised, cleared, rebaseline_proposed: when the event began (its first "
        "row above the threshold), UTC epoch ms.",
    )
    steady_since: int | None = Field(
        default=None,
        description="rebaseline_proposed: since when the levels have held steady, UTC epoch ms.",
    )
    by: str | None = Field(
        default=None, max_length=100, description="rebaseline: who asked for it."
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class AlarmSummary(BaseModel):
    """One raised or shelved alarm in an `online` status."""

    model_config = ConfigDict(extra="allow")

    alarm: str = Field(description="Alarm id.")
    point: str = Field(description="The point.")
    level: str = Field(description="The alarm's level.")
    state: str = Field(description="The alarm's state.")


class OrderSummary(BaseModel):
    """One shutdown order in an `online` status."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The order's id, as the platform sent it.")
    start: int = Field(description="When the shutdown begins, UTC epoch ms.")
    end: int = Field(description="When it ends, UTC epoch ms.")
    reason: str = Field(description="Why, as the platform sent it.")
    state: Literal["pending", "in_force", "ended", "cancelled"] = Field(
        description="The order's state when the status was published."
    )
    received_ts: int = Field(description="When the gateway accepted it, UTC epoch ms.")
    cancelled_ts: int | None = Field(
        default=None, description="When it was cancelled; absent or null if it was not."
    )


class EnergyDay(Message):
    """`energy`: the daily figure of one meter energy point (a DL/T 645 energy DI): the
    reading at the start of a local day and at the start of the next, and the day's energy."""

    # validator built at the first daily figure: only daemons with energy points send one
    model_config = ConfigDict(defer_build=True)

    stream: ClassVar[str] = "energy"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True
    stamp_keys: ClassVar[tuple[str, ...]] = ("start_ts", "end_ts")

    point: str = Field(min_length=1, description="The energy point.")
    unit: str = Field(description="Its unit (kWh, kvarh, kVAh).")
    day: str = Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="The gateway's local date (YYYY-MM-DD) the figure is for.",
    )
    start: float = Field(description="The reading at the day's start (the first of the day).")
    start_ts: int = Field(ge=0, description="When it was read, UTC epoch ms.")
    end: float = Field(description="The reading at the next day's start.")
    end_ts: int = Field(ge=0, description="When it was read, UTC epoch ms.")
    energy: float | None = Field(
        description="end - start: the day's energy; null when the reading went down (a new "
        "meter, a register that rolled over)."
    )
    complete: bool = Field(
        description="Both readings were taken within 15 minutes of their midnights; false for "
        "the day the gateway started in or a day with a gap over midnight."
    )


class CertificateRequest(Message):
    """`csr`: the gateway made a new key because its client certificate expires soon, and
    asks the platform to sign this CSR; the platform answers with `cmd/cert_install`."""

    # validator built when a certificate is renewed, not at start
    model_config = ConfigDict(defer_build=True)

    stream: ClassVar[str] = "csr"
    stored: ClassVar[bool] = True
    durable: ClassVar[bool] = True

    csr: str = Field(
        pattern=r"^-----BEGIN CERTIFICATE REQUEST-----",
        description="The certificate signing request, PEM. The private key never leaves.",
    )
    not_after: int = Field(ge=0, description="When the current certificate expires, epoch ms.")
    reason: Literal["expiring", "requested"] = Field(
        description="expiring: within [uplink] renew_before_days; requested: cmd/cert_renew."
    )


class StatusMessage(Message):
    """`status` (retained): online or offline; online carries the alarm picture."""

    stream: ClassVar[str] = "status"
    retain: ClassVar[bool] = True

    state: Literal["online", "offline"] = Field(description="offline is also the last will.")
    version: str = Field(description="The gateway's software version.")
    boot_id: str = Field(min_length=1, description="The kernel's id of this boot.")
    clock: Literal["synced", "unsynced"] = Field(description="The clock's state.")
    active_alarms: list[AlarmSummary] | SkipJsonSchema[None] = Field(
        default=None,
        description="In `online` only: every raised or shelved alarm when the gateway "
        "connected (the alarm's id, point, rule, kind, level, state, value, threshold, "
        "raised_ts, acked, shelved_until, ...).",
    )
    alarms_seq: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None,
        description="In `online` only: the `alarms` stream's seq the snapshot is current to; "
        "apply alarm events with a larger seq on top of it.",
    )
    shutdown_orders: list[OrderSummary] | SkipJsonSchema[None] = Field(
        default=None,
        description="In `online` only: the shutdown orders the gateway keeps (pending, in "
        "force, ended or cancelled in the last week); republished when one changes.",
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class StreamBacklog(BaseModel):
    """What waits on one stream."""

    model_config = ConfigDict(extra="allow")

    depth: int = Field(ge=0, description="Messages waiting.")
    items: int | None = Field(default=None, description="Samples (telemetry) or events waiting.")
    oldest_ts: int | None = Field(default=None, description="Stamp of the oldest waiting.")
    first_seq: int | None = Field(default=None, description="Seq of the oldest waiting.")
    last_seq: int | None = Field(default=None, description="Seq of the newest waiting.")
    seq: int | SkipJsonSchema[None] = Field(
        default=None, description="Last seq given on the stream."
    )


class Eviction(BaseModel):
    """Telemetry dropped at the quota, on one stream."""

    model_config = ConfigDict(extra="allow")

    messages: int = Field(description="Messages evicted.")
    items: int = Field(description="Samples evicted.")
    last_seq_range: tuple[int, int] | SkipJsonSchema[None] = Field(
        default=None, description="First and last seq of the last eviction."
    )


class Backlog(BaseModel):
    """The store's backlog, for `health`."""

    model_config = ConfigDict(extra="allow")

    streams: dict[str, StreamBacklog] = Field(description="Per stream.")
    bytes: int = Field(ge=0, description="Store file and its WAL on disk.")
    used_bytes: int | SkipJsonSchema[None] = Field(default=None, description="Pages in use.")
    quota_bytes: int | SkipJsonSchema[None] = Field(default=None, description="The quota.")
    evictions: dict[str, Eviction] = Field(description="Per stream.")
    recovered: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, description="Present after a damaged store was moved aside at start."
    )
    failing: bool | SkipJsonSchema[None] = Field(
        default=None, description="The store cannot commit (a disk error); it keeps retrying."
    )
    kept: dict[str, dict[str, int]] | SkipJsonSchema[None] = Field(
        default=None,
        description="Sent messages kept for cmd/resend ([store] keep_sent), per stream: "
        "count, first_seq, last_seq.",
    )


class Disk(BaseModel):
    """The store's filesystem."""

    model_config = ConfigDict(extra="allow")

    total_bytes: int | SkipJsonSchema[None] = Field(default=None, description="Size.")
    free_bytes: int | SkipJsonSchema[None] = Field(default=None, description="Free space.")


class Cpu(BaseModel):
    """Load of the box."""

    model_config = ConfigDict(extra="allow")

    load1: float | SkipJsonSchema[None] = Field(default=None, description="1-minute load.")
    load5: float | SkipJsonSchema[None] = Field(default=None, description="5-minute load.")
    cores: int | None = Field(default=None, description="CPU cores.")


class FailedPart(BaseModel):
    """A part of the gateway that failed and is being restarted."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Its last error.")
    ts: int = Field(description="When, UTC epoch ms.")
    count: int = Field(ge=1, description="How many times it failed.")


class HealthMessage(Message):
    """`health` (QoS 0, retained): a snapshot of the gateway's state."""

    model_config = ConfigDict(extra="allow", frozen=True)

    stream: ClassVar[str] = "health"
    qos: ClassVar[int] = 0
    retain: ClassVar[bool] = True
    lenient: ClassVar[bool] = True

    backlog: Backlog = Field(description="The store's backlog.")
    disk: Disk = Field(description="The store's filesystem.")
    cpu: Cpu = Field(description="Load of the box.")
    uplink: dict[str, Any] = Field(description="Broker, connects, published, acked.")
    clock: Literal["synced", "unsynced"] = Field(description="The clock's state.")
    devices: dict[str, dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None, description="Per-device communication state, from the poller."
    )
    active_alarms: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None, description="How many alarms are raised or shelved."
    )
    failed_parts: dict[str, FailedPart] | SkipJsonSchema[None] = Field(
        default=None,
        description="Parts of the gateway that failed and are being restarted, by name: "
        "error, ts, count.",
    )
    uptime_s: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None, description="Seconds since the daemon started."
    )
    software: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        description="What runs, as `watchpost version --json` prints it: version, package "
        "architecture, bundled libraries, the model's id, and `update` (previous version, "
        "confirmed version, `rolled_back_from` when a failed update was rolled back).",
    )
    certificate: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        description="Mutual TLS only: the client certificate's `not_after` (epoch ms), "
        "`days_left`, `renewal` (none, pending: a CSR waits for its certificate, trial: "
        "connecting with the new one, retry: the broker did not take it yet and it is tried "
        "again at the next hourly check), `failed_trials` (refused trials of that certificate; "
        "after 3 it is dropped and a new CSR follows) and `last_error` (why the broker refused "
        "a new one).",
    )

    @classmethod
    def of(cls, parts: dict[str, Any]) -> HealthMessage:
        """The snapshot gathered from the parts (not validated: a part's odd value must not
        cost the whole message)."""
        return cls.model_construct(**parts)

    def body(self) -> dict[str, Any]:
        given = self.model_fields_set
        return {k: v for k, v in self.__dict__.items() if k in given} | dict(
            self.__pydantic_extra__ or {}
        )


class CommandReply(Message):
    """`cmd/{name}/reply`: the gateway's answer to a command."""

    # validator built at the first command reply, not at start
    model_config = ConfigDict(defer_build=True)

    stream: ClassVar[str] = "reply"
    lenient: ClassVar[bool] = True

    command: str = Field(description="The command answered.")
    id: Any = Field(
        default=None,
        description="The request's id, echoed when it had one.",
        json_schema_extra=_drop_default,
    )
    ok: bool = Field(description="Whether the command was carried out.")
    result: Any = Field(
        default=None,
        description="The command's result, when ok.",
        json_schema_extra=_drop_default,
    )
    error: str | SkipJsonSchema[None] = Field(
        default=None, description="Why the command was refused, when not ok."
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


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


# -- the JSON Schemas -----------------------------------------------------------------------


class _NoFieldTitles(GenerateJsonSchema):
    """Schemas for people: a field's name is its title, so none is repeated."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def stream_schema(model: type[Message]) -> dict[str, Any]:
    """The JSON Schema of a stream's messages: its envelope, then its body's keys.

    The model forbids keys it does not know; the schema allows them, because the contract
    lets new optional keys appear in v1 (platforms ignore what they do not know).
    """
    envelope = StoredEnvelope if model.stored else Envelope
    head = envelope.model_json_schema(schema_generator=_NoFieldTitles)
    body = model.model_json_schema(schema_generator=_NoFieldTitles)
    properties = dict(head["properties"])
    properties["stream"] = {
        "const": model.stream,
        "description": properties["stream"]["description"],
    }
    properties.update(body["properties"])
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}{model.stream}.json",
        "title": f"watchpost/v1/{{site}}/{{gateway}}/{model.stream}",
        "description": body.get("description", ""),
        "type": "object",
        "required": [*head["required"], *body.get("required", [])],
        "properties": properties,
        "additionalProperties": True,
    }
    if model.stored:
        schema["dependentRequired"] = {"boot_id": ["clock"]}
    if "$defs" in body:
        schema["$defs"] = body["$defs"]
    return schema


def command_schema(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a command's request."""
    schema = model.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}cmd-{name}.json",
        "title": schema.pop("title"),
    } | schema


def schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by file name: the streams', then the commands'."""
    from watchpost.commands import COMMANDS  # noqa: PLC0415 - the daemon's side, only here

    out = {f"{model.stream}.json": stream_schema(model) for model in STREAMS.values()}
    out.update(
        {f"cmd-{name}.json": command_schema(name, model) for name, model in COMMANDS.items()}
    )
    return out


def render(schema: dict[str, Any]) -> str:
    """A schema as it is committed: indented by two, UTF-8, one newline at the end."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m watchpost.messages [--check] [FOLDER]``: write (or compare) the schemas."""
    parser = argparse.ArgumentParser(description="Write the JSON Schemas of the MQTT contract.")
    parser.add_argument("folder", nargs="?", type=Path, default=SCHEMA_FOLDER)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name, schema in schemas().items():
        path = args.folder / name
        text = render(schema)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "differ from the models" if args.check else "written"
    for name in stale:
        print(f"{args.folder / name}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
