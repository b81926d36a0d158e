"""The daily energy figure of every meter's energy point: the reading at midnight and the
energy of the day, so that a platform compares days without pulling every sample.

For each energy point (a DL/T 645 point whose DI is an energy register, ``00......``) the
first good reading of a local day is that day's *start* (the meter's register at midnight,
as near as the poll interval allows). When the first good reading of the next day comes, the
day is closed: ``energy = end - start``, sent on the `energy` stream (docs/mqtt-contract.md).
A day is ``complete`` when its start and its end were both read within ``MIDNIGHT_SLACK``
of their midnights; a day the gateway started in, or with a gap over midnight, is sent
with ``complete: false``. A reading that went down (a new meter, a register that rolled
over) gives ``energy: null``.

Days are the gateway's local days (the box's timezone: set it to the site's, e.g.
Asia/Shanghai). The day's start survives a restart in ``energy_days.json`` in the state
folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost.files import atomic_write
from watchpost.samples import Quality, Sample
from watchpost.settings import Dlt645Device, GatewayConfig

log = logging.getLogger(__name__)

MIDNIGHT_SLACK_MS = 15 * 60_000  # a start or end read within 15 min of midnight counts
FILE_NAME = "energy_days.json"
TEXT_UNREADABLE = _("daily energy state %s unreadable (%s); days start anew")


@dataclass(frozen=True, slots=True)
class DayFigure:
    """One closed day of one energy point: the body of an `energy` message."""

    point: str
    unit: str
    day: str  # local date, YYYY-MM-DD
    start: float  # the reading at the day's start
    start_ts: int
    end: float  # the reading at the next day's start
    end_ts: int
    energy: float | None  # end - start; None if the reading went down
    complete: bool

    def body(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Open:
    day: str
    start: float
    start_ts: int


class DailyEnergy:
    """Watches the energy points' samples and emits each closed day once."""

    def __init__(
        self,
        points: Mapping[str, str],
        emit: Callable[[DayFigure], None],
        *,
        state: Path | None = None,
        tz: dt.tzinfo | None = None,
    ) -> None:
        self.units = dict(points)  # point name -> unit
        self._emit = emit
        self._state = state
        self._tz = tz
        self._open: dict[str, _Open] = {}
        self._load()

    def observe(self, samples: Iterable[Sample]) -> None:
        """Take a batch of samples (any points; only good energy readings count)."""
        units = self.units
        for sample in samples:
            if sample.point not in units or sample.quality is not Quality.GOOD:
                continue
            if sample.value is None:
                continue
            self._reading(sample.point, sample.ts, sample.value)

    def _reading(self, point: str, ts: int, value: float) -> None:
        day = self._day_of(ts)
        current = self._open.get(point)
        if current is not None and current.day == day:
            return
        if current is not None and day > current.day:
            self._close(point, current, ts, value)
        if current is None or day > current.day:
            self._open[point] = _Open(day, value, ts)
            self._save()

    def _close(self, point: str, day: _Open, ts: int, value: float) -> None:
        next_midnight = self._midnight_after(day.day)
        complete = (
            day.start_ts - self._midnight_of(day.day) <= MIDNIGHT_SLACK_MS
            and ts - next_midnight <= MIDNIGHT_SLACK_MS
            and self._day_of(ts) == self._day_of(next_midnight)
        )
        energy = value - day.start if value >= day.start else None
        self._emit(
            DayFigure(
                point=point,
                unit=self.units[point],
                day=day.day,
                start=day.start,
                start_ts=day.start_ts,
                end=value,
                end_ts=ts,
                energy=None if energy is None else round(energy, 6),
                complete=complete,
            )
        )

    def _day_of(self, ts: int) -> str:
        return dt.datetime.fromtimestamp(ts / 1000, tz=self._zone()).date().isoformat()

    def _midnight_of(self, day: str) -> int:
        date = dt.date.fromisoformat(day)
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=self._zone())
        return int(midnight.timestamp() * 1000)

    def _midnight_after(self, day: str) -> int:
        return self._midnight_of((dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat())

    def _zone(self) -> dt.tzinfo:
        if self._tz is not None:
            return self._tz
        zone = dt.datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone

    # -- the day's start across restarts ----------------------------------------------------

    def _load(self) -> None:
        if self._state is None:
            return
        try:
            raw = json.loads(self._state.read_text(encoding="utf-8"))
            opened = {
                name: _Open(str(entry["day"]), float(entry["start"]), int(entry["start_ts"]))
                for name, entry in raw["open"].items()
                if name in self.units
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error(TEXT_UNREADABLE, self._state, exc)
            return
        self._open = opened

    def _save(self) -> None:
        if self._state is None:
            return
        document = {"open": {name: asdict(day) for name, day in self._open.items()}}
        try:
            atomic_write(self._state, json.dumps(document).encode("utf-8"))
        except OSError as exc:  # the figure is still sent; only a restart today loses it
            log.error("daily energy state %s not saved: %s", self._state, exc)


def energy_points(config: GatewayConfig) -> dict[str, str]:
    """Every meter point that reads an energy register (DI ``00......``): name -> unit."""
    return {
        point.name: point.unit
        for device in config.devices
        if isinstance(device, Dlt645Device)
        for point in device.points
        if point.di.startswith("00")
    }
