"""The config layer loads light: no numpy, LiteRT, paho, pymodbus or sqlite3.

Checked in a fresh interpreter, because this test process has loaded them all already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watchpost.version import LIBRARIES

HEAVY = (
    "numpy",
    "tflite_runtime",
    "ai_edge_litert",
    "paho",
    "pymodbus",
    "sqlite3",
    "_sqlite3",
    "cryptography",
)
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "gateway.toml"

PROBE = """
import json, sys
{body}
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy), file=sys.stderr)
"""


def loaded_heavy(body: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run ``body`` in a new interpreter; the heavy packages it left in ``sys.modules``."""
    code = PROBE.format(body=body, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    last = done.stderr.strip().splitlines()[-1]
    return json.loads(last), done


@pytest.mark.parametrize(
    "module",
    [
        "watchpost.config",
        "watchpost.config.command",
        "watchpost.drivers",
        "watchpost.drivers.simulator.site",
    ],
)
def test_importing_the_config_layer_loads_no_runtime_library(module: str) -> None:
    heavy, done = loaded_heavy(f"import {module}")
    assert done.returncode == 0, done.stderr
    assert heavy == []


def test_loading_the_demo_config_loads_no_runtime_library() -> None:
    heavy, done = loaded_heavy(
        "from pathlib import Path\n"
        "from watchpost.config import load_config\n"
        f"load_config(Path({str(DEMO)!r}))"
    )
    assert done.returncode == 0, done.stderr
    assert heavy == []


def test_config_check_loads_no_runtime_library() -> None:
    heavy, done = loaded_heavy(
        "from watchpost.cli import main\n"
        f"status = main(['config', 'check', {str(DEMO)!r}])\n"
        "print('status', status, file=sys.stderr)"
    )
    assert done.returncode == 0, done.stderr
    assert "status 0" in done.stderr
    assert heavy == []


def test_a_bad_config_still_exits_78_without_runtime_libraries(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.toml"
    bad.write_text('[gateway]\nsite = "s"\nid = "g"\n[store]\npath = "x.db"\n', encoding="utf-8")
    heavy, done = loaded_heavy(
        "from watchpost.cli import main\n"
        f"status = main(['config', 'check', {str(bad)!r}])\n"
        "print('status', status, file=sys.stderr)"
    )
    assert "uplink: is required" in done.stderr
    assert "status 78" in done.stderr
    assert heavy == []


def test_the_bus_union_comes_from_the_registry() -> None:
    from pydantic import TypeAdapter  # noqa: PLC0415

    from watchpost.config import BusConfig  # noqa: PLC0415
    from watchpost.drivers import DRIVERS  # noqa: PLC0415

    adapter: TypeAdapter[object] = TypeAdapter(BusConfig)
    for key, driver in DRIVERS.items():
        assert driver.key == key
        schema = driver.config.model_json_schema()
        assert schema["properties"]["type"]["const"] == key
    tcp = adapter.validate_python({"type": "modbus_tcp", "name": "b", "host": "h"})
    assert type(tcp) is DRIVERS["modbus_tcp"].config


def test_the_daemon_without_a_model_or_key_loads_no_numpy_litert_or_crypto(
    tmp_path: Path,
) -> None:
    heavy, done = loaded_heavy(
        "from watchpost.app import Gateway\n"
        "from watchpost.anomaly_part import NoModels, open_anomaly\n"
        "from watchpost.config.anomaly import AnomalyConfig\n"
        "part = open_anomaly(AnomalyConfig(), state_dir=None, emit=print)\n"
        "assert isinstance(part, NoModels), part\n"
        "assert part.status() == {'dropped': 0, 'rows_scored': 0, 'models': {}}\n"
    )
    assert done.returncode == 0, done.stderr
    assert not {"numpy", "tflite_runtime", "ai_edge_litert", "cryptography"} & set(heavy)


def test_the_daemon_does_not_load_the_crews_command_line_tools() -> None:
    tools = ["watchpost.backlog_cli", "watchpost.crew", "watchpost.crew_output"]
    tools.append("watchpost.textout")
    code = (
        "import json, sys\n"
        "import watchpost.app\n"
        f"print(json.dumps(sorted(set(sys.modules) & set({tools!r}))), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_a_configured_model_loads_the_runner(tmp_path: Path) -> None:
    heavy, done = loaded_heavy(
        "from watchpost.anomaly_part import NoModels, open_anomaly\n"
        "from watchpost.config.anomaly import AnomalyConfig\n"
        "config = AnomalyConfig.model_validate("
        "{'models': [{'name': 'm', 'points': ['a', 'b']}]})\n"
        f"part = open_anomaly(config, state_dir=__import__('pathlib').Path({str(tmp_path)!r}), "
        "emit=print)\n"
        "assert not isinstance(part, NoModels)\n"
        "assert list(part.status()['models']) == ['m']\n"
        "import os\n"
        "print('threads', len(os.listdir('/proc/self/task')), file=sys.stderr)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "numpy" in heavy
    # OpenBLAS started no worker threads of its own (OPENBLAS_NUM_THREADS=1 before numpy)
    assert "threads 1\n" in done.stderr


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
def test_the_running_demo_daemon_never_loads_pydantic(tmp_path: Path, broker, subscriber) -> None:
    """The demo site's daemon polls, stores and publishes with no pydantic in the process:
    its config comes from the child as plain objects, its messages and commands are plain
    data. Seen from outside: pydantic's core library is not mapped into the daemon."""
    from tests.site_run import SiteRun  # noqa: PLC0415 - the demo site, for this test only

    root = "watchpost/v1/demo-colliery/gw-01/"
    sub = subscriber(root + "#")
    run = SiteRun(tmp_path, broker.url)
    try:
        gateway = run.start_gateway()
        gateway.wait_ready()
        sub.wait_for(root + "telemetry", timeout=60)
        sub.wait_for(root + "status", timeout=60)
        assert gateway.running, run.log("gateway")
        maps = _maps(gateway.pid)
        assert "libpython" in maps or "python" in maps  # the maps of the right process
        assert "pydantic" not in maps, run.log("gateway")
    finally:
        run.close()
    # the check can fail: a process that imports pydantic maps its core library
    probe = subprocess.Popen(
        [sys.executable, "-c", "import sys, pydantic; print('in', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert probe.stdout is not None
        assert probe.stdout.readline().strip() == "in"
        assert "_pydantic_core" in _maps(probe.pid)
    finally:
        probe.kill()
        probe.wait(timeout=10)


def test_the_daemon_s_modules_import_no_pydantic() -> None:
    code = (
        "import json, sys\n"
        "import watchpost.app, watchpost.config_child, watchpost.drivers.factories\n"
        "import watchpost.config.paths\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pydantic'))),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


TCP_ONLY_DAEMON = """
import asyncio, json, struct, sys
import watchpost.app
from watchpost import settings
from watchpost.drivers.base import ReadRequest, Table
from watchpost.drivers.codec import reader
from watchpost.drivers.factories import open_bus


async def answer(r, w):
    request = await r.readexactly(12)  # MBAP header and a read of holding registers
    data = struct.pack(">3H", 7, 2, 0xFFFF)
    pdu = bytes([request[7], len(data)]) + data
    w.write(request[0:2] + bytes(2) + struct.pack(">H", len(pdu) + 1) + request[6:7] + pdu)
    await w.drain()


async def main():
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = settings.ModbusTcpSettings(type="modbus_tcp", name="tcp", host="127.0.0.1", port=port)
    bus = open_bus(config)
    try:
        await bus.open()
        words = await bus.read(ReadRequest(1, Table.HOLDING, 0, 3), timeout=5)
    finally:
        await bus.close()
        server.close()
    return [reader("int16")(words, i) for i in range(3)]


print("values", json.dumps(asyncio.run(main())), file=sys.stderr)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pymodbus", "serial"))
print(json.dumps(loaded), file=sys.stderr)
"""


def test_a_daemon_whose_buses_are_all_modbus_tcp_loads_no_pymodbus_or_pyserial() -> None:
    """The TCP bus has its own client and the poll path decodes with plain arithmetic: the
    daemon's modules and a Modbus TCP read leave pymodbus and pyserial out of the process."""
    done = subprocess.run(
        [sys.executable, "-c", TCP_ONLY_DAEMON],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "values [7, 2, -1]" in lines, done.stderr  # the read went through the bus
    assert json.loads(lines[-1]) == []


def test_decoding_a_live_read_still_uses_pymodbus_s_conversions() -> None:
    """``decode`` and ``encode`` load pymodbus at their first call (not on the poll path)."""
    code = (
        "import json, sys\n"
        "from watchpost.drivers import codec\n"
        "before = 'pymodbus' in sys.modules\n"
        "value = codec.decode(codec.encode(-1.5, 'float32', 'little'), 'float32', 'little')\n"
        "print(json.dumps([before, value, 'pymodbus' in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [False, -1.5, True]


def test_the_daemon_reports_the_libraries_the_config_child_read() -> None:
    """``health`` and ``status`` name the installed libraries' versions; the daemon takes them
    from its config's child (which has ``importlib.metadata`` loaded for pydantic) and never
    loads ``importlib.metadata``, ``zipfile`` or ``csv`` itself. The same versions as
    `watchpost version` reads in its own process."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import watchpost.app\n"
        "from watchpost import config_child, version\n"
        f"config_child.load(Path({str(DEMO)!r}))\n"
        "libraries = version.software()['libraries']\n"
        "loaded = [m for m in ('importlib.metadata', 'zipfile', 'csv') if m in sys.modules]\n"
        "print(json.dumps([libraries, loaded]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    libraries, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert loaded == []
    own = subprocess.run(
        [sys.executable, "-m", "watchpost", "version", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert libraries == json.loads(own.stdout)["libraries"]
    assert list(libraries) == [name for name in LIBRARIES if name in libraries]
    assert {"numpy", "paho-mqtt", "pydantic"} <= set(libraries)


def test_a_daemon_whose_child_failed_reads_the_libraries_itself(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from watchpost import config_child, version\n"
        f"sys.executable = {str(tmp_path / 'no-such-python')!r}\n"
        f"config_child.load(Path({str(DEMO)!r}))\n"
        "print(json.dumps(version.software()['libraries']), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "no-such-python" in done.stderr  # the child could not start
    libraries = json.loads(done.stderr.strip().splitlines()[-1])
    assert {"numpy", "paho-mqtt", "pydantic"} <= set(libraries)
