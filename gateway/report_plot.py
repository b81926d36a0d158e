"""The report's plots: one inline SVG per point, drawn here (no script, no library).

A plot shows, per minute, the band from the lowest to the highest good value and the mean
line (an on/off point: its state as steps), the alarm thresholds as dashed lines labelled
at the right, the minutes with failed reads as red marks under the axis, and the alarm
events of the point as markers on a vertical line at the second they were decided:

    raised        a downward triangle in the level's colour
    cleared       a green circle
    acknowledged  a blue square
    shelved       a grey diamond (also unshelved)

Axes: y ticks are round numbers (1, 2 or 5 times a power of ten, never finer than the
point's resolution) spread over the values, so every label differs from the next; the x
axis has a tick every round interval (1 min ... 1 day) labelled HH:MM, with the date under
the first and wherever the day changes. Every text carries a class (``ytick``, ``xtick``,
``xdate``, ``unit``, ``tlabel``) so that a browser test can check that no two overlap.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from gettext import gettext as _
from typing import Any

from watchpost.display import DEFAULT_RESOLUTION, MAX_DECIMALS, Resolution, word
from watchpost.history import MINUTE_MS, MinuteRow

LEVEL_COLOURS = {
    "prealarm": "#d98c00",
    "alarm": "#d0021b",
    "critical": "#7a0010",
    "fault": "#6b6b6b",
}
EVENT_COLOURS = {
    "cleared": "#2e7d32",
    "acknowledged": "#1565c0",
    "shelved": "#757575",
    "unshelved": "#757575",
}
EVENT_NAMES = {
    "raised": _("raised"),
    "cleared": _("cleared"),
    "acknowledged": _("acknowledged"),
    "shelved": _("shelved"),
    "unshelved": _("unshelved"),
}
TEXT_EVENT_TITLE = _("{time} {event}: {alarm} ({level}) {value}")

# time steps for the x axis, in ms, from the finest
TIME_STEPS = [
    m * MINUTE_MS for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
]
MAX_X_TICKS = 8
Y_TICKS = 5
CHAR_PX = 6.6  # width of one character at font-size 11 (sans-serif), generous
FONT = 'font-size="11" font-family="sans-serif"'


@dataclass(frozen=True)
class PlotSpec:
    """What a plot needs to know of its point besides the rows."""

    name: str
    unit: str = ""
    resolution: Resolution = DEFAULT_RESOLUTION
    thresholds: tuple[tuple[str, str, float], ...] = ()  # (rule name, level, value)


def nice_ticks(low: float, high: float, min_step: float = 0.0) -> list[float]:
    """Round ticks covering ``[low, high]``: about five, 1, 2 or 5 times a power of ten
    apart, and not closer than ``min_step``. The first is at or below ``low``, the last at
    or above ``high``."""
    if not high > low:
        raise ValueError("high must be above low")
    raw = max((high - low) / Y_TICKS, min_step, 1e-12)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def tick_decimals(ticks: Sequence[float]) -> int:
    """Decimals that tell ticks this far apart apart."""
    step = ticks[1] - ticks[0]
    return min(MAX_DECIMALS + 3, max(0, -math.floor(math.log10(step) + 1e-9)))


def value_range(values: Sequence[float], resolution: Resolution) -> tuple[float, float]:
    """The span the y axis must show; a flat series gets a span around its value."""
    low, high = min(values), max(values)
    if high - low > 1e-12 * max(1.0, abs(high)):
        return low, high
    # a flat line in the middle, with round labels a little above and below it
    half = 10.0 ** (math.floor(math.log10(abs(high))) - 2) if high else 1.0
    if resolution.decimals is not None:
        half = max(half, 5 * 10.0**-resolution.decimals)
    return low - half, high + half


def time_ticks(start: int, end: int, offset_ms: int = 0) -> list[int]:
    """Times in ``[start, end]`` that are round on a clock ``offset_ms`` ahead of UTC (the
    site's zone), at most MAX_X_TICKS of them."""
    span = max(end - start, MINUTE_MS)
    step = next((s for s in TIME_STEPS if span / s <= MAX_X_TICKS - 1), TIME_STEPS[-1])
    first = -(-(start + offset_ms) // step) * step - offset_ms
    return list(range(first, end + 1, step))


def plot_svg(
    spec: PlotSpec,
    rows: Sequence[MinuteRow],
    start: int,
    end: int,
    *,
    events: Sequence[Mapping[str, Any]] = (),
    width: int = 760,
    height: int = 220,
    zone: tzinfo = UTC,
) -> str:
    """The plot of one point over ``[start, end]`` as inline SVG, its times in ``zone``."""
    end = max(end, start + MINUTE_MS)
    boolean = spec.resolution.boolean
    if boolean:
        ticks, labels, low, high = [0.0, 1.0], [_("off"), _("on")], -0.25, 1.25
    else:
        values = [v for r in rows for v in (r.low, r.high) if v is not None]
        values += [value for _n, _l, value in spec.thresholds]
        lo, hi = value_range(values or [0.0], spec.resolution)
        decimals = spec.resolution.decimals
        ticks = nice_ticks(lo, hi, 10.0**-decimals if decimals is not None else 0.0)
        places = tick_decimals(ticks)
        labels = [_fixed(t, places) for t in ticks]
        low, high = ticks[0], ticks[-1]
    t_labels = _threshold_labels(spec, boolean)
    # the same frame for every plot, wider only where its labels need it
    left = max(64, int(14 + CHAR_PX * max(len(label) for label in labels)))
    right = max(
        130, int(10 + CHAR_PX * max((len(n) + 1 + len(w) for n, w, _c, _v in t_labels), default=0))
    )
    top, bottom = 24, 46
    frame = _Frame(
        left, top, width - left - right, height - top - bottom, start, end, low, high, zone
    )
    label = _e(f"{spec.name} {spec.unit}".strip())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">',
        f'<rect x="{left}" y="{top}" width="{frame.w}" height="{frame.h}" fill="#fafafa" '
        'stroke="#999"/>',
    ]
    out += _y_axis(frame, ticks, labels, spec.unit)
    out += _x_axis(frame)
    out += _steps(frame, rows) if boolean else _bands(frame, rows)
    out += _thresholds(frame, t_labels)
    out += _failures(frame, rows)
    out += _events(frame, events, spec.resolution)
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class _Frame:
    left: float
    top: float
    w: float
    h: float
    start: int
    end: int
    low: float
    high: float
    zone: tzinfo = UTC

    def x(self, ms: float) -> float:
        return self.left + (ms - self.start) / (self.end - self.start) * self.w

    def y(self, value: float) -> float:
        return self.top + (self.high - value) / (self.high - self.low) * self.h


def _y_axis(f: _Frame, ticks: Sequence[float], labels: Sequence[str], unit: str) -> list[str]:
    out = []
    for tick, text in zip(ticks, labels, strict=True):
        ty = f.y(tick)
        out.append(
            f'<line x1="{f.left}" y1="{ty:.1f}" x2="{f.left + f.w}" y2="{ty:.1f}" '
            'stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text class="ytick" x="{f.left - 4}" y="{ty + 4:.1f}" {FONT} '
            f'text-anchor="end">{_e(text)}</text>'
        )
    if unit:
        out.append(
            f'<text class="unit" x="{f.left - 4}" y="{f.top - 10}" {FONT} '
            f'text-anchor="end">{_e(unit)}</text>'
        )
    return out


def _x_axis(f: _Frame) -> list[str]:
    out = []
    base = f.top + f.h + 20
    last_date = ""
    last_date_x = -1e9
    offset = datetime.fromtimestamp(f.start / 1000, f.zone).utcoffset()
    offset_ms = int(offset.total_seconds() * 1000) if offset else 0
    for ms in time_ticks(f.start, f.end, offset_ms):
        tx = f.x(ms)
        when = datetime.fromtimestamp(ms / 1000, f.zone)
        out.append(
            f'<line x1="{tx:.1f}" y1="{f.top + f.h}" x2="{tx:.1f}" y2="{f.top + f.h + 8}" '
            'stroke="#999"/>'
        )
        out.append(
            f'<text class="xtick" x="{tx:.1f}" y="{base}" {FONT} text-anchor="middle">'
            f"{when:%H:%M}</text>"
        )
        date = f"{when:%Y-%m-%d}"
        if date != last_date and tx - last_date_x > 12 * CHAR_PX:
            out.append(
                f'<text class="xdate" x="{tx:.1f}" y="{base + 14}" {FONT} '
                f'text-anchor="middle" fill="#555">{date}</text>'
            )
            last_date, last_date_x = date, tx
    return out


def _bands(f: _Frame, rows: Sequence[MinuteRow]) -> list[str]:
    out = []
    for segment in _segments(rows):
        upper = [
            p
            for ts, _lo, _mean, hi in segment
            for p in ((f.x(ts), f.y(hi)), (f.x(ts + MINUTE_MS), f.y(hi)))
        ]
        lower = [
            p
            for ts, lo, _mean, _hi in reversed(segment)
            for p in ((f.x(ts + MINUTE_MS), f.y(lo)), (f.x(ts), f.y(lo)))
        ]
        out.append(
            f'<polygon class="band" points="{_pts(upper + lower)}" fill="#9ec5e8" '
            'fill-opacity="0.6" stroke="#5b9bd5" stroke-width="0.5"/>'
        )
        mean = [(f.x(ts + MINUTE_MS / 2), f.y(m)) for ts, _lo, m, _hi in segment]
        if len(mean) > 1:
            out.append(
                f'<polyline class="mean" points="{_pts(mean)}" fill="none" '
                'stroke="#1f4e79" stroke-width="1.5"/>'
            )
        else:
            out.append(
                f'<circle class="mean" cx="{mean[0][0]:.1f}" cy="{mean[0][1]:.1f}" r="2" '
                'fill="#1f4e79"/>'
            )
    return out


def _steps(f: _Frame, rows: Sequence[MinuteRow]) -> list[str]:
    """An on/off point: its state per minute as a step line; a minute in which it was both
    on and off is shaded over the full height."""
    out = []
    for segment in _segments(rows):
        points: list[tuple[float, float]] = []
        for ts, lo, mean, hi in segment:
            state = 1.0 if mean >= 0.5 else 0.0
            points += [(f.x(ts), f.y(state)), (f.x(ts + MINUTE_MS), f.y(state))]
            if lo != hi:
                out.append(
                    f'<rect class="both" x="{f.x(ts):.1f}" y="{f.y(1.0):.1f}" '
                    f'width="{f.x(ts + MINUTE_MS) - f.x(ts):.1f}" '
                    f'height="{f.y(0.0) - f.y(1.0):.1f}" fill="#9ec5e8" fill-opacity="0.5"/>'
                )
        out.append(
            f'<polyline class="state" points="{_pts(points)}" fill="none" stroke="#1f4e79" '
            'stroke-width="2"/>'
        )
    return out


def _threshold_labels(spec: PlotSpec, boolean: bool) -> list[tuple[str, str, str, float]]:
    """(rule name, value as written, colour, value) of each threshold line."""
    if boolean:
        return []
    return [
        (name, spec.resolution.format(value), LEVEL_COLOURS.get(level, "#d0021b"), value)
        for name, level, value in spec.thresholds
    ]


def _thresholds(f: _Frame, labels: Sequence[tuple[str, str, str, float]]) -> list[str]:
    out = []
    placed: list[float] = []
    for name, written, colour, value in sorted(labels, key=lambda item: -item[3]):
        ty = f.y(value)
        out.append(
            f'<line class="threshold" x1="{f.left}" y1="{ty:.1f}" x2="{f.left + f.w}" '
            f'y2="{ty:.1f}" stroke="{colour}" stroke-dasharray="6 3" '
            f'data-rule="{_e(name)}" data-value="{_e(written)}"/>'
        )
        # labels at least 13 px apart: two close thresholds do not write over each other
        label_y = max([ty + 4, *(p + 13 for p in placed)])
        placed.append(label_y)
        out.append(
            f'<text class="tlabel" x="{f.left + f.w + 4}" y="{label_y:.1f}" {FONT} '
            f'fill="{colour}">{_e(f"{name} {written}")}</text>'
        )
    return out


def _failures(f: _Frame, rows: Sequence[MinuteRow]) -> list[str]:
    return [
        f'<rect class="failed" x="{f.x(r.ts):.1f}" y="{f.top + f.h + 2}" '
        f'width="{max(f.x(r.ts + MINUTE_MS) - f.x(r.ts), 1):.1f}" height="4" fill="#d0021b"/>'
        for r in rows
        if r.bad or r.comm or r.stale
    ]


def _events(f: _Frame, events: Sequence[Mapping[str, Any]], res: Resolution) -> list[str]:
    out = []
    for event in events:
        ts = event.get("decided_ts")
        kind = str(event.get("event", ""))
        if not isinstance(ts, int) or not f.start <= ts <= f.end or kind not in EVENT_NAMES:
            continue
        ex = f.x(ts)
        level = str(event.get("level", ""))
        colour = LEVEL_COLOURS.get(level, "#d0021b") if kind == "raised" else EVENT_COLOURS[kind]
        title = TEXT_EVENT_TITLE.format(
            time=datetime.fromtimestamp(ts / 1000, f.zone).strftime("%H:%M:%S"),
            event=EVENT_NAMES[kind],
            alarm=event.get("alarm", ""),
            level=word(level),
            value=res.format(event.get("value")),
        )
        out.append(
            f'<g class="event" data-event="{_e(kind)}" data-ts="{ts}"><title>{_e(title)}</title>'
            f'<line x1="{ex:.1f}" y1="{f.top}" x2="{ex:.1f}" y2="{f.top + f.h}" '
            f'stroke="{colour}" stroke-width="1" stroke-dasharray="2 2"/>'
            f"{marker(kind, ex, f.top - 5, colour)}</g>"
        )
    return out


def marker(kind: str, cx: float, cy: float, colour: str) -> str:
    """The symbol of an alarm event (also used by the page's legend)."""
    if kind == "raised":
        return f'<path d="M{cx - 5:.1f},{cy - 4:.1f}h10l-5,8z" fill="{colour}"/>'
    if kind == "cleared":
        return (
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#fff" stroke="{colour}" '
            'stroke-width="2"/>'
        )
    if kind == "acknowledged":
        return f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    return f'<path d="M{cx:.1f},{cy - 5:.1f}l5,5l-5,5l-5,-5z" fill="{colour}"/>'


def _segments(rows: Sequence[MinuteRow]) -> list[list[tuple[int, float, float, float]]]:
    """Runs of consecutive minutes with good values, as (ts, low, mean, high): the band
    breaks where readings are missing."""
    segments: list[list[tuple[int, float, float, float]]] = []
    last = None
    for row in rows:
        if row.low is None or row.mean is None or row.high is None:
            continue
        point = (row.ts, row.low, row.mean, row.high)
        if segments and last == row.minute - 1:
            segments[-1].append(point)
        else:
            segments.append([point])
        last = row.minute
    return segments


def _fixed(value: float, places: int) -> str:
    text = f"{value:.{places}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text


def _pts(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
