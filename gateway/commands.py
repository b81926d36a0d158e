"""Commands from the platform (`cmd/{name}` on MQTT): validated, then carried out.

Every request is a JSON object checked against its class by ``watchpost.checks`` (as
pydantic would, without loading it; the JSON Schemas in `schemas/cmd-*.json` are generated
from the same classes); anything malformed, unknown or
too large is answered with an error and changes nothing. The alarm commands are the alarm
actions of ``actions.py`` (their models, their checks, their answers), the same the crews'
CLI gets. The uplink publishes each handler's result, or the text of its
``CommandError``, on `cmd/{name}/reply`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from gettext import gettext as _
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from watchpost import actions, checks
from watchpost.actions import ActionError, AlarmActions
from watchpost.anomaly_part import UnknownModelError
from watchpost.certrenew import TEXT_NO_TLS, CertificateDesk, RenewalError
from watchpost.checks import Invalid
from watchpost.command_auth import CommandRefused, CommandVerifier
from watchpost.error_text import describe_error
from watchpost.messages import STREAMS
from watchpost.shutdown import OrderDesk, OrderError, ShutdownOrder

if TYPE_CHECKING:
    from pydantic import Field  # the rules' declaration; read by checks, and by pydantic

MAX_COMMAND_BYTES = 16 * 1024
MAX_RESEND = 10_000  # seqs one cmd/resend may cover; a larger gap takes several
RESENDABLE = tuple(sorted(name for name, model in STREAMS.items() if model.stored))

TEXT_TOO_LARGE = _("the command is {size} bytes; at most {limit} are accepted")
TEXT_INVALID = _("invalid command: {errors}")
TEXT_RELOADING = _("the config file is valid; the gateway restarts with it now")
TEXT_NO_MODELS = _("this gateway runs no anomaly model")
TEXT_NO_ORDERS = _("this gateway keeps no shutdown orders")
TEXT_NOT_RESENDABLE = _("{stream!r} is not a stream the gateway keeps; resend covers {streams}")
TEXT_SEQ_ORDER = _("from_seq ({first}) is after to_seq ({last})")
TEXT_RESEND_CAP = _("{count} seqs asked for; at most {limit} per cmd/resend")
TEXT_NO_RESEND = _("this gateway cannot resend")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class GapRepair(Protocol):
    """`cmd/resend`: queues what the store still keeps of a range; answers what it did."""

    def __call__(self, stream: str, first: int, last: int) -> Awaitable[dict[str, Any]]: ...


class Rebaseline(Protocol):
    """The anomaly runner's rebaseline: answers once its event is stored."""

    def __call__(self, name: str, *, by: str) -> Awaitable[dict[str, Any]]: ...


class CommandError(Exception):
    """The command was refused; nothing was changed. No retry helps without a change."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """What every command may carry (checked by ``watchpost.checks``: unknown keys are
    refused)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    id: Annotated[str | int | None, Field(description="Echoed in the reply.")] = None
    ts: Annotated[
        int | None, Field(description="Signed commands: when the platform sent it, epoch ms.")
    ] = None
    gateway: Annotated[
        str | None, Field(description="Signed commands: the gateway it is meant for.")
    ] = None
    sig: Annotated[
        str | None,
        Field(description="Signed commands: base64 Ed25519 signature (mqtt-contract)."),
    ] = None


@dataclass(frozen=True, kw_only=True)
class Ping(Request):
    """`cmd/ping`: is the gateway there? Answers with its clock and uptime."""


@dataclass(frozen=True, kw_only=True)
class Acknowledge(actions.Acknowledge, Request):
    """`cmd/ack`: acknowledge a raised alarm."""


@dataclass(frozen=True, kw_only=True)
class Shelve(actions.Shelve, Request):
    """`cmd/shelve`: shelve an alarm for maintenance, with a mandatory expiry."""


@dataclass(frozen=True, kw_only=True)
class Unshelve(actions.Unshelve, Request):
    """`cmd/unshelve`: end a shelf now."""


@dataclass(frozen=True, kw_only=True)
class Reload(Request):
    """`cmd/reload`: re-read the config file; refused, and nothing changes, if it is bad."""


@dataclass(frozen=True, kw_only=True)
class ShutdownOrderCommand(ShutdownOrder, Request):
    """`cmd/shutdown_order`: the site must stop producing from start to end; the power watch
    (`production_during_shutdown` rules) is armed while the order is in force. Orders may not
    overlap; the same order sent again is accepted again without change."""


@dataclass(frozen=True, kw_only=True)
class AnomalyRebaseline(Request):
    """`cmd/anomaly_rebaseline`: recalibrate an anomaly model from the next rows, after the
    process settled somewhere new. Recorded as a `rebaseline` event before the reply."""

    model: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9_.-]+$",
            description="The model entry's name, as in [[anomaly.models]].",
        ),
    ]
    by: Annotated[str, Field(min_length=1, max_length=100, description="Who asks, for the record.")]


@dataclass(frozen=True, kw_only=True)
class ShutdownCancel(Request):
    """`cmd/shutdown_cancel`: cancel a shutdown order now (a raised power watch clears)."""

    id: Annotated[  # required here, unlike other commands
        str,
        Field(
            min_length=1,
            max_length=128,
            description="The order's id; or, when `order` is given, this command's own id.",
        ),
    ] = field()  # no default: Request's None would be inherited otherwise
    order: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=100,
            description="The order's id, where `id` must be unique per command (signed "
            "commands: an order cancelled within the replay window of its own command).",
        ),
    ] = None


@dataclass(frozen=True, kw_only=True)
class CertRenew(Request):
    """`cmd/cert_renew`: make a new key now (unless one is pending) and answer with its CSR,
    for the platform to sign; the private key never leaves the gateway."""


@dataclass(frozen=True, kw_only=True)
class CertInstall(Request):
    """`cmd/cert_install`: the signed certificate for the pending key. The gateway checks it
    (its key, its name, the site CA, its dates), reconnects with it, and keeps it only if
    the broker accepts it; otherwise the old certificate stays."""

    certificate: Annotated[
        str, Field(min_length=1, max_length=12_000, description="The new client certificate, PEM.")
    ]


def _stream_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = list(RESENDABLE)


def _kept_stream(stream: str) -> str:
    if stream not in RESENDABLE:
        raise ValueError(TEXT_NOT_RESENDABLE.format(stream=stream, streams=", ".join(RESENDABLE)))
    return stream


@dataclass(frozen=True, kw_only=True)
class Resend(Request):
    """`cmd/resend`: send the messages ``from_seq`` to ``to_seq`` of ``stream`` again, with
    ``"replay": true``, for a gap the platform found (a broker lost what it had
    acknowledged). Those sent within ``[store] keep_sent`` are kept; the reply says which
    seqs go out again, which still wait to be sent anyway and which are no longer kept."""

    __field_checks__: ClassVar[dict[str, Callable[[Any], Any]]] = {"stream": _kept_stream}

    stream: Annotated[
        str,
        Field(
            min_length=1,
            max_length=32,
            json_schema_extra=_stream_enum,
            description="The stream with the gap.",
        ),
    ]
    from_seq: Annotated[int, Field(ge=1, le=2**53, description="The first seq wanted again.")]
    to_seq: Annotated[
        int,
        Field(
            ge=1, le=2**53, description=f"The last seq wanted again; at most {MAX_RESEND} in all."
        ),
    ]

    def __post_init__(self) -> None:
        if self.from_seq > self.to_seq:
            raise ValueError(TEXT_SEQ_ORDER.format(first=self.from_seq, last=self.to_seq))
        count = self.to_seq - self.from_seq + 1
        if count > MAX_RESEND:
            raise ValueError(TEXT_RESEND_CAP.format(count=count, limit=MAX_RESEND))


COMMANDS: dict[str, type[Request]] = {
    "ping": Ping,
    "ack": Acknowledge,
    "shelve": Shelve,
    "unshelve": Unshelve,
    "reload": Reload,
    "shutdown_order": ShutdownOrderCommand,
    "shutdown_cancel": ShutdownCancel,
    "anomaly_rebaseline": AnomalyRebaseline,
    "cert_renew": CertRenew,
    "cert_install": CertInstall,
    "resend": Resend,
}


def parse(name: str, request: dict[str, Any]) -> Request:
    """Check a request against its class; raise CommandError naming each wrong key."""
    size = len(json.dumps(request, default=str))
    if size > MAX_COMMAND_BYTES:
        raise CommandError(TEXT_TOO_LARGE.format(size=size, limit=MAX_COMMAND_BYTES))
    try:
        return checks.parse(COMMANDS[name], request)
    except Invalid as exc:
        errors = "; ".join(describe_error(e) for e in exc.errors)
        raise CommandError(TEXT_INVALID.format(errors=errors)) from exc


class PlatformCommands:
    """The handlers the uplink serves: the alarm actions, ping and reload."""

    def __init__(
        self,
        alarm_actions: AlarmActions,
        *,
        ping: Callable[[], dict[str, Any]],
        reload: Callable[[], Awaitable[list[str]]],
        orders: OrderDesk | None = None,
        rebaseline: Rebaseline | None = None,
        certificates: CertificateDesk | None = None,
        verifier: CommandVerifier | None = None,
        resend: GapRepair | None = None,
    ) -> None:
        self._verifier = verifier  # None: nothing is verified (tests of the handlers alone)
        self._actions = alarm_actions
        self._ping = ping
        self._reload = reload
        self._orders = orders  # shutdown orders; None: refused
        self._rebaseline = rebaseline  # anomaly models; None: refused
        self._certificates = certificates  # client certificate renewal; None: refused
        self._resend = resend  # gap repair; None: refused

    def handlers(self) -> dict[str, Handler]:
        return {name: self._handler(name) for name in COMMANDS}

    def _handler(self, name: str) -> Handler:
        async def handle(request: dict[str, Any]) -> Any:
            if self._verifier is not None:
                try:
                    self._verifier.check(name, request)
                except CommandRefused as exc:
                    raise CommandError(str(exc)) from exc
                await self._verifier.persist()  # a replay after a restart is refused too
            command = parse(name, request)
            try:
                return await self._run(name, command)
            except (ActionError, OrderError, UnknownModelError, RenewalError) as exc:
                raise CommandError(str(exc)) from exc

        return handle

    async def _run(self, name: str, command: Request) -> Any:
        match command:
            case Ping():
                return self._ping()
            case Reload():
                errors = await self._reload()
                if errors:
                    raise CommandError("; ".join(errors))
                return {"reloading": True, "message": TEXT_RELOADING}
            case actions.Action():  # ack, shelve, unshelve: the crews' actions too
                return await self._actions.perform(name, command)
            case ShutdownOrderCommand() | ShutdownCancel():
                return self._order_command(command)
            case AnomalyRebaseline() | Resend():
                return await self._store_command(command)
            case CertRenew() | CertInstall():
                return self._certificate_command(command)
        raise CommandError(type(command).__name__)

    async def _store_command(self, command: AnomalyRebaseline | Resend) -> dict[str, Any]:
        """`anomaly_rebaseline` answers once its event is stored; `resend` once the rows
        still kept are queued."""
        if isinstance(command, Resend):
            if self._resend is None:
                raise CommandError(TEXT_NO_RESEND)
            return await self._resend(command.stream, command.from_seq, command.to_seq)
        if self._rebaseline is None:
            raise CommandError(TEXT_NO_MODELS)
        return await self._rebaseline(command.model, by=command.by)

    def _certificate_command(self, command: CertRenew | CertInstall) -> dict[str, Any]:
        """`cert_renew` answers with the CSR; `cert_install` puts the certificate on trial."""
        if self._certificates is None:
            raise CommandError(TEXT_NO_TLS)
        if isinstance(command, CertInstall):
            return self._certificates.install(command.certificate)
        return self._certificates.renew()

    def _order_command(self, command: ShutdownOrderCommand | ShutdownCancel) -> dict[str, Any]:
        """`shutdown_order` and `shutdown_cancel`: the orders are kept before the reply."""
        if self._orders is None:
            raise CommandError(TEXT_NO_ORDERS)
        if isinstance(command, ShutdownCancel):
            return self._orders.cancel(command.order or command.id)
        return self._orders.place(ShutdownOrder.of(command))
