"""`watchpost report` from a history the test builds on a fake clock: values, thresholds,
alarms, communication and identity in the page, and the page's HTML well formed."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.kit.clock import FakeClock
from tests.site_run import DEMO
from watchpost.alarms import AlarmEngine
from watchpost.cli import main
from watchpost.config import load_config
from watchpost.history import MINUTE_MS, HistoryRecorder, read_history
from watchpost.provisioning import pki
from watchpost.report import (
    EXIT_NO_HISTORY,
    ReportError,
    make_report,
    parse_since,
    points_of,
    render,
)
from watchpost.samples import Quality, Sample

T0 = 1_740_816_000_000  # 2025-03-01T08:00:00Z
VOID = {
    "meta",
    "br",
    "hr",
    "img",
    "input",
    "link",
    "line",
    "rect",
    "circle",
    "polygon",
    "polyline",
    "path",
}


class Structure(HTMLParser):
    """Checks that every element is closed in order; collects what the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.starts
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]


def parse(page: str) -> Structure:
    parser = Structure()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert parser.doctype.lower() == "doctype html"
    return parser


@dataclass
class Health:
    polls: int = 0
    failures: int = 0


@pytest.fixture
def site(tmp_path: Path):
    """The demo config with a client certificate, and ten minutes of history with an
    incident: ch4_face_1 climbs through both thresholds and falls back; the tank is silent
    for a minute."""
    key = pki.generate_key()
    cert = pki.create_ca(site="demo-colliery", common_name="gw-01 test", key=key, days=365)
    (tmp_path / "gw.crt").write_bytes(pki.pem(cert))
    pki.write_private_key(key, tmp_path / "gw.key")
    text = (
        (DEMO / "gateway.toml")
        .read_text()
        .replace(
            '[uplink]\nbroker = "mqtt://127.0.0.1:1883"',
            f'[uplink]\nbroker = "mqtts://127.0.0.1:8883"\ncert_file = "{tmp_path}/gw.crt"\n'
            f'key_file = "{tmp_path}/gw.key"',
        )
    )
    text = text.replace('path = "var/buffer.db"', f'path = "{tmp_path}/var/buffer.db"')
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(text)
    config = load_config(config_file)
    clock = FakeClock(T0)
    devices = {"face-station": Health(), "tank-1": Health()}
    recorder = HistoryRecorder(tmp_path / "history.db", devices=lambda: devices, now_ms=clock)
    engine = AlarmEngine({p.name: p.alarms for _d, p in config.points()}, clock)
    engine.add_listener(recorder.record_alarm)
    profile = [0.3, 0.6, 1.2, 1.7, 1.9, 1.4, 0.8, 0.4, 0.3, 0.3]  # %CH4 per minute
    for minute, ch4 in enumerate(profile):
        for second in range(0, 60, 2):
            clock.ms = ts = T0 + minute * MINUTE_MS + second * 1000
            value = ch4 + (0.05 if second % 4 else -0.05)
            tank = (
                Sample("tank1_level", ts, None, Quality.COMM)
                if minute == 6
                else Sample("tank1_level", ts, 4.2, Quality.GOOD)
            )
            samples = [Sample("ch4_face_1", ts, value, Quality.GOOD), tank]
            engine.evaluate(samples)
            recorder.observe(samples)
            devices["face-station"].polls += 1
            devices["tank-1"].polls += 1
            devices["tank-1"].failures += minute == 6
            if minute == 4 and second == 10:
                engine.acknowledge("ch4_face_1/high_critical", by="Li Wei", note="fan restarted")
        clock.ms = T0 + (minute + 1) * MINUTE_MS + 500
        recorder.write(recorder.take())
    recorder.close()
    return config, tmp_path / "history.db"


def test_the_page_shows_values_thresholds_alarms_and_communication(site):
    config, history_file = site
    page, history = make_report(config, history_file=history_file, now_ms=T0 + 11 * MINUTE_MS)
    doc = parse(page)
    text = " ".join(doc.text)
    # identity, with the certificate
    assert "demo-colliery" in text
    assert "gw-01" in text
    assert "CN=gw-01 test" in text
    cert = pki.load_certificate(Path(str(config.uplink.cert_file)))
    assert pki.fingerprint(cert) in text
    assert "2025-03-01 08:00:00 to 2025-03-01 08:10:00 UTC (10 minutes with records)" in text
    # every configured point has its section; the plotted ones an SVG with band and mean
    for _device, point in config.points():
        assert doc.find("div", id=f"point-{point.name}"), point.name
    svgs = [s for s in doc.find("svg") if "aria-label" in s]
    assert [s["aria-label"] for s in svgs] == ["ch4_face_1 %CH4", "tank1_level m"]
    assert len(doc.find("polygon", class_="band")) >= 2
    # ch4's thresholds as lines, with their values; the tank's too
    lines = {(a["data-rule"], a["data-value"]) for a in doc.find("line", class_="threshold")}
    assert {("high_alarm", "1.00"), ("high_critical", "1.50"), ("high_alarm", "8.5")} <= lines
    # the summary holds the true extremes: 1.9 + 0.05 and 0.3 - 0.05
    row = _summary_row(page, "ch4_face_1")
    assert row[3:9] == ["300", "0", "0", "0.25", f"{_mean(history):.3f}", "1.95"]
    # the tank's silent minute: counted, and marked under its plot
    assert _summary_row(page, "tank1_level")[5] == "30"
    assert len(doc.find("rect", class_="failed")) == 1
    # alarms raised, acknowledged and cleared, in time order
    events = [e for e in history.alarms if e["point"] == "ch4_face_1"]
    assert [(e["alarm"].split("/")[1], e["event"]) for e in events] == [
        ("high_alarm", "raised"),
        ("high_critical", "raised"),
        ("high_critical", "acknowledged"),
        ("high_critical", "cleared"),
        ("high_alarm", "cleared"),
    ]
    assert "Li Wei" in text
    assert "fan restarted" in text
    assert "2 raised, 2 cleared, 1 acknowledged, 0 shelved" in text
    # communication: the tank missed 30 of 300 polls
    assert ["tank-1", "tankfarm", "300", "30", "90.0 %", "1"] in _rows(page, "Communication")
    assert ["face-station", "face", "300", "0", "100.0 %", "0"] in _rows(page, "Communication")
    # no store yet: said so, not a crash
    assert "no store file at" in text


def test_alarm_events_are_marked_on_their_point_and_timed_to_the_second(site):
    config, history_file = site
    page, history = make_report(config, history_file=history_file, now_ms=T0 + 11 * MINUTE_MS)
    section = page[page.index('id="point-ch4_face_1"') : page.index('id="point-co_face_1"')]
    marks = re.findall(r'<g class="event" data-event="(\w+)" data-ts="(\d+)">', section)
    events = [e for e in history.alarms if e["point"] == "ch4_face_1"]
    assert marks == [(e["event"], str(e["decided_ts"])) for e in events]
    assert {kind for kind, _ts in marks} == {"raised", "acknowledged", "cleared"}
    assert '<g class="event"' not in page[page.index('id="point-tank1_level"') :]
    # the acknowledgement was at 08:04:10: the table says so to the second
    times = [row[0] for row in _rows(page, "Alarm events") if row[2] == "acknowledged"]
    assert times == ["2025-03-01 08:04:10"]


def test_the_period_ends_at_generated_and_counts_only_minutes_with_records(site):
    config, history_file = site
    generated = T0 + 9 * MINUTE_MS + 20_000  # in the last recorded minute
    page, _history = make_report(config, history_file=history_file, now_ms=generated)
    text = " ".join(parse(page).text)
    assert "2025-03-01 08:00:00 to 2025-03-01 09:20" not in text
    assert "2025-03-01 08:00:00 to 2025-03-01 08:09:20 UTC (10 minutes with records)" in text
    assert "Generated" in text
    assert "2025-03-01 08:09:20 UTC" in text


def test_minutes_without_records_do_not_count(tmp_path):
    config = load_config(DEMO / "gateway.toml")
    clock = FakeClock(T0)
    recorder = HistoryRecorder(tmp_path / "history.db", now_ms=clock)
    for minute in (0, 1, 2, 30, 31):  # the gateway was off for 27 minutes
        clock.ms = T0 + minute * MINUTE_MS
        recorder.observe([Sample("ch4_face_1", clock.ms, 0.5, Quality.GOOD)])
        recorder.write(recorder.take())
    recorder.close()
    page = render(
        _identity(),
        points_of(config),
        read_history(tmp_path / "history.db"),
        backlog={"streams": {}},
        generated_ms=T0 + 40 * MINUTE_MS,
    )
    text = " ".join(parse(page).text)
    assert "2025-03-01 08:00:00 to 2025-03-01 08:32:00 UTC (5 minutes with records)" in text


def test_on_off_points_are_drawn_as_steps(tmp_path):
    config = load_config(DEMO / "gateway.toml")
    recorder = HistoryRecorder(tmp_path / "history.db", now_ms=FakeClock(T0))
    for minute, state in enumerate([1.0, 1.0, 0.0, 0.0, 1.0]):
        ts = T0 + minute * MINUTE_MS
        recorder.observe(
            [
                Sample("vent_running", ts, state, Quality.GOOD),
                Sample("vent_running", ts + 30_000, 1.0 if minute == 2 else state, Quality.GOOD),
            ]
        )
    recorder.close()
    page = render(
        _identity(),
        points_of(config),
        read_history(tmp_path / "history.db"),
        backlog={"streams": {}},
    )
    doc = parse(page)
    section = page[page.index('id="point-vent_running"') : page.index('id="point-sounder_face_1"')]
    assert 'class="state"' in section
    assert 'class="band"' not in section
    assert 'class="mean"' not in section
    assert re.findall(r'class="ytick"[^>]*>(\w+)<', section) == ["off", "on"]
    assert section.count('class="both"') == 1  # minute 2 was on and off
    assert doc.find("svg", **{"aria-label": "vent_running"})
    assert _summary_row(page, "vent_running")[6:9] == ["off", "on 70 % of the time", "on"]


def test_the_history_copy_is_only_read(site, tmp_path):
    """`--history COPY.db`: nothing is created next to the copy (no -wal, no -shm)."""
    _config, history_file = site
    copy = tmp_path / "copy" / "history.db"
    copy.parent.mkdir()
    shutil.copy(history_file, copy)
    copy.chmod(0o444)
    before = sorted(p.name for p in copy.parent.iterdir())
    status = main(
        [
            "report",
            "--config",
            str(tmp_path / "gateway.toml"),
            "--history",
            str(copy),
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    assert status == 0
    assert sorted(p.name for p in copy.parent.iterdir()) == before == ["history.db"]
    assert "ch4_face_1" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_the_page_needs_nothing_from_the_network(site):
    config, history_file = site
    page, _history = make_report(config, history_file=history_file, now_ms=T0 + 11 * MINUTE_MS)
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page


def test_the_period_can_be_narrowed(site):
    config, history_file = site
    page, history = make_report(
        config, history_file=history_file, since_ms=T0 + 5 * MINUTE_MS, now_ms=T0 + 11 * MINUTE_MS
    )
    assert [r.minute - T0 // MINUTE_MS for r in history.points["ch4_face_1"]] == [5, 6, 7, 8, 9]
    assert [e["event"] for e in history.alarms] == ["cleared", "cleared"]
    assert "2025-03-01 08:05:00 to 2025-03-01 08:10:00 UTC" in " ".join(parse(page).text)


def test_points_without_readings_and_unknown_points(tmp_path):
    config = load_config(DEMO / "gateway.toml")
    recorder = HistoryRecorder(tmp_path / "history.db", now_ms=FakeClock(T0))
    recorder.observe(
        [Sample("retired_point", T0, 3.0, Quality.GOOD), Sample("fan_on", T0, None, Quality.COMM)]
    )
    recorder.close()
    history = read_history(tmp_path / "history.db")
    page = render(_identity(), points_of(config), history, backlog={"streams": {}})
    doc = parse(page)
    text = " ".join(doc.text)
    assert "retired_point" in text
    assert "not in the current config" in text
    assert "No readings recorded in the period." in text
    assert "No alarm events in the period." in text
    assert "Nothing waiting" in text
    # a point with only failed reads gets a plot of its failures, not a crash
    assert doc.find("svg", **{"aria-label": "fan_on"})


def test_cli_writes_the_page_and_says_where(site, tmp_path, capsys):
    _config, history_file = site
    config_file = tmp_path / "gateway.toml"
    out = tmp_path / "out" / "handover.html"
    out.parent.mkdir()
    status = main(
        [
            "report",
            "--config",
            str(config_file),
            "--history",
            str(history_file),
            "--out",
            str(out),
            "--since",
            "2025-03-01T08:00",
        ]
    )
    assert status == 0
    assert str(out) in capsys.readouterr().out
    parse(out.read_text(encoding="utf-8"))


def test_cli_without_history_fails_clearly(tmp_path, capsys):
    shutil.copy(DEMO / "gateway.toml", tmp_path / "gateway.toml")
    status = main(
        [
            "report",
            "--config",
            str(tmp_path / "gateway.toml"),
            "--history",
            str(tmp_path / "none.db"),
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    assert status == EXIT_NO_HISTORY
    err = capsys.readouterr().err
    assert "no history yet" in err
    assert "none.db" in err
    assert not (tmp_path / "r.html").exists()


def test_cli_rejects_a_bad_since(site, tmp_path, capsys):
    _config, history_file = site
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "report",
                "--config",
                str(tmp_path / "gateway.toml"),
                "--history",
                str(history_file),
                "--since",
                "yesterday",
            ]
        )
    status = caught.value.code
    assert status == 2  # a usage error, as argparse reports every bad argument
    err = capsys.readouterr().err
    assert "usage: watchpost report" in err
    assert "argument --since: 'yesterday' is not an ISO 8601 time" in err


def test_since_is_utc_unless_a_zone_is_given():
    assert parse_since("2025-03-01T08:00") == T0
    assert parse_since("2025-03-01T16:00+08:00") == T0
    with pytest.raises(ReportError):
        parse_since("03/01/2025")


def test_the_config_names_the_history_the_daemon_writes(tmp_path):
    """Needs `[history]` in the root config (GatewayConfig.history)."""
    text = (
        (DEMO / "gateway.toml")
        .read_text()
        .replace('path = "var/buffer.db"', f'path = "{tmp_path}/var/buffer.db"')
    )
    (tmp_path / "gateway.toml").write_text(text + "\n[history]\nretention_days = 7\n")
    config = load_config(tmp_path / "gateway.toml")
    assert config.history.retention_days == 7
    with pytest.raises(ReportError) as caught:
        make_report(config)
    assert caught.value.exit_status == EXIT_NO_HISTORY
    assert str(tmp_path / "var" / "history.db") in str(caught.value)


# -- helpers ---------------------------------------------------------------------------------


def _identity():
    from watchpost.report import Identity  # noqa: PLC0415

    return Identity("demo-colliery", "gw-01")


def _mean(history) -> float:
    rows = history.points["ch4_face_1"]
    return sum((r.mean or 0) * r.good for r in rows) / sum(r.good for r in rows)


def _rows(page: str, heading: str) -> list[list[str]]:
    """Cells of the first table after the heading that starts with ``heading``."""
    section = page[page.index(f"<h2>{heading}") :]
    table = section[section.index("<table") : section.index("</table>")]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", table):
        row = [re.sub(r"<[^>]+>", "", td) for td in re.findall(r"<td>(.*?)</td>", tr)]
        if row:
            rows.append(row)
    return rows


def _summary_row(page: str, point: str) -> list[str]:
    for row in _rows(page, "Points at a glance"):
        if row[0] == point:
            return row
    raise AssertionError(f"no summary row for {point}")


def test_a_live_history_is_read_with_the_writers_latest_commits(tmp_path):
    """The daemon's file (its -wal exists) is read through the WAL, not as immutable."""
    import sqlite3  # noqa: PLC0415

    from watchpost.sqlite_ro import connect_read_only, read_only_uri  # noqa: PLC0415

    path = tmp_path / "live.db"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t(x)")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()  # in the -wal, not yet in the main file
    assert "immutable" not in read_only_uri(path)
    reader = connect_read_only(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    reader.close()
    writer.close()  # the last connection checkpoints and removes the -wal
    assert "immutable=1" in read_only_uri(path)
