"""The commissioning report looked at in a real browser (headless Chromium from Debian's
`chromium` package, which scripts/setup installs).

The page is built from a history the test writes on a fake clock: the demo config over 90
minutes with the hard cases of a real site: an energy counter (fan_energy, ~48 215 kWh
rising by hundredths), a value that does not move (fan_run_hours at 5120 h), an on/off
point (vent_running) switching, a methane incident with alarms raised, acknowledged and
cleared, and 20 minutes with no records at all.

Chromium loads a copy of the page with a small script appended that measures, after layout,
every text of every plot and every legend entry (getBoundingClientRect) and writes the
figures into the DOM, which `--dump-dom` prints. The product page itself has no script. A
screenshot is taken too (kept under pytest's tmp folder for people to look at).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kit.clock import FakeClock
from tests.site_run import DEMO
from watchpost.alarms import AlarmEngine
from watchpost.config import load_config
from watchpost.history import MINUTE_MS, HistoryRecorder
from watchpost.report import make_report
from watchpost.samples import Quality, Sample

T0 = 1_740_816_000_000  # 2025-03-01T08:00:00Z
MINUTES = 90
GAP = range(40, 60)  # the gateway was off: no records

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (scripts/setup does it)"
)

MEASURE = """
<script>
(function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
            text: el.textContent, cls: el.getAttribute('class') || ''};
  }
  var plots = [];
  document.querySelectorAll('div.point svg').forEach(function (svg) {
    plots.push({label: svg.getAttribute('aria-label'), box: box(svg),
                texts: Array.prototype.map.call(svg.querySelectorAll('text'), box)});
  });
  var legend = document.querySelector('ul.legend');
  var out = {plots: plots,
             legend: legend ? box(legend) : null,
             legendItems: Array.prototype.map.call(document.querySelectorAll('ul.legend li'), box),
             firstPlot: plots.length ? plots[0].box : null};
  var pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


@dataclass
class Health:
    polls: int = 0
    failures: int = 0


def _samples(minute: int, second: int, ts: int) -> list[Sample]:
    ch4 = 0.3 + (1.4 if 10 <= minute < 16 else 0.0) + (0.02 if second % 4 else 0.0)
    return [
        Sample("ch4_face_1", ts, round(ch4, 2), Quality.GOOD),
        Sample("fan_energy", ts, round(48215.0 + (minute * 60 + second) * 0.0012, 2), Quality.GOOD),
        Sample("fan_run_hours", ts, 5120.0, Quality.GOOD),
        Sample("vent_running", ts, float((minute * 60 + second) // 450 % 2 == 0), Quality.GOOD),
        Sample("tank1_level", ts, 4.2 + minute * 0.001, Quality.GOOD)
        if minute not in (20, 21)
        else Sample("tank1_level", ts, None, Quality.COMM),
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    text = (DEMO / "gateway.toml").read_text()
    text = text.replace('path = "var/buffer.db"', f'path = "{folder}/var/buffer.db"')
    (folder / "gateway.toml").write_text(text)
    config = load_config(folder / "gateway.toml")
    clock = FakeClock(T0)
    devices = {"face-station": Health(), "fan-meter": Health(), "tank-1": Health()}
    recorder = HistoryRecorder(folder / "history.db", devices=lambda: devices, now_ms=clock)
    engine = AlarmEngine({p.name: p.alarms for _d, p in config.points()}, clock)
    engine.add_listener(recorder.record_alarm)
    for minute in range(MINUTES):
        if minute in GAP:
            continue
        for second in range(0, 60, 5):
            clock.ms = ts = T0 + minute * MINUTE_MS + second * 1000
            samples = _samples(minute, second, ts)
            engine.evaluate(samples)
            recorder.observe(samples)
            for health in devices.values():
                health.polls += 1
            if minute == 12 and second == 30:
                engine.acknowledge("ch4_face_1/high_critical", by="Li Wei", note="fan restarted")
        clock.ms = T0 + (minute + 1) * MINUTE_MS + 500
        recorder.write(recorder.take())
    recorder.close()
    html, _history = make_report(
        config, history_file=folder / "history.db", now_ms=T0 + MINUTES * MINUTE_MS + 20_000
    )
    out = folder / "report.html"
    out.write_text(html, encoding="utf-8")
    return out


def _chromium(*args: str, profile: Path, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def layout(page: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    measured = page.with_name("measured.html")
    measured.write_text(
        page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8"
    )
    result = _chromium(
        "--window-size=1100,900",
        "--dump-dom",
        measured.as_uri(),
        profile=tmp_path_factory.mktemp("profile"),
    )
    found = re.search(r'<pre id="layout">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    return dict(json.loads(text.replace("&amp;", "&")))


def _overlap(a: dict[str, Any], b: dict[str, Any], slack: float = 0.5) -> bool:
    return (
        a["left"] + slack < b["right"]
        and b["left"] + slack < a["right"]
        and a["top"] + slack < b["bottom"]
        and b["top"] + slack < a["bottom"]
    )


def test_every_plot_has_distinct_round_y_ticks(layout):
    plots = {p["label"]: p for p in layout["plots"]}
    assert {"fan_energy kWh", "fan_run_hours h", "vent_running", "ch4_face_1 %CH4"} <= set(plots)
    for label, plot in plots.items():
        ticks = [t["text"] for t in plot["texts"] if "ytick" in t["cls"]]
        assert len(ticks) >= 2, label
        assert len(set(ticks)) == len(ticks), (label, ticks)
        assert not any("e+" in t or "e-" in t for t in ticks), (label, ticks)
    energy = [float(t["text"]) for t in plots["fan_energy kWh"]["texts"] if "ytick" in t["cls"]]
    steps = {round(b - a, 6) for a, b in itertools.pairwise(energy)}
    assert len(steps) == 1, energy  # evenly spaced, round
    assert [t["text"] for t in plots["vent_running"]["texts"] if "ytick" in t["cls"]] == [
        "off",
        "on",
    ]


def test_no_text_of_a_plot_overlaps_another_or_leaves_the_plot(layout):
    for plot in layout["plots"]:
        texts = plot["texts"]
        for i, a in enumerate(texts):
            svg = plot["box"]
            assert svg["left"] - 0.5 <= a["left"], (plot["label"], a)
            assert a["right"] <= svg["right"] + 0.5, (plot["label"], a)
            for b in texts[i + 1 :]:
                assert not _overlap(a, b), (plot["label"], a, b)


def test_the_x_axis_is_labelled_along_its_length(layout):
    for plot in layout["plots"]:
        labels = [t["text"] for t in plot["texts"] if "xtick" in t["cls"]]
        assert len(labels) >= 4, (plot["label"], labels)
        assert all(re.fullmatch(r"\d\d:\d\d", t) for t in labels), labels
        assert [t["text"] for t in plot["texts"] if "xdate" in t["cls"]] == ["2025-03-01"]


def test_the_legend_is_laid_out_without_overlap(layout):
    items = layout["legendItems"]
    assert len(items) >= 8
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    assert not _overlap(layout["legend"], layout["firstPlot"])


def test_a_screenshot_shows_the_page(page, tmp_path_factory):
    shot = page.with_name("report.png")
    result = _chromium(
        "--window-size=1100,2400",
        f"--screenshot={shot}",
        page.as_uri(),
        profile=tmp_path_factory.mktemp("profile"),
    )
    assert shot.exists(), result.stderr[-2000:]
    width, height, colours = _png_summary(shot.read_bytes())
    assert (width, height) == (1100, 2400)
    assert colours > 20  # plots, bands, alarm colours: not a blank or an error page


def _png_summary(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct bytes in the picture's first rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels[: width * 4 * 1200]))
