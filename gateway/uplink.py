"""MQTT uplink to the platform (paho-mqtt): sends what the store holds, in order.

One connection at a time, to the primary broker or, when it cannot be reached or does not
deliver, to each backup in turn (``failover.BrokerChoice`` decides which, and when to go
back); between rounds the delay ``reconnect.ReconnectPolicy`` gives. On every connection:
the store drained oldest first per stream, alarms and anomalies ahead of everything else,
and the retained `status` (``online``; the last will says ``offline``) right after the
waiting alarms and anomalies, in the same burst, so that a broker that drops the link after
its first PUBACK still lets an alarm through. A row leaves the store only on the broker's
PUBACK; what was in flight when a link died is sent again on the next one (the platform
drops the duplicates by ``seq``). Messages that were stored before the connection came up
carry ``"replay": true``.

A broker that takes messages but does not acknowledge them is noticed: when a message has
waited ``ack_timeout`` seconds for its PUBACK and nothing else was acknowledged meanwhile,
the connection is dropped and counts as broken (the messages stay in the store).

Everything it sends comes from the outbox (``outbox.py``), framed there. A live message
reaches the uplink straight from the store's writer as it is committed (``Outbox.follow``);
only a backlog (after a connect, or when the uplink fell behind) is read back from SQLite.
paho's network loop runs on the event loop (``paho_loop.PahoOnLoop``): its socket is
registered with the loop, so a PUBLISH is written and its PUBACK read without a thread in
between. Nothing here blocks the loop: SQLite reads and paho's connect (DNS, TCP, TLS) run
in worker threads. Timeouts use ``asyncio.timeout``: Python 3.11's
``wait_for`` can swallow a cancellation that arrives as its awaitable completes, which
would leave the uplink running after the daemon asked it to stop.

Exceptions::

    UplinkError               base class
     └── ConnectError         a broker refused or could not be reached; retrying may help
                              (``run`` retries by itself, the error is only logged)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import shutil
import sqlite3
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from watchpost import messages
from watchpost.broker_probe import apply_security, explain_error, explain_refusal
from watchpost.certrenew import ClientCertificates
from watchpost.clock import wall_ms
from watchpost.command_auth import MAX_ID_LENGTH, TEXT_RETAINED
from watchpost.commands import MAX_COMMAND_BYTES, TEXT_TOO_LARGE, CommandError
from watchpost.failover import BrokerChoice, Outcome
from watchpost.messages import CommandReply, HealthMessage, StatusMessage
from watchpost.outbox import Outbox, Outgoing
from watchpost.paho_loop import PahoOnLoop
from watchpost.reconnect import Failure, ReconnectPolicy, refusal, worst
from watchpost.settings import BrokerAddress, UplinkConfig
from watchpost.ticks import sleep_to_tick

if TYPE_CHECKING:
    from watchpost.clock import Clock
    from watchpost.store import StoredRow

log = logging.getLogger(__name__)

TEXT_CONNECTED = _("connected to %s:%d (%s)")
TEXT_CONNECT_FAILED = _("cannot connect to %s:%d: %s (retrying)")
TEXT_LOST = _("lost the connection to %s:%d: %s; %d message(s) in flight will be sent again")
TEXT_NO_CONNACK = _("no answer to CONNECT within {seconds:g} s")
TEXT_STORE_UNREADABLE = _("cannot read the store (%s); reconnecting after a pause")
TEXT_DISCONNECT_FAILED = _("disconnecting from %s:%d failed (%s); the link is dropped anyway")
TEXT_GOODBYE_FAILED = (
    "could not say offline at shutdown (%s); the platform learns it from the last will"
)
TEXT_HEALTH_FAILED = _("cannot gather the health message; skipping this one")
TEXT_UNKNOWN_COMMAND = "unknown command {name!r}"
TEXT_BAD_COMMAND = "the command's payload is not a JSON object"
TEXT_COMMAND_FAILED = _("command %s failed")
TEXT_COMMAND_REFUSED = _("command %s (id %s) refused: %s")
TEXT_BAD_REPLY = _("the reply cannot be encoded")
TEXT_FOLLOW_REFERENCE = _("the broker sent the gateway to %s, a configured broker: going there")
TEXT_NOT_A_COMMAND = _("ignored a message on %s: commands come under %s<name> only")
TEXT_NO_PUBACK = _("no PUBACK within {seconds:g} s")
TEXT_NOTHING_MOVED = _("the link was lost before any message was acknowledged")
TEXT_SHORT_LINKS = _("the link was lost within a keepalive period several times in a row")
TEXT_BROKEN = _(
    "%s accepted the gateway but does not deliver (%s): trying %s now, and %s again in %d s"
)
TEXT_BROKEN_WAIT = _(
    "%s accepted the gateway but does not deliver (%s); trying again after a pause"
)
TEXT_BACK_ON_PRIMARY = _("back on the primary MQTT server %s")
TEXT_FAILBACK = _("trying the primary MQTT server %s again: leaving %s:%d")
TEXT_FAILBACK_REASON = _("going back to the primary")
TEXT_LEFT = _("left %s:%d (%s); %d message(s) in flight will be sent again")

PARSE_LIMIT = 1024 * 1024  # bytes of a command read at most, to answer it with its id
PRIORITY_SLOTS = 8  # in-flight slots that only alarms and anomalies may use
FETCH_ROWS = 256
MAX_RESEND_QUEUED = 100_000  # sent rows asked for again (cmd/resend) and not yet sent

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class UplinkError(Exception):
    """Base of the uplink's errors."""


class ConnectError(UplinkError):
    """A broker refused or could not be reached; retrying may help (``failure`` says when).

    ``code`` is the broker's CONNACK reason code where it gave one; ``server`` the MQTT 5
    server reference it named with "use another server" or "server moved".
    """

    def __init__(
        self,
        message: str,
        failure: Failure,
        *,
        code: int | None = None,
        server: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.code = code
        self.server = server


@dataclass(slots=True)
class _Link:
    """The state of one connection; thrown away with it."""

    client: mqtt.Client
    address: BrokerAddress
    connack: asyncio.Future[int]
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    on_trial: bool = False  # presents a renewed client certificate for the first time
    code: int | None = None  # the CONNACK's or the broker's DISCONNECT's reason code
    server: str | None = None  # MQTT 5 server reference with "use another server"
    up: bool = False  # CONNACK said yes
    moved: bool = False  # the broker acknowledged a publish on this link: it delivers
    leaving: bool = False  # the gateway ends this link itself (failback, new certificate)
    ack_late: bool = False  # a PUBACK did not come within ack_timeout
    online_seq: int | None = None  # the `online` status still to publish, after the alarms
    offline_seq: int = 0  # the last will's seq, for a clean goodbye
    failback_at: float | None = None  # monotonic: leave this backup for the primary
    inflight: dict[int, Outgoing] = field(default_factory=dict)
    unacked: dict[int, float] = field(default_factory=dict)  # QoS 1 mid -> sent (monotonic)
    last_ack: float = 0.0  # monotonic: the last PUBACK, or the CONNACK
    acked: list[int] = field(default_factory=list)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    watermark: int = 0  # rows up to this id were stored before the link: replays
    io: PahoOnLoop | None = None  # drives paho's socket once connected
    queues: dict[str, _StreamQueue] = field(default_factory=dict)
    resend: deque[Outgoing] = field(default_factory=deque)  # cmd/resend, read and framed


@dataclass(slots=True)
class _StreamQueue:
    """What one stream has ready to send on one link.

    ``live``: every committed row up to ``last_id`` is known, so rows committed from now on
    are appended as the writer hands them over; otherwise the next rows are read from the
    store. While a read is under way, rows handed over are kept in ``arrived``.
    """

    ready: deque[Outgoing] = field(default_factory=deque)
    last_id: int = 0
    live: bool = False
    reading: bool = False
    arrived: list[StoredRow] = field(default_factory=list)


class Uplink:
    """Connects, keeps `status` retained, drains the store, takes commands."""

    def __init__(
        self,
        config: UplinkConfig,
        outbox: Outbox,
        *,
        site: str,
        gateway: str,
        version: str,
        boot_id: str,
        health: Callable[[], dict[str, Any]],
        clock: Clock | None = None,
        alarm_snapshot: Callable[[], dict[str, Any]] | None = None,
        certificates: ClientCertificates | None = None,
    ) -> None:
        self.config = config
        self._alarm_snapshot = alarm_snapshot
        self.certificates = certificates  # which client certificate to present (mutual TLS)
        self.outbox = outbox
        self.store = outbox.store
        self.site = site
        self.gateway = gateway
        self.version = version
        self.boot_id = boot_id
        self.root = f"watchpost/v1/{site}/{gateway}/"
        self._health = health
        self._clock = clock
        self._commands: dict[str, Handler] = {}
        self._link: _Link | None = None
        self.last_error: str | None = None  # why the last connection failed or ended
        self._policy = ReconnectPolicy(
            spread=config.reconnect_spread, initial=config.reconnect_min, cap=config.reconnect_max
        )
        self._choice = BrokerChoice(
            [f"{a.host}:{a.port}" for a in config.addresses()],
            failback_after=config.failback_after,
        )
        self._on_backup = False  # the last connection that came up was to a backup
        self._left_primary_at: int | None = None  # epoch ms, for `health`
        self._ignored_topics: set[str] = set()  # logged once each
        self._kick = asyncio.Event()
        self._status_seqs: tuple[int, int] | None = None
        self._resend: deque[int] = deque()  # rows of the store's `sent` to send again
        self._password = (
            config.password_file.read_text(encoding="utf-8").strip()
            if config.password_file is not None
            else None
        )
        self.stats: dict[str, Any] = {
            "connects": 0,
            "disconnects": 0,
            "published": 0,
            "acked": 0,
            "resent": 0,
            "health_sent": 0,  # the update guard waits for the first (packaging/debian)
            "broker": None,
            "broker_role": None,
            "failover": None,
            "connected_since": None,
        }

    # -- public --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a broker has accepted the current connection and it is not known dead."""
        link = self._link
        return link is not None and link.up and not link.lost.is_set()

    def on_command(self, name: str, handler: Handler) -> None:
        """Serve ``cmd/{name}``: ``handler(request) -> reply`` (plain or async), the reply
        published on ``cmd/{name}/reply``."""
        self._commands[name] = handler

    async def run(self) -> None:
        """Until cancelled: connect, publish `status`, drain the store, reconnect."""
        loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()

        loop_thread = threading.get_ident()

        def on_commit(rows: list[StoredRow]) -> None:
            if threading.get_ident() == loop_thread:  # the loop committed an alarm burst
                self._on_store_commit(rows)
                return
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(self._on_store_commit, rows)

        unfollow = self.outbox.follow(on_commit)
        try:
            async with asyncio.TaskGroup() as group:
                if self._clock is not None and not self._clock.synced:
                    group.create_task(
                        self._clock.watch(self.store, on_change=self._clock_synced),
                        name="clock-watch",
                    )
                group.create_task(self._connect_forever(), name="uplink-connect")
                group.create_task(self._health_loop(), name="uplink-health")
        finally:
            unfollow()

    def resend(self, ids: list[int]) -> bool:
        """Send these sent rows again (cmd/resend), framed as replays, after every live
        stream; False, and nothing queued, when too many already wait."""
        if len(self._resend) + len(ids) > MAX_RESEND_QUEUED:
            return False
        self._resend.extend(ids)
        self._kick.set()
        return True

    def reconnect(self) -> None:
        """End the current connection (cleanly) so that the next one starts at once, e.g. with
        a renewed client certificate."""
        link = self._link
        if link is not None and link.up:
            link.leaving = True
            link.client.disconnect()

    def topic(self, stream: str) -> str:
        return self.root + stream

    # -- connection ----------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        """Connect, and again after every loss: ``BrokerChoice`` says to which broker,
        ``ReconnectPolicy`` how long to wait between rounds."""
        policy, choice = self._policy, self._choice
        addresses = self.config.addresses()
        index, failures = choice.first(), list[Failure]()
        while True:
            address = addresses[index]
            try:
                outcome, reason = await self._session(address, index)
            except ConnectError as exc:
                self._refused(exc, address, index)
                failures.append(exc.failure)
                referred = _referred(exc.server, addresses) if exc.server else None
                if referred is not None and referred != index:
                    log.warning(TEXT_FOLLOW_REFERENCE, exc.server)
                    index = referred
                    continue
                following, _ = choice.after(index, Outcome.REFUSED, str(exc))
                if following is not None:
                    index = following  # the next backup, at once
                    continue
                delay = policy.after_failure(worst(failures))
            except sqlite3.Error as exc:  # the store could not be read: try again later
                log.error(TEXT_STORE_UNREADABLE, exc)
                delay = policy.after_failure(Failure.DROPPED)
            else:
                following, broken = choice.after(index, outcome, reason)
                if broken:
                    self._judged_broken(index, reason, following)
                if following is not None:
                    failures.append(Failure.DROPPED)
                    index = following
                    await asyncio.sleep(policy.moving_on())  # a fleet does not arrive at once
                    continue
                if outcome is Outcome.LEFT:
                    delay = policy.at_once()
                elif outcome in (Outcome.GOOD, Outcome.SHORT):
                    # a link that carried data was good: come back soon
                    delay = policy.after_session()
                else:  # lost before any PUBACK, or a PUBACK did not come: back off
                    delay = policy.after_failure(Failure.DROPPED)
            failures = []
            await asyncio.sleep(delay)
            index = choice.first()

    def _refused(self, exc: ConnectError, address: BrokerAddress, index: int) -> None:
        """Note an attempt that gave no connection: its reason, the certificate on trial, and
        a closed port (the links lost before were the broker's restart, not flapping)."""
        self.last_error = str(exc)
        if self.certificates is not None and self.certificates.trial is not None:
            # a broker that was not there did not judge the certificate
            reached = exc.failure is not Failure.UNREACHABLE
            self.certificates.trial_ended(accepted=False, reason=str(exc), counted=reached)
        self._note_refusal(exc)
        log.warning(TEXT_CONNECT_FAILED, address.host, address.port, exc)
        if exc.failure is Failure.UNREACHABLE:
            self._choice.went_down(index)

    def _judged_broken(self, index: int, reason: str, following: int | None) -> None:
        """Log, once per verdict, that a broker took the gateway but did not deliver."""
        choice = self._choice
        if following is None:
            log.warning(TEXT_BROKEN_WAIT, choice.label(index), reason)
            return
        log.warning(
            TEXT_BROKEN,
            choice.label(index),
            reason,
            choice.label(following),
            choice.label(index),
            round(choice.retry_in(index)),
        )

    def _note_refusal(self, exc: ConnectError) -> None:
        if exc.code is not None:
            self.stats["last_refusal"] = {"code": exc.code, "reason": str(exc), "ts": self._now()}

    async def _session(self, address: BrokerAddress, index: int) -> tuple[Outcome, str]:
        """One connection, from CONNECT to its loss; ConnectError if it never came up.

        Returns how it ended (``failover.Outcome``) and why: GOOD if the broker acknowledged
        a publish and the link lasted a keepalive period, or stayed up that long; SHORT if it
        acknowledged something but the link was lost sooner; BROKEN if it was lost before any
        PUBACK or a PUBACK came too late;
        LEFT if the gateway ended it itself.
        """
        if self._status_seqs is None:
            first = await self.outbox.reserve("status", 2)
            self._status_seqs = (first, first + 1)  # online now, offline (the will) later
        online_seq, offline_seq = self._status_seqs
        loop = asyncio.get_running_loop()
        link = _Link(self._client(address, offline_seq), address, loop.create_future())
        link.offline_seq = offline_seq
        link.on_trial = self.certificates is not None and self.certificates.trial is not None
        self._wire(link, loop)
        keepalive = max(1, self.config.keepalive // 2)  # ping at K/2: a silent link dies by 1.5K
        try:
            async with asyncio.timeout(self.config.connect_timeout + 1):  # paho's fires first
                await asyncio.to_thread(self._connect, link.client, address, keepalive)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            failure = Failure.REFUSED if isinstance(exc, ssl.SSLError) else Failure.UNREACHABLE
            raise ConnectError(explain_error(exc, self.config, address), failure) from exc
        self._policy.connecting()  # it reached the listener: counts towards flapping
        io = PahoOnLoop(link.client, loop)  # paho's network loop, on ours
        try:
            io.start()
        except ConnectionError as exc:  # closed while CONNECT went out: no CONNACK will come
            raise ConnectError(
                explain_refusal(-1, str(exc), self.config, address), refusal(-1)
            ) from exc
        link.io = io
        self._link = link
        try:
            await self._accepted(link, index)
            started = link.last_ack = time.monotonic()
            link.failback_at = self._choice.failback_at(index, started)
            # subscribe first: the broker handles our packets in order, so a platform that
            # sees `online` can send a command at once and it will be delivered. `online`
            # itself goes out with the first burst, right after the waiting alarms.
            link.client.subscribe(self.root + "cmd/+", qos=1)
            link.online_seq = online_seq
            try:
                await self._drain(link)
            except asyncio.CancelledError:
                await self._goodbye(link, offline_seq)
                raise
            self.stats["disconnects"] += 1
            self.last_error = link.reason
            if link.leaving:
                log.info(TEXT_LEFT, address.host, address.port, link.reason, len(link.inflight))
                return Outcome.LEFT, link.reason
            log.warning(TEXT_LOST, address.host, address.port, link.reason, len(link.inflight))
            if link.code is not None and refusal(link.code) is Failure.SLOW_DOWN:
                # the broker sent DISCONNECT with "server busy" and the like: back off longer
                raise ConnectError(
                    explain_refusal(link.code, link.reason, self.config, address),
                    Failure.SLOW_DOWN,
                    code=link.code,
                )
            return self._verdict(link, time.monotonic() - started)
        finally:
            self._close(link)

    def _close(self, link: _Link) -> None:
        """The end of a link, however it came: acks handed over, DISCONNECT, socket let go."""
        self._link = None
        link.lost.set()
        self._flush_acks(link)  # PUBACKs that came with the loss: not sent again
        self._requeue_resends(link)
        try:
            link.client.disconnect()
        except Exception as exc:
            log.warning(TEXT_DISCONNECT_FAILED, link.address.host, link.address.port, exc)
        if link.io is not None:
            link.io.stop()

    def _verdict(self, link: _Link, lasted: float) -> tuple[Outcome, str]:
        """How a link the broker ended (or that missed a PUBACK) counts for the failover."""
        if link.ack_late:
            return Outcome.BROKEN, link.reason
        if lasted >= self.config.keepalive:
            return Outcome.GOOD, link.reason
        if link.moved:
            return Outcome.SHORT, TEXT_SHORT_LINKS
        return Outcome.BROKEN, f"{TEXT_NOTHING_MOVED} ({link.reason})"

    async def _accepted(self, link: _Link, index: int) -> None:
        """Wait for the CONNACK; ConnectError unless the broker let the gateway in."""
        address = link.address
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                code = await asyncio.shield(link.connack)
        except TimeoutError as exc:
            raise ConnectError(
                TEXT_NO_CONNACK.format(seconds=self.config.connect_timeout), Failure.SLOW_DOWN
            ) from exc
        if code != 0:
            raise ConnectError(
                explain_refusal(code, link.reason, self.config, address),
                refusal(code),
                code=code if code >= 0 else None,
                server=link.server,
            )
        self._status_seqs = None
        link.up = True
        if link.on_trial and self.certificates is not None:
            self.certificates.trial_ended(accepted=True)
        self.stats.update(
            connects=self.stats["connects"] + 1,
            connected_since=self._now(),
            broker=f"{address.host}:{address.port}",
        )
        self._note_role(index)
        log.warning(
            TEXT_CONNECTED, address.host, address.port, "primary" if index == 0 else "backup"
        )

    def _note_role(self, index: int) -> None:
        """`health.uplink`: which broker, and while on a backup, why and until when."""
        choice = self._choice
        if index == 0:
            if self._on_backup:
                log.warning(TEXT_BACK_ON_PRIMARY, choice.label(0))
            self._on_backup, self._left_primary_at = False, None
            self.stats.update(broker_role="primary", failover=None)
            return
        now = self._now()
        if not self._on_backup:
            self._on_backup, self._left_primary_at = True, now
        retry = choice.failback_at(index, time.monotonic())
        self.stats.update(
            broker_role="backup",
            failover={
                "primary": choice.label(0),
                "reason": choice.last_failure(0),
                "since": self._left_primary_at,
                "primary_retry_ts": now + round(1000 * (retry - time.monotonic()))
                if retry is not None
                else None,
            },
        )

    def _connect(self, client: mqtt.Client, address: BrokerAddress, keepalive: int) -> None:
        """paho's blocking CONNECT (in a worker thread); MQTT 5 with its session expiry."""
        if self.config.protocol == "mqtt5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.config.session_expiry
            client.connect(
                address.host, address.port, keepalive, clean_start=True, properties=properties
            )
        else:
            client.connect(address.host, address.port, keepalive)

    def _client(self, address: BrokerAddress, offline_seq: int) -> mqtt.Client:
        config = self.config
        client_id = config.client_id or f"watchpost-{self.site}-{self.gateway}"
        if config.protocol == "mqtt5":
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=True,
                protocol=MQTTProtocolVersion.MQTTv311,
            )
        client.connect_timeout = config.connect_timeout
        client.max_inflight_messages_set(config.max_inflight)
        pair = self.certificates.for_connect() if self.certificates is not None else None
        apply_security(
            client,
            config,
            address,
            self._password,
            client_pair=(pair.cert, pair.key) if pair else None,
        )
        client.will_set(
            self.topic("status"), self._status_payload("offline", offline_seq), qos=1, retain=True
        )
        return client

    def _wire(self, link: _Link, loop: asyncio.AbstractEventLoop) -> None:
        """paho's callbacks -> the uplink. They run on the event loop (``PahoOnLoop``), inside
        paho's read or write: the uplink takes them up on the loop's next turn, outside paho."""

        def later(function: Callable[..., None], *args: Any) -> None:
            loop.call_soon(function, *args)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, properties: Any) -> None:
            text, server = (
                _reason_string(reason, properties),
                _property(properties, "ServerReference"),
            )
            later(self._on_connack, link, int(reason.value), text, server)

        def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, properties: Any) -> None:
            later(self._on_lost, link, _reason_string(reason, properties), int(reason.value))

        def on_publish(_c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
            later(self._on_puback, link, mid)

        def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
            later(self._on_command_message, link, message.topic, message.payload, message.retain)

        client = link.client
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message

    def _on_connack(self, link: _Link, code: int, reason: str, server: str | None) -> None:
        link.reason, link.code, link.server = reason, code, server
        if not link.connack.done():
            link.connack.set_result(code)

    def _on_lost(self, link: _Link, reason: str, code: int) -> None:
        if link.up or not link.connack.done():  # a refusal's own reason stays the reason
            link.reason = reason
        if link.up and code >= 0x80:  # the broker's DISCONNECT said why (MQTT 5)
            link.code = code
        if not link.connack.done():
            link.connack.set_result(-1)
        link.lost.set()
        self._kick.set()

    def _requeue_resends(self, link: _Link) -> None:
        """Resends the link did not deliver go first on the next one."""
        ids = [out.id for out in link.inflight.values() if out.resend]
        ids.extend(out.id for out in link.resend)
        link.resend.clear()
        self._resend.extendleft(reversed(ids))

    def _on_puback(self, link: _Link, mid: int) -> None:
        if link.unacked.pop(mid, None) is not None:
            link.last_ack = time.monotonic()
            link.moved = True
        row = link.inflight.pop(mid, None)
        if row is not None:
            if not row.resend:  # a resent row is already in `sent`
                link.acked.append(row.id)
            self._flush_acks(link)  # to the store now: it takes them up on its next round
            if self._drain_waits(link):
                self._kick.set()
        waiter = link.waiting.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain_waits(self, link: _Link) -> bool:
        """Whether the drain loop may be waiting for room in the window: rows ready, resends,
        a stream whose backlog is still read from the store. Otherwise a PUBACK does not wake
        it (once a second with nothing to send): the next commit or check will."""
        return bool(link.resend or self._resend) or any(
            q.ready or not q.live for q in link.queues.values()
        )

    def _on_store_commit(self, rows: list[StoredRow]) -> None:
        """Rows the writer just committed: append them where the link is live."""
        link = self._link
        if link is None or not link.up:
            return
        for row in rows:
            queue = link.queues.setdefault(row.stream, _StreamQueue())
            if queue.reading:
                queue.arrived.append(row)
            elif queue.live and row.id > queue.last_id:
                queue.ready.append(self.outbox.frame(row, replay=row.id <= link.watermark))
                queue.last_id = row.id
        self._kick.set()

    # -- draining the store --------------------------------------------------------------------

    async def _drain(self, link: _Link) -> None:
        """Send stored rows until the link dies: alarms and anomalies first, order kept."""
        link.watermark = await asyncio.to_thread(self.store.max_id)  # stored before: replay
        window = self.config.max_inflight
        while not link.lost.is_set():
            self._kick.clear()
            if self._ack_overdue(link) or await self._time_to_leave(link):
                return
            self._flush_acks(link)
            for stream in self.outbox.streams():
                queue = link.queues.setdefault(stream, _StreamQueue())
                if not queue.live and len(queue.ready) < FETCH_ROWS // 2:
                    await self._read_backlog(link, stream, queue)
            if self._resend and len(link.resend) < FETCH_ROWS // 2:
                await self._read_resends(link)
            if not self._send_ready(link, window):
                return
            more = (link.resend or any(q.ready for q in link.queues.values())) and len(
                link.inflight
            ) < window - PRIORITY_SLOTS
            if not more and not self._kick.is_set():
                with contextlib.suppress(TimeoutError):  # woken by the next deadline
                    async with asyncio.timeout(self._next_check(link)):
                        await self._kick.wait()

    def _next_check(self, link: _Link) -> float:
        """Seconds until the drain loop must look again: the PUBACK deadline, the time to
        go back to the primary, and at least once a second."""
        now, wait = time.monotonic(), 1.0
        if link.unacked:
            since = max(link.last_ack, min(link.unacked.values()))
            wait = min(wait, since + self.config.ack_timeout - now)
        if link.failback_at is not None:
            wait = min(wait, link.failback_at - now)
        return max(0.01, wait)

    def _flush_acks(self, link: _Link) -> None:
        """Hand the acknowledged rows to the store, which forgets them in its next commit."""
        if link.acked:
            self.outbox.ack(link.acked)
            self.stats["acked"] += len(link.acked)
            link.acked = []

    def _ack_overdue(self, link: _Link) -> bool:
        """True (and the link judged broken) when a message has waited ``ack_timeout`` for
        its PUBACK and nothing else was acknowledged meanwhile: a broker that takes
        messages and never answers, or a link too slow to be of use."""
        if not link.unacked:
            return False
        since = max(link.last_ack, min(link.unacked.values()))
        if time.monotonic() - since < self.config.ack_timeout:
            return False
        link.ack_late = True
        link.reason = TEXT_NO_PUBACK.format(seconds=self.config.ack_timeout)
        return True

    async def _time_to_leave(self, link: _Link) -> bool:
        """True once a backup has served ``failback_after``: say offline there, then the
        uplink tries its primary again."""
        if link.failback_at is None or time.monotonic() < link.failback_at:
            return False
        log.warning(TEXT_FAILBACK, self._choice.label(0), link.address.host, link.address.port)
        link.leaving = True
        link.reason = TEXT_FAILBACK_REASON
        await self._goodbye(link, link.offline_seq)
        return True

    async def _read_backlog(self, link: _Link, stream: str, queue: _StreamQueue) -> None:
        """Read the next rows of ``stream`` from the store; live once it has no more."""
        queue.reading = True
        try:
            rows = await asyncio.to_thread(
                self.outbox.fetch, stream, queue.last_id, FETCH_ROWS, replay_upto=link.watermark
            )
        finally:
            queue.reading = False
        queue.ready.extend(rows)
        if rows:
            queue.last_id = rows[-1].id
        arrived, queue.arrived = queue.arrived, []
        if len(rows) < FETCH_ROWS:  # caught up: from now on, rows come from the writer
            queue.live = True
            for row in arrived:
                if row.id > queue.last_id:
                    queue.ready.append(self.outbox.frame(row, replay=row.id <= link.watermark))
                    queue.last_id = row.id

    async def _read_resends(self, link: _Link) -> None:
        """Read and frame the next rows asked for again; those no longer kept are skipped
        (the reply to cmd/resend said which were queued)."""
        ids = [self._resend.popleft() for _ in range(min(FETCH_ROWS, len(self._resend)))]
        try:
            rows = await asyncio.to_thread(self.outbox.fetch_sent, ids)
        except BaseException:
            self._resend.extendleft(reversed(ids))
            raise
        link.resend.extend(rows)

    def _send_ready(self, link: _Link, window: int) -> bool:
        """Publish what the window allows; False when the link turned out dead."""
        for stream in sorted(link.queues, key=messages.priority):
            queue = link.queues[stream].ready
            urgent = stream in messages.PRIORITY
            if not urgent:
                self._say_online(link)  # after the waiting alarms, in the same burst
            limit = window if urgent else window - PRIORITY_SLOTS
            topic = self.topic(stream)
            while queue and len(link.inflight) < limit:
                row = queue[0]
                info = link.client.publish(topic, row.payload, qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    link.reason = mqtt.error_string(info.rc)
                    return False
                queue.popleft()
                link.inflight[info.mid] = row
                link.unacked[info.mid] = time.monotonic()
                self.stats["published"] += 1
        # resends last, in the slots live alarms leave free: a repair never delays them
        while link.resend and len(link.inflight) < window - PRIORITY_SLOTS:
            out = link.resend[0]
            info = link.client.publish(self.topic(out.stream), out.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                link.reason = mqtt.error_string(info.rc)
                return False
            link.resend.popleft()
            link.inflight[info.mid] = out
            link.unacked[info.mid] = time.monotonic()
            self.stats["resent"] += 1
        self._say_online(link)
        if link.io is not None:
            link.io.flush()  # on the wire now, not on the loop's next turn
        return True

    # -- status, health, commands ----------------------------------------------------------------

    def _clock_state(self) -> Literal["synced", "unsynced"]:
        return "unsynced" if self._clock is not None and not self._clock.synced else "synced"

    def _status(self, state: Literal["online", "offline"]) -> StatusMessage:
        picture = (
            self._alarm_snapshot()  # the alarm picture, as of `alarms_seq`
            if state == "online" and self._alarm_snapshot is not None
            else {}
        )
        return StatusMessage(
            state=state,
            version=self.version,
            boot_id=self.boot_id,
            clock=self._clock_state(),
            **picture,
        )

    def _status_payload(self, state: Literal["online", "offline"], seq: int) -> bytes:
        return self.outbox.frame_now(self._status(state), seq).payload

    def _publish_status(
        self, link: _Link, state: Literal["online", "offline"], seq: int
    ) -> mqtt.MQTTMessageInfo:
        return self._publish(link, self.outbox.frame_now(self._status(state), seq))

    def _say_online(self, link: _Link) -> None:
        """Publish the connection's `online` status if it is still due."""
        if link.online_seq is not None:
            seq, link.online_seq = link.online_seq, None
            self._publish_status(link, "online", seq)

    def _publish(
        self, link: _Link, out: Outgoing, topic: str | None = None
    ) -> mqtt.MQTTMessageInfo:
        """Publish an unstored message with its stream's QoS and retain flag."""
        model = messages.STREAMS[out.stream]
        info = link.client.publish(
            topic or self.topic(out.stream), out.payload, qos=model.qos, retain=model.retain
        )
        if model.qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            link.unacked[info.mid] = time.monotonic()  # its PUBACK has a deadline too
        return info

    def refresh_status(self) -> None:
        """Publish the retained `online` status again now (what it carries has changed, e.g.
        the shutdown orders); without a connection the next connect publishes it."""
        self._clock_synced()

    def _clock_synced(self) -> None:
        """Say `clock: synced` in the retained status now, not only at the next connect."""
        link = self._link
        if link is not None and self.connected and link.online_seq is None:
            task = asyncio.get_running_loop().create_task(self._republish_status(link))
            task.add_done_callback(_log_failure)

    async def _republish_status(self, link: _Link) -> None:
        out = await self.outbox.number(self._status("online"))
        if self._link is link and self.connected:
            self._publish(link, out)

    async def _goodbye(self, link: _Link, offline_seq: int) -> None:
        """Shutting down: say offline ourselves (the will is only for dying) and wait a
        moment for its PUBACK."""
        if link.lost.is_set():
            return
        try:
            info = self._publish_status(link, "offline", offline_seq)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            link.waiting[info.mid] = waiter
            async with asyncio.timeout(2.0):
                await waiter
        except Exception as exc:
            log.warning(TEXT_GOODBYE_FAILED, str(exc) or type(exc).__name__)

    async def _health_loop(self) -> None:
        """A `health` message soon after each connect (within a second), then every
        ``health_interval``. It looks each second (or each ``health_interval`` when shorter)
        on the grid of the other periodic loops (watchpost.ticks): no wake-up of its own."""
        last_link: _Link | None = None
        last_at = 0.0
        tick = min(1.0, self.config.health_interval)
        while True:
            await sleep_to_tick(tick)
            link = self._link
            if link is None or not self.connected or link.online_seq is not None:
                continue  # `health` comes after `online`
            now = time.monotonic()
            if link is last_link and now - last_at < self.config.health_interval:
                continue
            last_link, last_at = link, now
            try:
                out = await self.outbox.number(HealthMessage.of(self.health_body()))
            except Exception:  # a broken health source must not take the uplink down
                log.exception(TEXT_HEALTH_FAILED)
                continue
            sent = self._publish(link, out)
            if sent.rc == mqtt.MQTT_ERR_SUCCESS:
                self.stats["health_sent"] += 1

    def health_body(self) -> dict[str, Any]:
        """The `health` body: backlog, disk, CPU, uplink, clock; the app's dict on top."""
        body: dict[str, Any] = {
            "backlog": self.store.backlog(),
            "disk": _disk(self.store.path),
            "cpu": _cpu(),
            "uplink": dict(self.stats),
            "clock": self._clock_state(),
        }
        body.update(self._health())
        return body

    def _on_command_message(
        self, link: _Link, topic: str, payload: bytes, retained: bool = False
    ) -> None:
        name = command_name(topic, self.root)
        if name is None:
            if topic not in self._ignored_topics:
                self._ignored_topics.add(topic)
                log.warning(TEXT_NOT_A_COMMAND, topic, self.root + "cmd/")
            return
        if not payload:
            return  # a platform clearing a retained command: nothing to run or answer
        task = asyncio.get_running_loop().create_task(self._serve(link, name, payload, retained))
        task.add_done_callback(_log_failure)

    async def _serve(self, link: _Link, name: str, payload: bytes, retained: bool = False) -> None:
        """The one way in for a command: refused here when retained, too large or not a
        JSON object; its handler checks the rest. A refusal is one log line."""
        reply: dict[str, Any] = {"command": name}
        request = _command_request(payload)
        too_large = _too_large(payload)
        if request is None or too_large:
            reply.update(ok=False, error=too_large or TEXT_BAD_COMMAND)
            request = request or {}
        command_id = request.get("id")
        if _echoable(command_id):
            reply["id"] = command_id
        handler = self._commands.get(name)
        if "ok" not in reply:
            if retained:  # a broker hands a retained message to every new session
                reply.update(ok=False, error=TEXT_RETAINED)
            elif handler is None:
                reply.update(ok=False, error=TEXT_UNKNOWN_COMMAND.format(name=name))
            else:
                try:
                    result = handler(request)
                    if inspect.isawaitable(result):
                        result = await result
                    reply.update(ok=True, result=result)
                except CommandError as exc:  # refused: the platform's answer, one log line
                    reply.update(ok=False, error=str(exc))
                except Exception as exc:  # a handler's failure is the platform's answer
                    log.exception(TEXT_COMMAND_FAILED, name)
                    reply.update(ok=False, error=str(exc) or type(exc).__name__)
        if not reply["ok"]:
            log.warning(TEXT_COMMAND_REFUSED, name, reply.get("id", "-"), reply["error"])
        try:
            out = await self.outbox.number(CommandReply(**reply))
        except (ValueError, TypeError) as exc:  # an id or result JSON cannot carry
            out = await self.outbox.number(
                CommandReply(command=name, ok=False, error=f"{TEXT_BAD_REPLY}: {exc}")
            )
        self._publish(link, out, f"{self.root}cmd/{name}/reply")

    def _now(self) -> int:
        return self._clock.now_ms() if self._clock is not None else wall_ms()


def _command_request(payload: bytes) -> dict[str, Any] | None:
    """A command's payload as a JSON object (read up to ``PARSE_LIMIT`` bytes, so that a
    reply to one too large can still carry its id); None if it is not JSON, nested too deep
    or not an object. (NaN is read; no model takes it, and no reply echoes it.)"""
    if len(payload) > PARSE_LIMIT:
        return None
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return request if isinstance(request, dict) else None


def _too_large(payload: bytes) -> str | None:
    if len(payload) > MAX_COMMAND_BYTES:
        return TEXT_TOO_LARGE.format(size=len(payload), limit=MAX_COMMAND_BYTES)
    return None


def _echoable(command_id: object) -> bool:
    """An id the reply may carry back: a short text or a whole number JSON can hold."""
    if isinstance(command_id, str):
        return 0 < len(command_id) <= MAX_ID_LENGTH
    return (
        isinstance(command_id, int)
        and not isinstance(command_id, bool)
        and (abs(command_id) < 2**53)
    )


def command_name(topic: str, root: str) -> str | None:
    """The command a message on ``topic`` asks for, or None if it is none of ours: a topic
    outside the gateway's own ``root``, a reply, or any deeper level is never a command."""
    prefix = root + "cmd/"
    name = topic[len(prefix) :]
    if not topic.startswith(prefix) or not name or "/" in name:
        return None
    return name


def _property(properties: Any, name: str) -> str | None:
    """An MQTT 5 property of a CONNACK or DISCONNECT, or None (MQTT 3.1.1 has none)."""
    value = getattr(properties, name, None) if properties is not None else None
    return value if isinstance(value, str) else None


def _reason_string(reason: Any, properties: Any) -> str:
    """paho's name of the reason code, with the broker's own reason string if it sent one."""
    text = _property(properties, "ReasonString")
    return f"{reason} ({text})" if text else str(reason)


def _referred(server: str, addresses: list[BrokerAddress]) -> int | None:
    """The index of the configured broker an MQTT 5 server reference names, if any.

    A reference is ``host`` or ``host:port``, several separated by spaces; a broker that is
    not configured is never followed (the gateway talks only to brokers its config names).
    """
    for reference in server.split():
        host, _, port = reference.rpartition(":") if ":" in reference else (reference, "", "")
        for index, address in enumerate(addresses):
            if address.host == host and (not port or port == str(address.port)):
                return index
    return None


def _disk(path: Path) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path.parent)
    except OSError:
        return {}
    return {"total_bytes": usage.total, "free_bytes": usage.free}


def _cpu() -> dict[str, Any]:
    try:
        load1, load5, _load15 = os.getloadavg()
    except OSError:
        return {}
    return {"load1": round(load1, 2), "load5": round(load5, 2), "cores": os.cpu_count()}


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("uplink task %s failed", task.get_name(), exc_info=task.exception())
