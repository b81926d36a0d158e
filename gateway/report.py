"""`watchpost report`: the commissioning report, one self-contained HTML page.

It reads ``history.db`` (see ``history.py``) straight from disk and read-only (no file is
created next to it), so it works whether the daemon runs or not, and needs no network: no
scripts, no fonts, no images from elsewhere; the plots are inline SVG drawn by
``report_plot.py``. The page holds the gateway's identity (site, id, version, its
certificate), the period covered, a plot of every point (see ``report_plot``), the alarm
events to the second, communication per device and the backlog. Values are written at
each point's resolution (``display.py``), as `status` and `alarms` write them.

Decision: hand-written SVG, not a plotting library. The page must open offline from one
file, print, and read in a mail client or a locked-down browser that runs no scripts; an
inlined script library (uPlot, ~50 kB, canvas) would need JavaScript for every plot and
could not be checked by reading the HTML. What the plots need (round ticks, time axis,
steps, event markers) is about 300 lines here.

Exceptions::

    ReportError            the report cannot be made; its message says why and whether
                           running it again later helps (``exit_status`` for the CLI)
"""

from __future__ import annotations

import argparse
import html
import sqlite3
import sys
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost import __version__, i18n
from watchpost.config import EXIT_CONFIG, ConfigError, GatewayConfig, load_config
from watchpost.config import print_config_error as _print_config_error
from watchpost.config.alarms import ThresholdRule
from watchpost.display import DEFAULT_RESOLUTION, Resolution, unit, word
from watchpost.history import (
    MINUTE_MS,
    History,
    HistoryError,
    MinuteRow,
    NoHistoryError,
    history_path,
    read_history,
    summarize_rows,
)
from watchpost.report_plot import EVENT_COLOURS, LEVEL_COLOURS, PlotSpec, marker, plot_svg
from watchpost.store import read_backlog

EXIT_NO_HISTORY = 66  # EX_NOINPUT: nothing to report yet
EXIT_FAILED = 1

# -- user-facing text: one place, for translation ---------------------------------------------

TEXT_HELP = _(
    "write the commissioning report: one HTML page with plots, alarms, communication and identity"
)
TEXT_CONFIG_HELP = _("the gateway's config file")
TEXT_OUT_HELP = _("the HTML file to write (default: report-SITE-GATEWAY.html here)")
TEXT_SINCE_HELP = _(
    "start of the period, ISO 8601 (UTC unless a zone is given), e.g. 2025-03-01T08:00"
)
TEXT_HOURS_HELP = _("the period is the last N hours")
TEXT_HISTORY_HELP = _("the history file itself, instead of the one the config names")
TEXT_WRITTEN = _(
    "report written: {path} ({points} points, {alarms} alarm events, {start} to {end} {zone})"
)
TEXT_NO_HISTORY = _(
    "no history yet: {error}. The daemon records it once a minute while it "
    "runs with [history] enabled; run the report again after a few minutes "
    "of polling."
)
TEXT_BAD_HISTORY = _(
    "cannot read the history: {error}. Running again will not help; the "
    "daemon moves a damaged history aside and starts afresh."
)
TEXT_BAD_SINCE = _("{value!r} is not an ISO 8601 time, e.g. 2025-03-01T08:00")
TEXT_CANNOT_WRITE = _("cannot write {path}: {error}")

TEXT_TITLE = _("Commissioning report: {site} / {gateway}")
TEXT_IDENTITY = _("Gateway")
TEXT_SITE = _("Site")
TEXT_GATEWAY_ID = _("Gateway id")
TEXT_VERSION = _("Software version")
TEXT_BROKER = _("Broker")
TEXT_CERT_SUBJECT = _("Certificate subject")
TEXT_CERT_ISSUER = _("Certificate issuer")
TEXT_CERT_FINGERPRINT = _("Certificate SHA-256")
TEXT_CERT_EXPIRY = _("Certificate valid until")
TEXT_CERT_NONE = _("no client certificate configured ([uplink] cert_file)")
TEXT_CERT_UNREADABLE = _("certificate unreadable: {error}")
TEXT_PERIOD = _("Period")
TEXT_PERIOD_VALUE = _("{start} to {end} {zone} ({minutes} minutes with records)")
TEXT_GENERATED = _("Generated")
TEXT_HISTORY_FILE = _("History file")
TEXT_SUMMARY = _("Points at a glance")
TEXT_POINTS = _("Points")
TEXT_ALARMS = _("Alarm events")
TEXT_NO_ALARM_EVENTS = _("No alarm events in the period.")
TEXT_COMM = _("Communication per device")
TEXT_NO_COMM = _("No communication counters in the period.")
TEXT_BACKLOG = _("Store backlog (not yet acknowledged by the broker)")
TEXT_NO_STORE = _("no store file at {path}")
TEXT_STORE_UNREADABLE = _("store unreadable: {error}")
TEXT_BACKLOG_EMPTY = _("Nothing waiting: everything reached the broker.")
TEXT_NO_READINGS = _("No readings recorded in the period.")
TEXT_NOT_CONFIGURED = _("not in the current config")
LEGEND = (
    ("band", _("lowest to highest good value per minute")),
    ("mean", _("mean per minute")),
    ("state", _("on/off points: state per minute")),
    ("threshold", _("alarm threshold")),
    ("failed", _("minute with failed reads")),
    ("raised", _("alarm raised")),
    ("cleared", _("alarm cleared")),
    ("acknowledged", _("alarm acknowledged")),
    ("shelved", _("alarm shelved or unshelved")),
)
TEXT_TEST = _("test")
TEXT_SHARE_ON = _("on {share} of the time")  # share: "70 %", formatted before
TEXT_TIMES_IN = _("All times are {zone}.")
TEXT_ZONE = _("{name} time (UTC{offset})")
TEXT_CHINA_TIME = _("China Standard Time (UTC+08:00)")
CHINA_ZONES = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Harbin", "PRC"})

COLUMNS_SUMMARY = (
    _("point"),
    _("device"),
    _("unit"),
    _("good samples"),
    _("bad"),
    _("no answer"),
    _("min"),
    _("mean"),
    _("max"),
    _("alarm thresholds"),
)
COLUMNS_ALARMS = (
    _("time"),
    _("alarm"),
    _("event"),
    _("level"),
    _("value"),
    _("threshold"),
    _("by"),
    _("note"),
)
COLUMNS_COMM = (
    _("device"),
    _("bus"),
    _("polls"),
    _("failed polls"),
    _("answer rate"),
    _("minutes with failures"),
)
COLUMNS_BACKLOG = (_("stream"), _("waiting messages"), _("items"), _("oldest"))
TEXT_ALARM_COUNTS = _(
    "{raised} raised, {cleared} cleared, {acknowledged} acknowledged, {shelved} shelved"
)

STYLE = """
body{font-family:sans-serif;margin:2em;color:#222;max-width:60em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
h3{font-size:1em;margin:1.5em 0 .3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;font-size:.9em}th{background:#f2f2f2}td.n{text-align:right}
.note{color:#555;font-size:.85em}.bad{color:#b00}svg{display:block;margin:.3em 0}
.legend{list-style:none;padding:0;margin:.5em 0}.legend li{display:inline-block;
margin:0 1.2em .3em 0;font-size:.85em;white-space:nowrap}.legend svg{display:inline-block;
vertical-align:middle;margin:0 .3em 0 0}
@media print{h2{page-break-before:auto}.point{page-break-inside:avoid}}
"""


class ReportError(Exception):
    """The report cannot be made; the message says why, ``exit_status`` is for the CLI."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class PointInfo:
    """What the report shows of a point besides its history."""

    name: str
    device: str = ""
    unit: str = ""
    description: str = ""
    thresholds: tuple[tuple[str, str, float], ...] = ()  # (rule name, level, value)
    configured: bool = True
    resolution: Resolution = DEFAULT_RESOLUTION

    def plot_spec(self) -> PlotSpec:
        return PlotSpec(self.name, unit(self.unit), self.resolution, self.thresholds)


@dataclass
class Identity:
    """Who the gateway is, for the page's head."""

    site: str
    gateway: str
    version: str = __version__
    broker: str = ""
    certificate: dict[str, str] = field(default_factory=dict)
    certificate_note: str = ""


# -- building the page ---------------------------------------------------------------------


def points_of(config: GatewayConfig) -> list[PointInfo]:
    """The configured points with their units and threshold rules, in config order."""
    infos = []
    for device, point in config.points():
        thresholds = tuple(
            (rule.name, rule.level, rule.threshold)
            for rule in point.alarms
            if isinstance(rule, ThresholdRule)
        )
        infos.append(
            PointInfo(
                point.name,
                device.name,
                point.unit,
                point.description,
                thresholds,
                resolution=Resolution.of(point),
            )
        )
    return infos


def buses_of(config: GatewayConfig) -> dict[str, str]:
    """The bus of every configured device."""
    return {device.name: device.bus for device in config.devices}


def identity_of(config: GatewayConfig) -> Identity:
    """Site, id, version and the client certificate's subject, fingerprint and expiry."""
    ident = Identity(config.gateway.site, config.gateway.id, broker=config.uplink.broker)
    cert_file = config.uplink.cert_file
    if cert_file is None:
        ident.certificate_note = TEXT_CERT_NONE
        return ident
    from watchpost.provisioning import pki  # noqa: PLC0415 - cryptography only when needed

    try:
        cert = pki.load_certificate(cert_file)
    except pki.PkiError as exc:
        ident.certificate_note = TEXT_CERT_UNREADABLE.format(error=exc)
        return ident
    ident.certificate = {
        TEXT_CERT_SUBJECT: cert.subject.rfc4514_string(),
        TEXT_CERT_ISSUER: cert.issuer.rfc4514_string(),
        TEXT_CERT_FINGERPRINT: pki.fingerprint(cert),
        TEXT_CERT_EXPIRY: cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"),
    }
    return ident


def render(
    identity: Identity,
    points: Sequence[PointInfo],
    history: History,
    *,
    backlog: dict[str, Any] | str,
    history_file: Path | None = None,
    generated_ms: int | None = None,
    buses: Mapping[str, str] | None = None,
    zone: tzinfo = UTC,
) -> str:
    """The whole page as a string, its times in ``zone`` (the site's)."""
    known = {p.name for p in points}
    infos = [
        *points,
        *(
            PointInfo(name, configured=False)
            for name in sorted(history.points)
            if name not in known
        ),
    ]
    start, end = period_of(history, generated_ms)
    title = TEXT_TITLE.format(site=identity.site, gateway=identity.gateway)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{i18n.current_language()}">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f"<h2>{_e(TEXT_IDENTITY)}</h2>",
        _identity_table(
            identity,
            history,
            start,
            end,
            history_file=history_file,
            generated_ms=generated_ms,
            zone=zone,
        ),
        f'<p class="note">{_e(TEXT_TIMES_IN.format(zone=zone_name(zone, end)))}</p>',
        f"<h2>{_e(TEXT_SUMMARY)}</h2>",
        _summary_table(infos, history),
        f"<h2>{_e(TEXT_POINTS)}</h2>",
        legend_html(),
    ]
    for info in infos:
        events = [a for a in history.alarms if a.get("point") == info.name]
        parts.append(
            _point_section(info, history.points.get(info.name, []), start, end, events, zone=zone)
        )
    formats = {info.name: info.resolution for info in infos}
    parts += [
        f"<h2>{_e(TEXT_ALARMS)}</h2>",
        _alarms_section(history.alarms, formats, zone),
        f"<h2>{_e(TEXT_COMM)}</h2>",
        _comm_table(history, buses or {}),
        f"<h2>{_e(TEXT_BACKLOG)}</h2>",
        _backlog_section(backlog, zone),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def period_of(history: History, generated_ms: int | None = None) -> tuple[int, int]:
    """First and last moment with a record, the end never past ``generated_ms``."""
    start = history.first_ms or history.since_ms
    end = history.last_ms or history.until_ms
    if generated_ms is not None:
        end = min(end, generated_ms)
    return start, max(start, end)


def minutes_with_records(history: History) -> int:
    """Minutes in which a point has a sample (good or not). Communication counters do not
    count: they are gathered per flush, not per minute."""
    return len(
        {
            r.minute
            for rows in history.points.values()
            for r in rows
            if r.good or r.bad or r.comm or r.stale
        }
    )


def legend_html() -> str:
    """The key to the plots' marks, once above them."""
    swatches = {
        "band": '<rect x="2" y="3" width="24" height="8" fill="#9ec5e8" stroke="#5b9bd5"/>',
        "mean": '<line x1="2" y1="7" x2="26" y2="7" stroke="#1f4e79" stroke-width="1.5"/>',
        "state": '<polyline points="2,11 12,11 12,3 26,3" fill="none" stroke="#1f4e79" '
        'stroke-width="2"/>',
        "threshold": f'<line x1="2" y1="7" x2="26" y2="7" stroke="{LEVEL_COLOURS["alarm"]}" '
        'stroke-dasharray="6 3"/>',
        "failed": '<rect x="2" y="5" width="24" height="4" fill="#d0021b"/>',
        "raised": marker("raised", 14, 7, LEVEL_COLOURS["alarm"]),
        "cleared": marker("cleared", 14, 7, EVENT_COLOURS["cleared"]),
        "acknowledged": marker("acknowledged", 14, 7, EVENT_COLOURS["acknowledged"]),
        "shelved": marker("shelved", 14, 7, EVENT_COLOURS["shelved"]),
    }
    items = "".join(
        f'<li data-key="{key}"><svg xmlns="http://www.w3.org/2000/svg" width="28" height="14" '
        f'viewBox="0 0 28 14" aria-hidden="true">{swatches[key]}</svg>{_e(text)}</li>'
        for key, text in LEGEND
    )
    return f'<ul class="legend">{items}</ul>'


def _identity_table(
    identity: Identity,
    history: History,
    start: int,
    end: int,
    *,
    history_file: Path | None,
    generated_ms: int | None,
    zone: tzinfo,
) -> str:
    minutes = minutes_with_records(history)
    rows: list[tuple[str, str]] = [
        (TEXT_SITE, identity.site),
        (TEXT_GATEWAY_ID, identity.gateway),
        (TEXT_VERSION, identity.version),
        (TEXT_BROKER, identity.broker),
    ]
    rows += list(identity.certificate.items())
    if identity.certificate_note:
        rows.append((TEXT_CERT_SUBJECT, identity.certificate_note))
    rows.append(
        (
            TEXT_PERIOD,
            TEXT_PERIOD_VALUE.format(
                start=_when(start, zone),
                end=_when(end, zone),
                zone=zone_name(zone, end),
                minutes=minutes,
            ),
        )
    )
    if history_file is not None:
        rows.append((TEXT_HISTORY_FILE, str(history_file)))
    if generated_ms is not None:
        rows.append(
            (TEXT_GENERATED, f"{_when(generated_ms, zone)} {zone_name(zone, generated_ms)}")
        )
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="identity">{body}</table>'


def _summary_table(infos: Sequence[PointInfo], history: History) -> str:
    rows = []
    for info in infos:
        totals = summarize_rows(history.points.get(info.name, []))
        fmt = info.resolution
        thresholds = ", ".join(
            f"{name} {fmt.format(value)}" for name, _lvl, value in info.thresholds
        )
        rows.append(
            [
                f'<a href="#point-{_e(info.name)}">{_e(info.name)}</a>',
                _e(info.device),
                _e(unit(info.unit)),
                _n(str(totals["good"])),
                _n(str(totals["bad"]), bad=totals["bad"] > 0),
                _n(str(totals["comm"]), bad=totals["comm"] > 0),
                _n(fmt.format(totals["min"])),
                _n(_mean(fmt, totals["mean"])),
                _n(fmt.format(totals["max"])),
                _e(thresholds),
            ]
        )
    return _table(COLUMNS_SUMMARY, rows, raw=True)


def _point_section(
    info: PointInfo,
    rows: Sequence[MinuteRow],
    start: int,
    end: int,
    events: Sequence[Mapping[str, Any]],
    *,
    zone: tzinfo,
) -> str:
    heading = info.name + (f" ({unit(info.unit)})" if info.unit else "")
    parts = [f'<div class="point" id="point-{_e(info.name)}">', f"<h3>{_e(heading)}</h3>"]
    notes = [
        text
        for text in (info.description, info.device, "" if info.configured else TEXT_NOT_CONFIGURED)
        if text
    ]
    if notes:
        parts.append(f'<p class="note">{_e(" · ".join(notes))}</p>')
    if not any(r.good or r.bad or r.comm or r.stale for r in rows):
        parts.append(f'<p class="bad">{_e(TEXT_NO_READINGS)}</p>')
    else:
        parts.append(plot_svg(info.plot_spec(), rows, start, end, events=events, zone=zone))
    parts.append("</div>")
    return "\n".join(parts)


def _alarms_section(
    alarms: Sequence[dict[str, Any]], formats: Mapping[str, Resolution], zone: tzinfo
) -> str:
    if not alarms:
        return f"<p>{_e(TEXT_NO_ALARM_EVENTS)}</p>"
    counts = {
        name: sum(1 for a in alarms if a.get("event") == name)
        for name in ("raised", "cleared", "acknowledged", "shelved")
    }
    rows = []
    for a in alarms:
        event = word(a.get("event", "")) + (f" ({TEXT_TEST})" if a.get("test") else "")
        note = a.get("note") or a.get("detail") or ""
        fmt = formats.get(str(a.get("point", "")), Resolution())
        rows.append(
            [
                _when(a.get("decided_ts"), zone),
                str(a.get("alarm", "")),
                event,
                word(a.get("level", "")),
                fmt.format(a.get("value")),
                fmt.format(a.get("threshold")),
                str(a.get("by") or ""),
                str(note),
            ]
        )
    return f"<p>{_e(TEXT_ALARM_COUNTS.format(**counts))}</p>" + _table(COLUMNS_ALARMS, rows)


def _comm_table(history: History, buses: Mapping[str, str]) -> str:
    if not history.comm:
        return f"<p>{_e(TEXT_NO_COMM)}</p>"
    rows = []
    for device, minutes in sorted(history.comm.items()):
        polls = sum(r.polls for r in minutes)
        failures = sum(r.failures for r in minutes)
        rate = f"{100 * (polls - failures) / polls:.1f} %" if polls else "-"
        failing = sum(1 for r in minutes if r.failures)
        rows.append(
            [
                _e(device),
                _e(buses.get(device, "")),
                _n(str(polls)),
                _n(str(failures), bad=failures > 0),
                _n(rate, bad=failures > 0),
                _n(str(failing), bad=failing > 0),
            ]
        )
    return _table(COLUMNS_COMM, rows, raw=True)


def _backlog_section(backlog: dict[str, Any] | str, zone: tzinfo) -> str:
    if isinstance(backlog, str):
        return f'<p class="bad">{_e(backlog)}</p>'
    streams = backlog.get("streams", {})
    rows = [
        [name, str(s.get("depth", 0)), str(s.get("items") or 0), _when(s.get("oldest_ts"), zone)]
        for name, s in sorted(streams.items())
    ]
    waiting = any(s.get("depth") for s in streams.values())
    head = "" if waiting else f"<p>{_e(TEXT_BACKLOG_EMPTY)}</p>"
    return head + _table(COLUMNS_BACKLOG, rows)


# -- small helpers ------------------------------------------------------------------------------


def _mean(fmt: Resolution, mean: float | None) -> str:
    """A mean at one decimal more than the values; an on/off point's as its share of on."""
    if fmt.boolean and mean is not None:
        return TEXT_SHARE_ON.format(share=f"{100 * mean:.0f} %")
    return fmt.finer().format(mean)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(text: str, *, bad: bool = False) -> str:
    return f'<span class="{"bad" if bad else ""}">{_e(text)}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, raw: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if raw else _e(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(ts: object, zone: tzinfo = UTC) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return datetime.fromtimestamp(ts / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")


def site_zone(config: GatewayConfig) -> tzinfo:
    """The zone the report writes times in: ``[gateway] timezone``, else UTC."""
    name = config.gateway.timezone
    return zoneinfo.ZoneInfo(name) if name else UTC


def zone_name(zone: tzinfo, at_ms: int) -> str:
    """``UTC``, or e.g. ``Asia/Shanghai time (UTC+08:00)`` at the moment ``at_ms``."""
    if zone is UTC:
        return "UTC"
    if str(zone) in CHINA_ZONES:
        return TEXT_CHINA_TIME  # what Chinese sites write: 北京时间
    offset = datetime.fromtimestamp(at_ms / 1000, zone).strftime("%z")
    return TEXT_ZONE.format(name=zone, offset=f"{offset[:3]}:{offset[3:]}")


# -- the `watchpost report` command ------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("report", help=TEXT_HELP)
    parser.add_argument(
        "--config", type=Path, default=Path("/etc/watchpost/gateway.toml"), help=TEXT_CONFIG_HELP
    )
    parser.add_argument("--out", type=Path, help=TEXT_OUT_HELP)
    period = parser.add_mutually_exclusive_group()
    period.add_argument("--since", type=since_argument, help=TEXT_SINCE_HELP)
    period.add_argument("--hours", type=float, help=TEXT_HOURS_HELP)
    parser.add_argument("--history", type=Path, help=TEXT_HISTORY_HELP)
    parser.set_defaults(handler=_report)


def make_report(
    config: GatewayConfig,
    *,
    history_file: Path | None = None,
    since_ms: int | None = None,
    now_ms: int | None = None,
) -> tuple[str, History]:
    """The page for ``config`` over ``[since_ms, now)``; raises ReportError."""
    now = now_ms if now_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    path = history_file or default_history_file(config)
    try:
        history = read_history(path, since_ms=since_ms, until_ms=now + MINUTE_MS)
    except NoHistoryError as exc:
        raise ReportError(TEXT_NO_HISTORY.format(error=exc), EXIT_NO_HISTORY) from exc
    except HistoryError as exc:
        raise ReportError(TEXT_BAD_HISTORY.format(error=exc)) from exc
    page = render(
        identity_of(config),
        points_of(config),
        history,
        backlog=_read_backlog(config.store.path),
        history_file=path,
        generated_ms=now,
        buses=buses_of(config),
        zone=site_zone(config),
    )
    return page, history


def default_history_file(config: GatewayConfig) -> Path:
    """The history the daemon writes with this config."""
    state_dir = config.gateway.state_dir or Path(config.store.path).parent
    return history_path(config.history, state_dir)


def parse_since(text: str) -> int:
    """ISO 8601 to UTC epoch ms; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(TEXT_BAD_SINCE.format(value=text)) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def since_argument(text: str) -> int:
    """``--since`` for argparse: a bad time is a usage error (exit status 2)."""
    try:
        return parse_since(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _read_backlog(path: Path) -> dict[str, Any] | str:
    if not path.exists():
        return TEXT_NO_STORE.format(path=path)
    try:
        return read_backlog(path)
    except sqlite3.Error as exc:
        return TEXT_STORE_UNREADABLE.format(error=exc)


def _report(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    now = datetime.now(UTC)
    try:
        since_ms = None
        if args.since is not None:
            since_ms = args.since
        elif args.hours is not None:
            since_ms = int((now - timedelta(hours=args.hours)).timestamp() * 1000)
        page, history = make_report(
            config, history_file=args.history, since_ms=since_ms, now_ms=int(now.timestamp() * 1000)
        )
    except ReportError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_status
    out = args.out or Path(f"report-{config.gateway.site}-{config.gateway.id}.html")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(TEXT_CANNOT_WRITE.format(path=out, error=exc), file=sys.stderr)
        return EXIT_FAILED
    print(
        TEXT_WRITTEN.format(
            path=out,
            points=len(history.points),
            alarms=len(history.alarms),
            start=_when(history.first_ms, site_zone(config)),
            end=_when(history.last_ms, site_zone(config)),
            zone=zone_name(site_zone(config), history.last_ms or 0),
        )
    )
    return 0
