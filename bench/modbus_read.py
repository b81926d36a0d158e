"""CPU of one Modbus TCP read: the bus's own client against the same bus on pymodbus.

A pymodbus server (the tests' ``tcp_server``) runs in a process of its own; this process
reads 60 holding registers ``--reads`` times through each client in turn, ``--rounds``
times, and prints the CPU of this process (``time.process_time``: user and kernel) per
read, median and runs. The pymodbus bus is ``drivers.modbus.ModbusBus`` on an
``AsyncModbusTcpClient`` made as the TCP bus made it before it had its own client.

    .venv/bin/python bench/modbus_read.py [--reads 2000] [--rounds 5] [--count 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from watchpost.drivers import modbus_tcp
from watchpost.drivers.base import Bus, ReadRequest, Table
from watchpost.drivers.modbus import ModbusBus

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import asyncio, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[1])
from tests.modbus_servers import device_context, tcp_server
async def main():
    async with tcp_server({1: device_context(size=200)}) as port:
        print(port, flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


def pymodbus_bus(port: int) -> Bus:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=port, name="b", retries=0, timeout=1.0, reconnect_delay=0
    )
    return ModbusBus("b", client)


def own_bus(port: int) -> Bus:
    return modbus_tcp.create(
        modbus_tcp.Config(type="modbus_tcp", name="b", host="127.0.0.1", port=port)
    )


async def cpu_per_read(bus: Bus, request: ReadRequest, reads: int) -> float:
    """Microseconds of this process's CPU per read, after 50 reads of warm-up."""
    for _ in range(50):
        await bus.read(request, timeout=1.0)
    started = time.process_time()
    for _ in range(reads):
        await bus.read(request, timeout=1.0)
    return (time.process_time() - started) / reads * 1e6


async def measure(port: int, args: argparse.Namespace) -> dict[str, list[float]]:
    request = ReadRequest(1, Table.HOLDING, 0, args.count)
    runs: dict[str, list[float]] = {"pymodbus": [], "own client": []}
    for _ in range(args.rounds):
        for name, make in (("pymodbus", pymodbus_bus), ("own client", own_bus)):
            bus = make(port)
            try:
                runs[name].append(await cpu_per_read(bus, request, args.reads))
            finally:
                await bus.close()
    return runs


def main(args: argparse.Namespace) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        runs = asyncio.run(measure(int(server.stdout.readline()), args))
    finally:
        server.kill()
        server.wait()
    for name, values in runs.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name}: {statistics.median(values):.1f} us of CPU a read (runs {shown})")
    ratio = statistics.median(runs["pymodbus"]) / statistics.median(runs["own client"])
    print(f"pymodbus / own client: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="reads per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each client, alternated")
    parser.add_argument("--count", type=int, default=60, help="registers per read")
    main(parser.parse_args())
