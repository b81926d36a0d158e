"""DL/T 645 reads per second at the line's real pace, and the parse cost of a line of text.

Part 1, meters: three processes, as in bench/perf_rtu.py: the paced line (bench/linepace.py at
2400 baud, 11 bits a character, a 3.5-character gap before each frame), a meter on its far
end (this script with ``--meter``: answers every read after ``--turnaround`` seconds, as a
meter's processor does), and the gateway's own DL/T 645 bus and meter reader on the near end,
polling back to back. The figure is reads per second against what the line allows:

    line time of one read = (request + 3.5 gap + reply) characters x 11 bits / baud
                            + the meter's turnaround (at least the 3.5-character gap)

with a request of 20 bytes (4 FE + 16) and a reply of 23 bytes for a 3-byte value (4 FE + 12
+ DI 4 + value 3). So the ratio says what the gateway's own work costs on top of the line.

Part 2, serial instruments: the parse cost per line, in-process: the framer cutting lines out
of a byte stream, then a poll's parse of the newest line (two `pattern` points, two `field`
points, and two `field` points behind an NMEA checksum).

    .venv/bin/python bench/dlt645_rate.py [--reads 60] [--runs 3] [--turnaround 0.02]

Prints one JSON object of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import time
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from linepace import BITS_PER_CHAR, SILENCE_CHARS  # noqa: E402 - the bench's own helper

PYTHON = sys.executable
BAUD = 2400
ADDRESS = "000012345678"
REQUEST_BYTES = 4 + 16
REPLY_BYTES = 4 + 12 + 4 + 3  # a 3-byte value, e.g. 02030000 total active power
POINTS = ["02030000", "02010100", "02020100", "00010000"]  # power, voltage, current, energy


def line_time(turnaround: float) -> float:
    """Seconds one read takes on the line at full pace, the meter's turnaround included."""
    char = BITS_PER_CHAR / BAUD
    return (REQUEST_BYTES + SILENCE_CHARS + REPLY_BYTES) * char + max(
        turnaround, SILENCE_CHARS * char
    )


# -- the meter on the far end ---------------------------------------------------------------


def serve_meter(path: str, turnaround: float) -> None:
    """Answer every read to ADDRESS, after ``turnaround``, until the line goes away."""
    from watchpost.drivers import dlt645  # noqa: PLC0415 - only in the meter's process

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    decoder = dlt645.FrameDecoder()
    values = {di: dlt645.encode_value(dlt645.data_format(di), 12.5) for di in POINTS}  # type: ignore[arg-type]
    while True:
        ready, _w, _x = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        decoder.feed(data)
        while decoder.frames:
            frame = decoder.frames.popleft()
            if not isinstance(frame, dlt645.Frame) or frame.is_reply or frame.address != ADDRESS:
                continue
            di = frame.data[:4][::-1].hex().upper()
            time.sleep(turnaround)
            os.write(fd, dlt645.encode_frame(ADDRESS, 0x91, frame.data[:4] + values[di]))


# -- the gateway on the near end --------------------------------------------------------------


async def poll_meter(path: str, dis: list[str], reads: int) -> tuple[float, int]:
    """Seconds for ``reads`` reads (polls of ``dis``), and the good samples they gave."""
    from watchpost.config.dlt645 import Dlt645Device  # noqa: PLC0415
    from watchpost.drivers import dlt645  # noqa: PLC0415
    from watchpost.samples import Quality  # noqa: PLC0415

    bus = dlt645.create(dlt645.Config(type="dlt645", name="bench", port=path))
    device = Dlt645Device.model_validate(
        {
            "name": "m",
            "bus": "bench",
            "address": ADDRESS,
            "timeout": 2.0,
            "points": [{"name": f"p{i}", "di": di} for i, di in enumerate(dis)],
        }
    )
    reader = bus.source(device, lambda: 0)
    await reader.poll(down=False)  # open the port, warm up
    good = 0
    polls = reads // len(dis)
    started = time.perf_counter()
    for _ in range(polls):
        outcome = await reader.poll(down=False)
        good += sum(1 for s in outcome.samples if s.quality is Quality.GOOD)
    elapsed = time.perf_counter() - started
    await bus.close()
    return elapsed, good


def meter_figures(reads: int, runs: int, turnaround: float) -> dict[str, object]:
    line = subprocess.Popen(
        [PYTHON, str(HERE / "linepace.py"), "--baud", str(BAUD)],
        stdout=subprocess.PIPE,
        text=True,
    )
    meter: subprocess.Popen[bytes] | None = None
    try:
        assert line.stdout is not None
        ends = json.loads(line.stdout.readline())
        meter = subprocess.Popen(
            [PYTHON, __file__, "--meter", ends["b"], "--turnaround", str(turnaround)]
        )
        time.sleep(0.5)
        rates: dict[str, list[float]] = {"one_di": [], "four_dis": []}
        for _ in range(runs):
            for key, dis in (("one_di", POINTS[:1]), ("four_dis", POINTS)):
                elapsed, good = asyncio.run(poll_meter(ends["a"], dis, reads))
                assert good == (reads // len(dis)) * len(dis), f"{good} good of {reads}"
                rates[key].append(good / elapsed)
    finally:
        if meter is not None:
            meter.terminate()
            meter.wait(5)
        line.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            line.wait(5)
    allowed = 1.0 / line_time(turnaround)
    return {
        "baud": BAUD,
        "meter_turnaround_s": turnaround,
        "line_allows_reads_per_s": round(allowed, 2),
        "reads_per_s_one_di": round(statistics.median(rates["one_di"]), 2),
        "reads_per_s_four_dis": round(statistics.median(rates["four_dis"]), 2),
        "ratio_to_line": round(statistics.median(rates["one_di"]) / allowed, 3),
    }


# -- serial instruments: the parse cost of a line ---------------------------------------------


def parse_figures(lines: int, runs: int) -> dict[str, object]:
    from watchpost.config.serial_line import LineDevice  # noqa: PLC0415
    from watchpost.drivers import serial_line  # noqa: PLC0415
    from watchpost.drivers.base import PollOutcome  # noqa: PLC0415
    from watchpost.drivers.serial_line_bus import InstrumentReader  # noqa: PLC0415

    body = "GPXDR,C,21.5,C,T1"
    nmea = f"${body}*{serial_line.nmea_checksum(body):02X}"
    cases = {
        "pattern_2_points": (
            "CH4=0.42;CO=12",
            {
                "points": [
                    {"name": "ch4", "pattern": "CH4=(?P<value>[-+0-9.]+)"},
                    {"name": "co", "pattern": "CO=(?P<value>[-+0-9.]+)"},
                ]
            },
        ),
        "field_2_points": (
            "OK,21.5,101.3",
            {"points": [{"name": "t", "field": 1}, {"name": "p", "field": 2}]},
        ),
        "nmea_field_2_points": (
            nmea,
            {"checksum": "nmea", "points": [{"name": "t", "field": 2}, {"name": "u", "field": 3}]},
        ),
    }
    out: dict[str, object] = {}
    stream = b"".join(f"CH4={i % 100 / 100:.2f};CO={i % 30}\r\n".encode() for i in range(lines))
    framer_us = []
    for _ in range(runs):
        framer = serial_line.LineFramer(b"\r\n", 256)
        started = time.perf_counter()
        for start in range(0, len(stream), 4096):  # as the port hands it over
            framer.feed(stream[start : start + 4096])
        framer_us.append((time.perf_counter() - started) / lines * 1e6)
    out["framer_us_per_line"] = round(statistics.median(framer_us), 2)
    for name, (line, keys) in cases.items():
        device = LineDevice.model_validate({"name": "d", "bus": "b", **keys})
        reader = InstrumentReader(device, lambda: 0, bus=None)  # type: ignore[arg-type]
        per_line = []
        for _ in range(runs):
            started = time.perf_counter()
            for _ in range(lines):
                outcome = PollOutcome([])
                reader._parse([line], outcome)  # the parse alone is measured
            per_line.append((time.perf_counter() - started) / lines * 1e6)
        out[f"parse_us_per_line_{name}"] = round(statistics.median(per_line), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=60, help="reads per run and case")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turnaround", type=float, default=0.02, help="meter turnaround, s")
    parser.add_argument("--lines", type=int, default=20_000, help="lines per parse run")
    parser.add_argument("--meter", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.meter:
        serve_meter(args.meter, args.turnaround)
        return
    figures = {
        **meter_figures(args.reads, args.runs, args.turnaround),
        **parse_figures(args.lines, args.runs),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
