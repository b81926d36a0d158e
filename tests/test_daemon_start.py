"""The daemon's start on a bad day: signals while it starts, unusable paths.

Each test runs `watchpost run` (and `watchpost config check`) as a real process and looks
at its exit status, its output and what reached the broker.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import gas_gateway, point
from tests.kit.configs import write_config as kit_write_config
from tests.kit.control import wait_status
from tests.kit.disks import NoSmallDisk, SmallDisk
from tests.kit.processes import cli, running_gateway
from tests.modbus_servers import MisshapenAnswers

ROOT = "watchpost/v1/start-site/gw-st/"


def write_config(
    folder: Path,
    broker: str,
    port: int,
    *,
    store: str = "var/buffer.db",
    socket: str = "var/control.sock",
) -> Path:
    """gas_a read every 0.5 s; ``store`` and ``socket`` are the paths under test."""
    config = gas_gateway(
        broker, port, point("gas_a", 0), site="start-site", gateway_id="gw-st", store=store
    )
    config["control"]["socket"] = socket
    return kit_write_config(folder / "gateway.toml", config)


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.1, 0.25, 0.5])
def test_a_sighup_while_starting_does_not_kill_the_daemon(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], after: float
) -> None:
    sub = subscriber(ROOT + "telemetry")
    with MisshapenAnswers({1: "exact"}) as server:
        config = write_config(tmp_path, broker.url, server.port)
        with running_gateway(config) as process:
            # no program can catch a signal before its interpreter runs it: the SIGHUP is sent
            # ``after`` s once `watchpost run` holds it (its first act; Python itself takes
            # 0.1-0.2 s to get there on a loaded machine, where a fixed delay killed it)
            deadline = time.monotonic() + 30
            while not process.catches(signal.SIGHUP):
                assert process.poll() is None, process.log()
                assert time.monotonic() < deadline, process.log()
                time.sleep(0.005)
            # held early, not only by the event loop's handler: the store is not made yet
            assert not (tmp_path / "var" / "buffer.db").exists()
            time.sleep(after)
            process.send_signal(signal.SIGHUP)
            status = wait_status(tmp_path / "var" / "control.sock")
            assert status["daemon"] == "running"
            sub.wait_for(ROOT + "telemetry", timeout=20)
            assert process.poll() is None, process.log()


@pytest.mark.slow
def test_a_stop_while_a_reload_reads_the_config_wins(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """SIGHUP, then SIGTERM while the reload still reads the config file (in its child
    process) and the gateway is still shutting down (its `offline` waits up to 2 s for a
    PUBACK from a broker that is frozen): the daemon stops and stays stopped; the reload that
    finishes meanwhile does not restart it."""
    sub = subscriber(ROOT + "telemetry")
    with MisshapenAnswers({1: "exact"}) as server:
        config = write_config(tmp_path, broker.url, server.port)
        with running_gateway(config, clean_stop=False) as process:
            process.wait_ready()
            sub.wait_for(ROOT + "telemetry", timeout=20)
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)
            try:
                process.send_signal(signal.SIGHUP)
                time.sleep(0.02)  # the reload's child takes a few tenths of a second
                process.send_signal(signal.SIGTERM)
                try:
                    status = process.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    status = None
            finally:
                broker.process.send_signal(signal.SIGCONT)
            assert status == 0, process.log()
            assert "restarting with the config read anew" not in process.log()


# -- paths the daemon must write -------------------------------------------------------------

EXIT_CONFIG = 78


def check_and_run(
    config: Path, prefix: Sequence[str] = ()
) -> list[subprocess.CompletedProcess[str]]:
    """`watchpost config check` and `watchpost run` on ``config``, each to its exit."""
    results = []
    for args in (("config", "check", str(config)), ("run", "--config", str(config))):
        results.append(cli(*args, cwd=config.parent, prefix=prefix))
    return results


def assert_refused(config: Path, *words: str, prefix: Sequence[str] = ()) -> str:
    """Both commands exit 78 and name every one of ``words``; no traceback."""
    output = ""
    for result in check_and_run(config, prefix):
        text = result.stdout + result.stderr
        assert result.returncode == EXIT_CONFIG, text
        for word in words:
            assert word in text, text
        assert "Traceback" not in text, text
        output += text
    return output


def test_a_store_path_naming_a_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "buffer.db"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("a crew's notes")
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", 1)
    assert_refused(config, "store.path", "is a directory")
    assert folder.is_dir()
    assert (folder / "keep.txt").read_text() == "a crew's notes"
    assert not list(tmp_path.glob("var/*damaged*"))


def test_a_store_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("not a folder")
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", 1, socket="run/control.sock")
    assert_refused(config, "store.path", "var is a file, not a folder")
    assert (tmp_path / "var").read_text() == "not a folder"


@pytest.mark.parametrize(
    ("socket", "words"),
    [
        ("s" * 120 + ".sock", ("control.socket", "at most 107")),
        ("notes.txt/control.sock", ("control.socket", "notes.txt is a file")),
        ("notes.txt", ("control.socket", "is not a socket")),
    ],
)
def test_an_unusable_control_socket_path_is_refused(
    tmp_path: Path, socket: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "notes.txt").write_text("a crew's notes")
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", 1, socket=socket)
    assert_refused(config, *words)
    assert (tmp_path / "notes.txt").read_text() == "a crew's notes"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 4 MiB tmpfs at ``tmp_path/ro``, in a mount namespace of its own (never left behind)."""
    disk = SmallDisk(tmp_path / "ro", size="4m")
    try:
        disk.start()
    except NoSmallDisk as exc:
        pytest.skip(str(exc))
    try:
        yield disk
    finally:
        disk.close()


def test_a_store_folder_on_a_read_only_file_system_is_refused(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    small_disk.remount_read_only()
    store = f"{small_disk.folder}/var/buffer.db"
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", 1, store=store)
    assert_refused(config, "store.path", "read-only", prefix=small_disk.prefix(tmp_path))


@pytest.mark.slow
def test_a_read_only_store_at_start_is_refused_with_the_reason(
    tmp_path: Path, broker: Broker, small_disk: SmallDisk
) -> None:
    inside = small_disk.prefix(tmp_path)
    with MisshapenAnswers({1: "exact"}) as server:
        store = small_disk.folder / "buffer.db"
        config = write_config(tmp_path, broker.url, server.port, store=str(store))
        with running_gateway(config, prefix=inside):  # a first run makes the store
            wait_status(tmp_path / "var" / "control.sock")
        before = small_disk.path("buffer.db").read_bytes()
        small_disk.remount_read_only()
        output = assert_refused(config, "store.path", str(store), "read-only", prefix=inside)
    assert small_disk.path("buffer.db").read_bytes() == before
    assert output.count("store.path:") == 2  # named once by each command
