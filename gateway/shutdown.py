"""Ordered shutdowns: the orders a platform sends, kept on disk, asked by the power watch.

After an accident nearby or during a flood warning the authorities order a site to stop
producing from ``start`` to ``end``. The platform sends each order as `cmd/shutdown_order`
and may cancel it with `cmd/shutdown_cancel`; the `production_during_shutdown` alarm rule
(gateway/alarms.py) is armed only while an order is in force. Orders survive restarts: they
live in ``shutdown_orders.json`` in the state folder, written atomically (temporary file,
fsync, rename) before a command is answered.

Orders never overlap: one is in force at a time, so an alarm names the order it breaks.
The same order sent twice (MQTT delivers at least once) is accepted again without change;
an order with a known id and other content is refused.

Exceptions::

    OrderError        an order or a cancellation was refused; nothing changed; no retry helps
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from watchpost.checks import parse
from watchpost.files import atomic_write

if TYPE_CHECKING:
    from pydantic import Field  # the rules' declaration; read by checks, and by pydantic

log = logging.getLogger(__name__)

FILE_NAME = "shutdown_orders.json"
FILE_VERSION = 1
KEEP_ENDED_MS = 7 * 86_400_000  # ended and cancelled orders stay listed for a week
MAX_ORDERS = 100

TEXT_END_BEFORE_START = _("end must be after start")
TEXT_OVERLAP = _(
    "order {id!r} overlaps order {other!r} ({start} to {end}); cancel that one first or "
    "choose times that do not overlap"
)
TEXT_ALREADY_ENDED = _("order {id!r} ended already ({end}); nothing to enforce")
TEXT_ID_REUSED = _("an order with id {id!r} exists already with other times or reason")
TEXT_NO_ORDER = _("no order with id {id!r} (orders: {known})")
TEXT_CANCELLED_ALREADY = _("order {id!r} was cancelled already")
TEXT_TOO_MANY = _("at most {limit} orders are kept; cancel some first")
TEXT_UNREADABLE = _("shutdown orders %s unreadable (%s); moved to %s, starting with no orders")


class OrderError(Exception):
    """An order or a cancellation was refused; nothing changed. No retry helps."""


@dataclass(frozen=True, kw_only=True)
class ShutdownOrder:
    """One ordered shutdown, as the platform sends it in `cmd/shutdown_order` (checked by
    ``watchpost.checks``)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description="The order's id, unique per gateway; named by the alarm that breaks it.",
        ),
    ]
    start: Annotated[int, Field(ge=0, description="When the shutdown begins, UTC epoch ms.")]
    end: Annotated[int, Field(ge=0, description="When it ends, UTC epoch ms.")]
    reason: Annotated[
        str,
        Field(
            min_length=1, max_length=1000, description="Why, e.g. the authority's notice number."
        ),
    ]

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(TEXT_END_BEFORE_START)

    @classmethod
    def of(cls, order: ShutdownOrder) -> ShutdownOrder:
        """The order itself, out of a command or a kept order that carries it."""
        return cls(id=order.id, start=order.start, end=order.end, reason=order.reason)

    def in_force(self, ts: int) -> bool:
        return self.start <= ts < self.end


@dataclass(frozen=True, kw_only=True)
class KeptOrder(ShutdownOrder):
    """An order as the gateway keeps it: when it came, and its cancellation if any."""

    received_ts: Annotated[
        int, Field(ge=0, description="When the gateway accepted it, UTC epoch ms.")
    ]
    cancelled_ts: Annotated[
        int | None,
        Field(description="When it was cancelled, UTC epoch ms; null if it was not."),
    ] = None

    def effective_end(self) -> int:
        """The end, or the cancellation if that came first."""
        if self.cancelled_ts is None:
            return self.end
        return max(self.start, min(self.end, self.cancelled_ts))

    def in_force(self, ts: int) -> bool:
        return self.start <= ts < self.effective_end()

    def state(self, now: int) -> str:
        if self.cancelled_ts is not None and self.cancelled_ts <= now:
            return "cancelled"
        if now < self.start:
            return "pending"
        return "in_force" if now < self.end else "ended"

    def body(self) -> dict[str, Any]:
        """The order as it is kept on disk and listed."""
        return dataclasses.asdict(self)


class ShutdownOrders:
    """The orders of this gateway, on disk in ``path``. Synchronous and small: every change
    is written before it returns (a few hundred bytes, once per command)."""

    def __init__(self, path: Path, now_ms: Callable[[], int]) -> None:
        self.path = path
        self._now_ms = now_ms
        self._orders: dict[str, KeptOrder] = {}
        self.revision = 0  # counts changes, for the alarm engine to re-check its arming
        self._load()

    def _load(self) -> None:
        try:
            orders = read_orders(self.path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            try:
                self.path.replace(aside)
            except OSError as move_error:
                log.error("cannot move %s aside: %s", self.path, move_error)
            log.error(TEXT_UNREADABLE, self.path, exc, aside)
            return
        self._orders = {order.id: order for order in orders}

    def add(self, order: ShutdownOrder) -> tuple[KeptOrder, bool]:
        """Keep ``order``; returns it and whether it is new (False: the same order again).

        OrderError if it overlaps another order, has ended, or reuses an id."""
        now = self._now_ms()
        known = self._orders.get(order.id)
        if known is not None:
            if ShutdownOrder.of(known) != ShutdownOrder.of(order):
                raise OrderError(TEXT_ID_REUSED.format(id=order.id))
            return known, False
        if order.end <= now:
            raise OrderError(TEXT_ALREADY_ENDED.format(id=order.id, end=_iso(order.end)))
        for other in self._orders.values():
            if other.effective_end() > order.start and order.end > other.start:
                if other.effective_end() <= now:
                    continue  # over already (cancelled early): no clash possible
                raise OrderError(
                    TEXT_OVERLAP.format(
                        id=order.id,
                        other=other.id,
                        start=_iso(other.start),
                        end=_iso(other.effective_end()),
                    )
                )
        self._prune(now)
        if len(self._orders) >= MAX_ORDERS:
            raise OrderError(TEXT_TOO_MANY.format(limit=MAX_ORDERS))
        kept = KeptOrder(**dataclasses.asdict(ShutdownOrder.of(order)), received_ts=now)
        self._orders[order.id] = kept
        self._save()
        return kept, True

    def cancel(self, order_id: str) -> KeptOrder:
        """Cancel an order now; OrderError if there is none with that id."""
        order = self._orders.get(order_id)
        if order is None:
            known = ", ".join(self._orders) or "none"
            raise OrderError(TEXT_NO_ORDER.format(id=order_id, known=known))
        if order.cancelled_ts is not None:
            raise OrderError(TEXT_CANCELLED_ALREADY.format(id=order_id))
        cancelled = dataclasses.replace(order, cancelled_ts=self._now_ms())
        self._orders[order_id] = cancelled
        self._save()
        return cancelled

    def now_ms(self) -> int:
        return self._now_ms()

    def in_force(self, ts: int) -> KeptOrder | None:
        """The order in force at ``ts`` (epoch ms), if any."""
        for order in self._orders.values():
            if order.in_force(ts):
                return order
        return None

    def listing(self) -> list[dict[str, Any]]:
        """Every kept order with its state, earliest first: for `status` and the CLI."""
        return describe_orders(self._orders.values(), self._now_ms())

    def _prune(self, now: int) -> None:
        for order_id, order in list(self._orders.items()):
            if order.effective_end() < now - KEEP_ENDED_MS:
                del self._orders[order_id]

    def _save(self) -> None:
        self.revision += 1
        document = {
            "version": FILE_VERSION,
            "orders": [order.body() for order in self._orders.values()],
        }
        atomic_write(self.path, json.dumps(document, indent=1).encode("utf-8"))


def read_orders(path: Path) -> list[KeptOrder]:
    """The orders kept in ``path``, read only (`watchpost status` with the daemon stopped).

    FileNotFoundError if there is none; ValueError if it cannot be understood.
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("version") != FILE_VERSION:
        raise ValueError(f"version {raw.get('version') if isinstance(raw, dict) else raw!r}")
    try:
        return [parse(KeptOrder, item) for item in raw["orders"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from exc


def describe_orders(orders: Iterable[KeptOrder], now: int) -> list[dict[str, Any]]:
    """Orders with their state at ``now``, earliest first."""
    return [
        {**order.body(), "state": order.state(now)}
        for order in sorted(orders, key=lambda o: o.start)
    ]


def _iso(ms: int) -> str:
    import datetime as dt  # noqa: PLC0415 - only for messages

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrderDesk:
    """The platform's shutdown commands carried out: orders kept, the power watch re-armed.

    ``changed`` is called after every change: the daemon re-checks the power watches (the
    alarm engine's ``check_orders``: a cancellation clears, at once, every watch the order
    had armed; its events go to the engine's listeners, stored like every alarm event, and
    their ids into the reply) and publishes its status again.
    """

    def __init__(self, orders: ShutdownOrders, changed: Callable[[], list[Any]]) -> None:
        self.orders = orders
        self._changed = changed

    def place(self, order: ShutdownOrder) -> dict[str, Any]:
        """Keep ``order``; OrderError if it is refused (nothing changes then)."""
        kept, new = self.orders.add(order)
        if new:
            self._changed()
        return {"order": self._described(kept), "new": new}

    def cancel(self, order_id: str) -> dict[str, Any]:
        """Cancel the order ``order_id`` now; OrderError if there is none."""
        cancelled = self.orders.cancel(order_id)
        events = self._changed()
        return {
            "order": self._described(cancelled),
            "cleared": [getattr(event, "alarm", "") for event in events],
        }

    def _described(self, order: KeptOrder) -> dict[str, Any]:
        return describe_orders([order], self.orders.now_ms())[0]
