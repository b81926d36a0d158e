"""The demo site and the daemon as real processes for a little over a minute, then
`watchpost report`: once while the daemon runs (the first minute is on disk), and once after
it stopped (everything, with the scripted incident's alarms).

Needs the daemon to feed the history (``[history]`` in the config, the recorder in app.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.site_run import SiteRun, stop
from watchpost.config import load_config

RUN_FOR = 70.0  # seconds of polling: covers a minute boundary, and the incident (t=15-51 s)


class Sections(HTMLParser):
    """The ids of the point sections, the labels of the plots and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.plots: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "div" and (found.get("id") or "").startswith("point-"):
            self.ids.add(str(found["id"])[len("point-") :])
        if tag == "svg" and found.get("aria-label"):  # a plot (the legend's keys have none)
            self.plots.add(str(found["aria-label"]).split(" ")[0])

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report(run: SiteRun, out: Path) -> tuple[subprocess.CompletedProcess[str], Sections]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchpost",
            "report",
            "--config",
            str(run.config),
            "--out",
            str(out),
        ],
        cwd=run.folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    sections = Sections()
    if out.exists():
        sections.feed(out.read_text(encoding="utf-8"))
    return result, sections


@pytest.mark.slow
def test_report_after_a_minute_of_the_demo_site(tmp_path, broker):
    run = SiteRun(tmp_path, broker.url)
    try:
        config = load_config(run.config)
        points = {point.name for _device, point in config.points()}
        early, _ = report(run, tmp_path / "early.html")
        assert early.returncode == 66, early.stderr  # nothing recorded yet: said so
        assert "no history yet" in early.stderr
        run.start_gateway()
        started = time.monotonic()
        while time.monotonic() - started < RUN_FOR:
            assert run.gateway is not None
            assert run.gateway.poll() is None, run.log("gateway")
            time.sleep(1.0)

        # the daemon is running: the report reads what it committed at the minute boundary
        result, page = report(run, tmp_path / "running.html")
        assert result.returncode == 0, result.stderr + run.log("gateway")
        assert page.ids == points
        assert page.plots == points  # every point was read, so every point has a plot

        assert run.gateway is not None
        assert stop(run.gateway) == 0, run.log("gateway")
        result, page = report(run, tmp_path / "report.html")
        assert result.returncode == 0, result.stderr
        text = " ".join(page.text)
        assert page.ids == points
        for alarm in ("ch4_face_1/high_alarm", "ch4_face_1/high_critical"):
            assert alarm in text, alarm
        assert "raised" in text
        assert "cleared" in text
        for device in config.devices:
            assert device.name in text
        assert "gw-01" in text
        assert "demo-colliery" in text
    finally:
        run.close()
