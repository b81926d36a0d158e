"""How a value reads to people: one value is shown the same way in `status`, `watch`,
`alarms`, the points table and the commissioning report.

A point's resolution follows from its config: a register scaled by 0.1 reads to one
decimal, a counter (scale 1) to none, an on/off point as ``on``/``off``. A float32 point has
no fixed resolution: it shows at most 7 significant digits (what a float32 holds) with
trailing zeros dropped. Ordinary magnitudes never use an exponent; only values at or above
1e15, or below 1e-6, do.

    fmt = Resolution.of(point_config)     # or Resolution() when the point is unknown
    fmt.format(65535.0)                   # '65535'
    formats_of(config)["ch4_face_1"]      # every configured point's Resolution
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from gettext import gettext as _
from typing import TYPE_CHECKING

from watchpost.settings import PointBase, PointConfig

if TYPE_CHECKING:
    from watchpost.settings import GatewayConfig

MAX_DECIMALS = 6
SIGNIFICANT = 7  # a float32 carries about 7 significant decimal digits
EXPONENT_ABOVE = 1e15
EXPONENT_BELOW = 1e-6

TEXT_ON = _("on")
TEXT_OFF = _("off")
TEXT_NONE = "-"

# The codes the daemon reports (states, qualities, alarm levels and events), as a person
# reads them. JSON and MQTT keep the codes; only tables and pages show these words.
TEXT_CODES = {
    "online": _("online"),
    "offline": _("offline"),
    "running": _("running"),
    "stopped": _("stopped"),
    "synced": _("synchronised"),
    "unsynced": _("not synchronised"),
    "rtc": _("real-time clock"),
    "unknown": _("unknown"),
    "ok": _("ok"),
    "good": _("good"),
    "bad": _("bad"),
    "comm": _("no communication"),
    "stale": _("stale"),
    "normal": _("normal"),
    "latched": _("latched"),
    "acknowledged": _("acknowledged"),
    "unacknowledged": _("unacknowledged"),
    "shelved": _("shelved"),
    "unshelved": _("unshelved"),
    "raised": _("raised"),
    "cleared": _("cleared"),
    "prealarm": _("prealarm"),
    "alarm": _("alarm"),
    "critical": _("critical"),
    "fault": _("fault"),
    "pending": _("pending"),
    "in_force": _("in force"),
    "ended": _("ended"),
    "cancelled": _("cancelled"),
}


# Engineering units as the config writes them (ASCII), and as a site in the reader's
# language writes them (the Chinese catalogue: ℃, m³/min, kW·h).
TEXT_UNITS = {
    "degC": _("degC"),
    "degF": _("degF"),
    "m3": _("m3"),
    "m3/h": _("m3/h"),
    "m3/min": _("m3/min"),
    "kWh": _("kWh"),
    "kvarh": _("kvarh"),
    "m/s": _("m/s"),
}


def unit(text: object) -> str:
    """An engineering unit as the reader's site writes it; an unknown one as it is."""
    written = str(text or "")
    return TEXT_UNITS.get(written, written)


def word(code: object) -> str:
    """A reported code (``comm``, ``raised``, ``critical``) in the reader's language; an
    unknown code as it is."""
    text = str(code)
    return TEXT_CODES.get(text, text)


def decimals_of(number: float) -> int:
    """Decimal places ``number`` is written with: 0.1 -> 1, 0.25 -> 2, 10 -> 0."""
    exponent = Decimal(repr(float(number))).normalize().as_tuple().exponent
    return min(MAX_DECIMALS, max(0, -int(exponent)))


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one point's values are written; ``decimals`` None: no fixed resolution."""

    decimals: int | None = None
    boolean: bool = False

    @classmethod
    def of(cls, point: PointBase) -> Resolution:
        """The resolution the point's type, scale and offset give (Modbus points; others
        are written as read)."""
        if not isinstance(point, PointConfig):
            return cls()
        if point.type == "bool":
            return cls(boolean=True)
        if point.type == "float32":
            return cls()
        return cls(max(decimals_of(point.scale), decimals_of(point.offset)))

    def finer(self, extra: int = 1) -> Resolution:
        """The same with ``extra`` more decimals (for means of values at this resolution)."""
        if self.decimals is None or self.boolean:
            return self
        return Resolution(min(MAX_DECIMALS, self.decimals + extra))

    def format(self, value: object) -> str:
        """``value`` as a crew reads it; ``-`` for no value."""
        if value is None:
            return TEXT_NONE
        if isinstance(value, bool) or (self.boolean and isinstance(value, int | float)):
            return TEXT_ON if value else TEXT_OFF
        if not isinstance(value, int | float):
            return str(value)
        return format_number(float(value), self.decimals)


DEFAULT_RESOLUTION = Resolution()  # a point whose resolution is not known


def format_number(value: float, decimals: int | None = None) -> str:
    """``value`` with ``decimals`` places, or to 7 significant digits when None."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= EXPONENT_ABOVE or (0 < magnitude < EXPONENT_BELOW and decimals is None):
        return f"{value:.{SIGNIFICANT - 1}e}"
    if decimals is None:
        digits = 0 if magnitude == 0 else math.floor(math.log10(magnitude)) + 1
        places = min(MAX_DECIMALS + 3, max(0, SIGNIFICANT - digits))
        text = f"{value:.{places}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    else:
        text = f"{value:.{decimals}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text


def formats_of(config: GatewayConfig) -> dict[str, Resolution]:
    """Every configured point's resolution, by point name."""
    return {point.name: Resolution.of(point) for _device, point in config.points()}


def format_for(formats: Mapping[str, Resolution], point: str, value: object) -> str:
    """``value`` of ``point`` (default resolution for a point not in ``formats``)."""
    return formats.get(point, Resolution()).format(value)
