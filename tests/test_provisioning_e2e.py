"""From a two-gateway site manifest to gateways online at a broker that requires client
certificates: `watchpost ca`, `provision`, `firstboot`, then `watchpost run` in a process
with a real sd_notify socket, against a real Mosquitto with mutual TLS.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.net import free_port
from tests.kit.processes import Watchpost
from watchpost.cli import main

ME = pwd.getpwuid(os.getuid()).pw_name
SITE = "hx-chem-e2e"

MANIFEST = """\
site = "{site}"

[broker]
urls = ["mqtts://127.0.0.1:{port}"]
keepalive = 10

[ca]
cert = "ca/ca.crt"
key = "ca/ca.key"

[[gateways]]
id = "gw-a"

[[gateways]]
id = "gw-b"
"""


@dataclass
class PlainListener:
    """The broker's second, plain listener, for the test's own subscriber."""

    host: str
    port: int


class TlsBroker(Broker):
    """Mosquitto with a TLS listener that requires a client certificate from ``ca``."""

    def __init__(self, folder: Path, *, ca: Path, cert: Path, key: Path) -> None:
        super().__init__(folder)
        self.plain = PlainListener("127.0.0.1", free_port())
        lines = [
            f"user {ME}",  # as root, Mosquitto would switch to a user who cannot read the key
            "per_listener_settings false",
            "allow_anonymous true",
            f"listener {self.port} 127.0.0.1",
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
            "require_certificate true",
            "use_identity_as_username true",
            f"listener {self.plain.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.config.write_text("\n".join(lines) + "\n")


def make_site(folder: Path, port: int) -> Path:
    """A site folder: CA, manifest for two gateways, their bundles."""
    folder.mkdir(parents=True)
    assert main(["ca", "create", "--out", str(folder / "ca"), "--site", SITE]) == 0
    (folder / "manifest.toml").write_text(MANIFEST.format(site=SITE, port=port))
    assert main(["provision", str(folder / "manifest.toml"), "--out", str(folder / "out")]) == 0
    return folder / "out"


def firstboot(
    source: Path, root: Path, *extra: str, source_option: str = "--boot-dir", user: str = ME
) -> int:
    """`watchpost firstboot` of ``source`` (the boot folder, or with ``--bundle`` the bundle)
    into ROOT/etc and ROOT/state for ``user``; its exit status."""
    folders = ["--etc", str(root / "etc"), "--state", str(root / "state")]
    return main(["firstboot", source_option, str(source), *folders, "--user", user, *extra])


def install(bundle: Path, root: Path) -> Path:
    """First boot into ``root``; return the installed config, which names the folders under
    ``root`` (firstboot rewrites /etc/watchpost and /var/lib/watchpost); the test adds its own
    control socket."""
    etc = root / "etc"
    assert firstboot(bundle, root, source_option="--bundle") == 0
    assert not bundle.exists()
    config = etc / "gateway.toml"
    text = config.read_text()
    assert "/etc/watchpost" not in text  # firstboot wrote the roots it installed into
    text += f'\n[control]\nsocket = "{root / "control.sock"}"\n'
    config.write_text(text)
    return config


def Daemon(config: Path, folder: Path) -> Watchpost:
    """`watchpost run` in its own process, with a notify socket standing in for systemd."""
    folder.mkdir(parents=True, exist_ok=True)
    return Watchpost("run", "--config", str(config), folder=folder, name="daemon")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[TlsBroker, Path]]:
    """A Mosquitto requiring client certificates from a site CA; yields it and the site."""
    site = tmp_path / "site"
    site.mkdir()
    assert main(["ca", "create", "--out", str(site / "ca"), "--site", SITE]) == 0
    assert (
        main(
            [
                "ca",
                "broker",
                "--ca-dir",
                str(site / "ca"),
                "--ip",
                "127.0.0.1",
                "--out",
                str(site / "broker"),
            ]
        )
        == 0
    )
    (tmp_path / "mosquitto").mkdir()
    broker = TlsBroker(
        tmp_path / "mosquitto",
        ca=site / "ca" / "ca.crt",
        cert=site / "broker" / "broker.crt",
        key=site / "broker" / "broker.key",
    )
    broker.start()
    yield broker, site
    broker.stop()


@pytest.mark.slow
def test_provisioned_gateways_come_online_over_mutual_tls(
    tls_broker: tuple[TlsBroker, Path], tmp_path: Path
) -> None:
    broker, site = tls_broker
    (site / "manifest.toml").write_text(MANIFEST.format(site=SITE, port=broker.port))
    assert main(["provision", str(site / "manifest.toml"), "--out", str(site / "out")]) == 0
    subscriber = Subscriber(broker.plain, f"watchpost/v1/{SITE}/#")  # type: ignore[arg-type]
    daemons = []
    try:
        for gateway in ("gw-a", "gw-b"):
            config = install(site / "out" / gateway, tmp_path / gateway)
            daemon = Daemon(config, tmp_path / gateway)
            daemons.append(daemon)
            assert any(m.startswith("READY=1") for m in daemon.wait_for("READY=1"))
        for gateway in ("gw-a", "gw-b"):
            status = subscriber.wait_for(f"watchpost/v1/{SITE}/{gateway}/status", timeout=30)
            assert status[-1]["state"] == "online"
            assert status[-1]["gateway"] == gateway
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.log()
            daemon.wait_for("STOPPING=1", timeout=1)
    finally:
        for daemon in daemons:
            daemon.stop()
            daemon.close()
        subscriber.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "trusts_the_broker", [False, True], ids=["gateway-refuses-broker", "broker-refuses-gateway"]
)
def test_a_gateway_from_another_ca_is_refused(
    tls_broker: tuple[TlsBroker, Path], tmp_path: Path, trusts_the_broker: bool
) -> None:
    """Certificates from another CA: whichever side checks first, no connection."""
    broker, site = tls_broker
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    # another name: first boot would catch a same-named CA whose signature does not match
    assert (
        main(
            [
                "ca",
                "create",
                "--out",
                str(stranger / "ca"),
                "--site",
                SITE,
                "--name",
                "Some other CA",
            ]
        )
        == 0
    )
    manifest = MANIFEST.format(site=SITE, port=broker.port)
    if trusts_the_broker:  # right CA for the broker's certificate, wrong CA for its own
        manifest = manifest.replace("keepalive = 10", f'keepalive = 10\nca = "{site}/ca/ca.crt"')
    (stranger / "manifest.toml").write_text(manifest)
    assert main(["provision", str(stranger / "manifest.toml"), "--out", str(stranger / "out")]) == 0
    subscriber = Subscriber(broker.plain, f"watchpost/v1/{SITE}/#")  # type: ignore[arg-type]
    config = install(stranger / "out" / "gw-a", tmp_path / "gw-a")
    daemon = Daemon(config, tmp_path / "gw-a")
    try:
        daemon.wait_for("READY=1")  # it runs, keeps alarming locally, and keeps trying
        time.sleep(4)
        assert subscriber.get(f"watchpost/v1/{SITE}/gw-a/status") == []
        assert daemon.process.poll() is None, daemon.log()
        if trusts_the_broker:
            assert "certificate verify failed" not in daemon.log()
            assert (
                "unknown ca" in broker.log_text().lower()
                or "certificate verify failed" in broker.log_text()
            ), broker.log_text()
        else:
            assert "certificate verify failed" in daemon.log()
        key = (tmp_path / "gw-a" / "etc" / "gateway.key").read_text()
        assert "".join(key.splitlines()[1:-1])[:40] not in daemon.log()
    finally:
        assert daemon.stop() == 0, daemon.log()
        daemon.close()
        subscriber.close()
