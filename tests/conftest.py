"""Shared fixtures: a real Mosquitto broker on a free loopback port, and a subscriber.

    def test_x(broker, subscriber):
        sub = subscriber("watchpost/v1/#")
        ...                     # something publishes to broker.url
        sub.wait_for("watchpost/v1/s/g/alarms", count=1)
        broker.stop(); broker.start()   # an outage, same port

Other test modules import these fixtures by name (pytest finds them here).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.kit.net import free_port, wait_port

# The suite reads the product in English, whatever the locale of whoever runs it; tests of
# other languages set them for the processes they start (tests/test_i18n.py).
for _variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
    os.environ.pop(_variable, None)
os.environ["LANG"] = "C.UTF-8"


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `watchpost` run in the test's process with a `[gateway] language` config sets the
    process's LANGUAGE (watchpost.i18n); it must not reach the processes of later tests."""
    monkeypatch.delenv("LANGUAGE", raising=False)


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SCHEMAS = Path(__file__).resolve().parents[1] / "gateway" / "schemas"


class Broker:
    """A Mosquitto process on 127.0.0.1; ``stop()`` and ``start()`` keep the port.

    ``persistent=True`` keeps sessions and queued messages across restarts (a persistence
    file in the test's folder), so a subscriber with a persistent session misses nothing
    while the broker is down: outage tests need that to tell the gateway's losses apart
    from the subscriber's.
    """

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.folder = folder
        self.host = "127.0.0.1"
        self.port = free_port()
        self.persistent = persistent
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # started as root, Mosquitto would drop to user `mosquitto`, which cannot write
            # the test's folder; as anyone else this line has no effect
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"persistence {'true' if persistent else 'false'}",
            f"persistence_location {folder}/",
            "max_queued_messages 0",  # no limit: a test subscriber may lag behind
            "max_inflight_messages 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        deadline = time.monotonic() + timeout
        while True:  # the port may linger a moment after a stop
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                wait_port(self.host, self.port, timeout=3.0)
                return
            except OSError:
                self.process.kill()
                self.process.wait()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log_text()}") from None

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Subscriber:
    """A paho client that records every message per topic (payloads decoded from JSON)."""

    def __init__(
        self, broker: Broker, *topics: str, client_id: str | None = None, persistent: bool = False
    ) -> None:
        self.topics = topics or ("#",)
        self.messages: dict[str, list[Any]] = defaultdict(list)
        self.raw: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{free_port()}",
            clean_session=not persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, _rc: Any, _p: Any) -> None:
        if not getattr(flags, "session_present", False):
            client.subscribe([(topic, 1) for topic in self.topics])
        else:
            self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload: Any = json.loads(message.payload)
        except ValueError:
            payload = message.payload
        with self._cond:
            self.raw.append(message)
            self.messages[message.topic].append(payload)
            self._cond.notify_all()

    def wait_for(
        self,
        topic: str,
        count: int = 1,
        timeout: float = 10.0,
        predicate: Callable[[list[Any]], bool] | None = None,
    ) -> list[Any]:
        """Wait until ``topic`` has ``count`` messages (or ``predicate`` holds); return them."""
        check = predicate or (lambda got: len(got) >= count)
        with self._cond:
            if not self._cond.wait_for(lambda: check(self.messages[topic]), timeout):
                raise AssertionError(
                    f"{topic}: got {len(self.messages[topic])} message(s) in {timeout} s"
                )
            return list(self.messages[topic])

    def get(self, topic: str) -> list[Any]:
        with self._cond:
            return list(self.messages[topic])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A running Mosquitto, persistence off, stopped at the end of the test."""
    running = Broker(tmp_path_factory.mktemp("mosquitto"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def persistent_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A running Mosquitto that keeps sessions across ``stop()``/``start()``."""
    running = Broker(tmp_path_factory.mktemp("mosquitto"), persistent=True)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Callable[..., Subscriber]]:
    """``subscriber(*topics)``: a connected Subscriber on ``broker``, closed at the end."""
    made: list[Subscriber] = []

    def make(*topics: str, **kwargs: Any) -> Subscriber:
        sub = Subscriber(broker, *topics, **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def load_schema(stream: str) -> dict[str, Any]:
    """The JSON Schema of a stream, from the package's schema folder."""
    return json.loads((SCHEMAS / f"{stream}.json").read_text(encoding="utf-8"))


@pytest.fixture
def validate() -> Callable[[str, Any], None]:
    """``validate(stream, message)``: raise if the message breaks the stream's schema."""

    def check(stream: str, message: Any) -> None:
        schema = load_schema(stream)
        jsonschema.validators.validator_for(schema)(
            schema, format_checker=jsonschema.FormatChecker()
        ).validate(message)

    return check


class Proxy:
    """A TCP relay on loopback between a client and ``target``, for faults a broker never
    shows by itself: ``blackhole()`` keeps every connection open but silently drops what
    flows either way (a NAT that forgot the flow, a dead 4G cell); ``reset()`` closes every
    connection with a TCP RST; ``heal()`` relays again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.host = "127.0.0.1"
        self.blackholed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _addr = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self.blackholed:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        self.blackholed = True

    def heal(self) -> None:
        self.blackholed = False

    def reset(self) -> None:
        """Close every relayed connection abruptly (RST)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_LINGER,
                    (1).to_bytes(4, "little") + (0).to_bytes(4, "little"),
                )
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.reset()


@pytest.fixture
def proxy(broker: Broker) -> Iterator[Proxy]:
    """A Proxy in front of ``broker``."""
    relay = Proxy(broker.host, broker.port)
    yield relay
    relay.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order of the run, and the Debian package tests' base roots made in the background
    from the start, while the other tests run (a cold arm64 root takes minutes under qemu).

    In one process the package tests run last, arm64 last of all. Under pytest-xdist
    (scripts/test) the long tests go first, the package tests before all (one worker takes
    them while the others share the rest), so that no long test starts near the end; and as
    each worker may end once it has no more tests, taking its threads with it, the controller,
    which lives for the whole run, makes the roots (``pytest_xdist_node_collection_finished``).
    """
    packages = [item for item in items if item.get_closest_marker("packages")]
    packages.sort(key=lambda item: "arm64_root" in getattr(item, "fixturenames", ()))
    rest = [item for item in items if not item.get_closest_marker("packages")]
    if hasattr(config, "workerinput"):
        slow = [item for item in rest if item.get_closest_marker("slow")]
        items[:] = packages + slow + [item for item in rest if not item.get_closest_marker("slow")]
        return
    items[:] = rest + packages
    if packages and not config.option.collectonly:
        _prepare_roots()


PACKAGE_TESTS = "tests/test_packages.py::"  # their node ids, as the xdist controller sees them
_roots: list[object] = []  # the background threads, once started


def _prepare_roots() -> None:
    if _roots:
        return
    from tests.debian_root import prepare_in_background  # noqa: PLC0415

    _roots.extend(prepare_in_background(["amd64", "arm64"]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """The xdist controller: make the package tests' roots if the workers collected them."""
    if not node.config.option.collectonly and any(i.startswith(PACKAGE_TESTS) for i in ids):
        _prepare_roots()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Tests that share a costly module fixture stay on one worker (tests/kit/parallel.py)."""
    from tests.kit.parallel import TogetherOrAlone  # noqa: PLC0415  (only with xdist)

    return TogetherOrAlone(config, log)
