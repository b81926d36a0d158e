"""Commands from the platform (`cmd/{name}` on MQTT): validated, then carried out.

Every request is a JSON object checked against its pydantic model (the JSON Schemas in
`schemas/cmd-*.json` are generated from the same models); anything malformed, unknown or
too large is answered with an error and changes nothing. The alarm commands are the alarm
actions of ``actions.py`` (their models, their checks, their answers), the same the crews'
CLI gets. The uplink publishes each handler's result, or the text of its
``CommandError``, on `cmd/{name}/reply`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from gettext import gettext as _
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from watchpost import actions
from watchpost.actions import ActionError, AlarmActions
from watchpost.anomaly_part import UnknownModelError
from watchpost.certrenew import TEXT_NO_TLS, CertificateDesk, RenewalError
from watchpost.command_auth import CommandRefused, CommandVerifier
from watchpost.config import describe_error
from watchpost.messages import STREAMS
from watchpost.shutdown import OrderDesk, OrderError, ShutdownOrder

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
ORDER_KEYS = {"id", "start", "end", "reason"}

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class GapRepair(Protocol):
    """`cmd/resend`: queues what the store still keeps of a range; answers what it did."""

    def __call__(self, stream: str, first: int, last: int) -> Awaitable[dict[str, Any]]: ...


class Rebaseline(Protocol):
    """The anomaly runner's rebaseline: answers once its event is stored."""

    def __call__(self, name: str, *, by: str) -> Awaitable[dict[str, Any]]: ...


class CommandError(Exception):
    """The command was refused; nothing was changed. No retry helps without a change."""


class Request(BaseModel):
    """What every command may carry."""

    # validators built at the first command, not at start: most daemons never get one
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str | int | None = Field(default=None, description="Echoed in the reply.")
    ts: int | None = Field(
        default=None, description="Signed commands: when the platform sent it, epoch ms."
    )
    gateway: str | None = Field(
        default=None, description="Signed commands: the gateway it is meant for."
    )
    sig: str | None = Field(
        default=None, description="Signed commands: base64 Ed25519 signature (mqtt-contract)."
    )


class Ping(Request):
    """`cmd/ping`: is the gateway there? Answers with its clock and uptime."""


class Acknowledge(actions.Acknowledge, Request):
    """`cmd/ack`: acknowledge a raised alarm."""


class Shelve(actions.Shelve, Request):
    """`cmd/shelve`: shelve an alarm for maintenance, with a mandatory expiry."""


class Unshelve(actions.Unshelve, Request):
    """`cmd/unshelve`: end a shelf now."""


class Reload(Request):
    """`cmd/reload`: re-read the config file; refused, and nothing changes, if it is bad."""


class ShutdownOrderCommand(ShutdownOrder, Request):
    """`cmd/shutdown_order`: the site must stop producing from start to end; the power watch
    (`production_during_shutdown` rules) is armed while the order is in force. Orders may not
    overlap; the same order sent again is accepted again without change."""


class AnomalyRebaseline(Request):
    """`cmd/anomaly_rebaseline`: recalibrate an anomaly model from the next rows, after the
    process settled somewhere new. Recorded as a `rebaseline` event before the reply."""

    model: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The model entry's name, as in [[anomaly.models]].",
    )
    by: str = Field(min_length=1, max_length=100, description="Who asks, for the record.")


class ShutdownCancel(Request):
    """`cmd/shutdown_cancel`: cancel a shutdown order now (a raised power watch clears)."""

    id: str = Field(
        min_length=1,
        max_length=128,
        description="The order's id; or, when `order` is given, this command's own id.",
    )
    order: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The order's id, where `id` must be unique per command (signed commands: "
        "an order cancelled within the replay window of its own command).",
    )


class CertRenew(Request):
    """`cmd/cert_renew`: make a new key now (unless one is pending) and answer with its CSR,
    for the platform to sign; the private key never leaves the gateway."""


class CertInstall(Request):
    """`cmd/cert_install`: the signed certificate for the pending key. The gateway checks it
    (its key, its name, the site CA, its dates), reconnects with it, and keeps it only if
    the broker accepts it; otherwise the old certificate stays."""

    certificate: str = Field(
        min_length=1, max_length=12_000, description="The new client certificate, PEM."
    )


class Resend(Request):
    """`cmd/resend`: send the messages ``from_seq`` to ``to_seq`` of ``stream`` again, with
    ``"replay": true``, for a gap the platform found (a broker lost what it had
    acknowledged). Those sent within ``[store] keep_sent`` are kept; the reply says which
    seqs go out again, which still wait to be sent anyway and which are no longer kept."""

    stream: str = Field(
        min_length=1,
        max_length=32,
        json_schema_extra={"enum": list(RESENDABLE)},
        description="The stream with the gap.",
    )
    from_seq: int = Field(ge=1, le=2**53, description="The first seq wanted again.")
    to_seq: int = Field(
        ge=1, le=2**53, description=f"The last seq wanted again; at most {MAX_RESEND} in all."
    )

    @field_validator("stream")
    @classmethod
    def _kept_stream(cls, stream: str) -> str:
        if stream not in RESENDABLE:
            raise ValueError(
                TEXT_NOT_RESENDABLE.format(stream=stream, streams=", ".join(RESENDABLE))
            )
        return stream

    @model_validator(mode="after")
    def _range(self) -> Resend:
        if self.from_seq > self.to_seq:
            raise ValueError(TEXT_SEQ_ORDER.format(first=self.from_seq, last=self.to_seq))
        count = self.to_seq - self.from_seq + 1
        if count > MAX_RESEND:
            raise ValueError(TEXT_RESEND_CAP.format(count=count, limit=MAX_RESEND))
        return self


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
    """Check a request against its model; raise CommandError naming each wrong key."""
    size = len(json.dumps(request, default=str))
    if size > MAX_COMMAND_BYTES:
        raise CommandError(TEXT_TOO_LARGE.format(size=size, limit=MAX_COMMAND_BYTES))
    try:
        return COMMANDS[name].model_validate(request)
    except ValidationError as exc:
        errors = "; ".join(describe_error(e) for e in exc.errors())
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
        return self._orders.place(
            ShutdownOrder.model_validate(command.model_dump(include=ORDER_KEYS))
        )
