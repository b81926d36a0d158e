"""The RS-485 bus: transactions and registers per second of the gateway's RTU driver on a line
at its real pace, against the line's theoretical maximum.

Three processes: the paced line (bench/linepace.py, 11 bits a character, 3.5-character
silences), a pymodbus RTU server on its end ``a`` (unit 1, 125 holding registers), and here
the gateway's own read path (``ModbusRtuBus`` and ``DeviceReader``, decode included) on end
``b``, reading one device of 125 uint16 points (one request of 125 registers) back to back.
`python bench/perf_rtu.py --baud 9600 --seconds 10` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from linepace import transaction_time
from perf_site import ENV, PYTHON, median, stop

REGISTERS = 125
REQUEST_BYTES = 8  # unit, function, address, count, CRC
RESPONSE_BYTES = 5 + 2 * REGISTERS  # unit, function, byte count, data, CRC
HERE = Path(__file__).resolve().parent


async def serve(port: str, baudrate: int) -> None:
    """A pymodbus RTU server with unit 1 on ``port`` until SIGTERM."""
    from pymodbus.datastore import (  # noqa: PLC0415 - only the server process needs them
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusSerialServer  # noqa: PLC0415

    values = [(i * 37) % 65536 for i in range(REGISTERS + 1)]
    unit = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, list(values)), ir=ModbusSequentialDataBlock(1, list(values))
    )
    server = ModbusSerialServer(
        ModbusServerContext(devices={1: unit}, single=False), port=port, baudrate=baudrate
    )
    print("serving", flush=True)
    await server.serve_forever()


async def client(port: str, baudrate: int, seconds: float) -> dict[str, float]:
    """Poll the device back to back for ``seconds``; count what went through."""
    from watchpost.clock import wall_ms  # noqa: PLC0415
    from watchpost.config import DeviceConfig  # noqa: PLC0415 - keep --serve light
    from watchpost.drivers import modbus_rtu  # noqa: PLC0415
    from watchpost.poller import DeviceReader  # noqa: PLC0415
    from watchpost.samples import Quality  # noqa: PLC0415

    device = DeviceConfig.model_validate(
        {
            "name": "meter",
            "bus": "line",
            "unit": 1,
            "timeout": 1.0,
            "retries": 0,
            "points": [
                {"name": f"r{i}", "table": "holding", "address": i, "type": "uint16"}
                for i in range(REGISTERS)
            ],
        }
    )
    bus = modbus_rtu.create(
        modbus_rtu.Config(type="modbus_rtu", name="line", port=port, baudrate=baudrate)
    )  # type: ignore[arg-type]
    reader = DeviceReader(device, wall_ms)
    try:
        for _ in range(3):  # connect and warm up
            await reader.poll(bus)
        good = polls = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            samples = await reader.poll(bus)
            polls += 1
            good += all(s.quality is Quality.GOOD for s in samples)
        elapsed = time.monotonic() - started
    finally:
        await bus.close()
    return {"transactions": polls, "good": good, "seconds": elapsed}


def rtu_figures(baudrate: int, seconds: float, runs: int) -> dict[str, Any]:
    """Median over ``runs`` of transactions/s and registers/s against the line's maximum."""
    ideal = transaction_time(REQUEST_BYTES, RESPONSE_BYTES, baudrate)
    results = []
    for _ in range(runs):
        line = server = None
        try:
            line = subprocess.Popen(
                [PYTHON, str(HERE / "linepace.py"), "--baud", str(baudrate)],
                stdout=subprocess.PIPE,
                env=ENV,
            )
            assert line.stdout is not None
            ends = json.loads(line.stdout.readline())
            server = subprocess.Popen(
                [PYTHON, __file__, "--serve", ends["a"], "--baud", str(baudrate)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=ENV,
            )
            assert server.stdout is not None
            server.stdout.readline()
            time.sleep(0.3)
            # the driver in a process of its own, from the code under test (ENV)
            polled = subprocess.run(
                [
                    PYTHON,
                    __file__,
                    "--client",
                    ends["b"],
                    "--baud",
                    str(baudrate),
                    "--seconds",
                    str(seconds),
                ],
                env=ENV,
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=True,
            )
            got = json.loads(polled.stdout.strip().splitlines()[-1])
        finally:
            stop(server, 5)
            stop(line, 5)
        turnaround = json.loads(line.stdout.readline()) if line and line.stdout else {}
        sides = turnaround.get("turnaround_s", {})
        rate = got["transactions"] / got["seconds"]
        results.append(
            {
                "transactions_per_s": rate,
                "registers_per_s": rate * REGISTERS,
                "of_maximum": rate * ideal,
                "failed": got["transactions"] - got["good"],
                "ms_per_transaction": 1000 / rate,
                # from the end of the answer to the next request, and the reverse
                "driver_turnaround_ms": 1000 * (sides.get("b") or float("nan")),
                "server_turnaround_ms": 1000 * (sides.get("a") or float("nan")),
            }
        )
    return {
        "baudrate": baudrate,
        "ideal_ms": 1000 * ideal,
        "ideal_registers_per_s": REGISTERS / ideal,
        "runs": results,
        **{k: median([r[k] for r in results]) for k in results[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--serve", metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(serve(args.serve, args.baud))
        return
    if args.client:
        print(json.dumps(asyncio.run(client(args.client, args.baud, args.seconds))))
        return
    print(json.dumps(rtu_figures(args.baud, args.seconds, args.runs), indent=1))


if __name__ == "__main__":
    sys.exit(main())
