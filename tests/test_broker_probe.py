"""The broker check installers and crews rely on: a real MQTT CONNECT with the config's own
TLS, certificates and credentials against a real Mosquitto, and the reason named when it
fails; `watchpost selftest` with the daemon stopped says the same."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker
from tests.kit.net import free_port
from tests.site_run import stop, watchpost
from watchpost.broker_probe import probe
from watchpost.cli import main
from watchpost.clock import kernel_synced
from watchpost.config.uplink import UplinkConfig
from watchpost.provisioning import pki
from watchpost.selftest import Check, check_clock, exit_status

ME = pwd.getpwuid(os.getuid()).pw_name


@dataclass
class Pki:
    """A site CA with a broker and a gateway certificate, and a stranger CA with a gateway
    certificate of its own."""

    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name


def _issue(folder: Path, name: str, subject: pki.Subject, ca: tuple[Any, Any]) -> None:
    key = pki.generate_key()
    cert = pki.sign_leaf(subject, key.public_key(), ca_cert=ca[0], ca_key=ca[1], days=30)
    (folder / f"{name}.crt").write_bytes(pki.pem(cert))
    pki.write_private_key(key, folder / f"{name}.key")


def _ca(folder: Path, name: str, common_name: str) -> tuple[Any, Any]:
    key = pki.generate_key()
    cert = pki.create_ca(site="probe-site", common_name=common_name, key=key, days=30)
    (folder / f"{name}.crt").write_bytes(pki.pem(cert))
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    site = _ca(folder, "ca", "Probe site CA")
    stranger = _ca(folder, "stranger-ca", "Some other CA")
    server = pki.Subject("broker", "probe-site", ips=("127.0.0.1",), server=True)
    _issue(folder, "broker", server, site)
    _issue(folder, "gateway", pki.gateway_subject("probe-site", "gw-1"), site)
    _issue(folder, "stranger", pki.gateway_subject("probe-site", "gw-1"), stranger)
    return Pki(folder)


class TlsBroker(Broker):
    """Mosquitto with a TLS listener that requires client certificates from the site CA,
    and a plain listener that requires a user name and password."""

    def __init__(self, folder: Path, certs: Pki) -> None:
        super().__init__(folder)
        self.plain_port = free_port()
        passwords = folder / "passwords"
        passwords.write_text("crew:secret\n")
        subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
        passwords.chmod(0o600)
        acl = folder / "acl"
        acl.write_text("user crew\ntopic read nothing/#\n")
        acl.chmod(0o600)
        lines = [
            f"user {ME}",
            "per_listener_settings true",
            f"listener {self.port} 127.0.0.1",
            f"cafile {certs.path('ca.crt')}",
            f"certfile {certs.path('broker.crt')}",
            f"keyfile {certs.path('broker.key')}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous true",
            f"listener {self.plain_port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {passwords}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.config.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Pki) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path_factory.mktemp("mosquitto"), certs)
    broker.start()
    yield broker
    broker.stop()


def _uplink(broker: str, **files: object) -> UplinkConfig:
    return UplinkConfig.model_validate({"broker": broker, "connect_timeout": 5, **files})


def _tls(broker: TlsBroker, certs: Pki, *, ca: str = "ca", client: str = "gateway") -> UplinkConfig:
    return _uplink(
        f"mqtts://127.0.0.1:{broker.port}",
        ca_file=certs.path(f"{ca}.crt"),
        cert_file=certs.path(f"{client}.crt"),
        key_file=certs.path(f"{client}.key"),
    )


def test_the_right_certificates_connect(tls_broker, certs):
    result = probe(_tls(tls_broker, certs), client_id="gw-1")
    assert result.ok, result.detail
    assert "accepted the gateway's MQTT CONNECT" in result.detail


def test_a_wrong_ca_is_named(tls_broker, certs):
    """A TCP connect would pass here; the TLS handshake does not."""
    result = probe(_tls(tls_broker, certs, ca="stranger-ca"), client_id="gw-1")
    assert not result.ok
    assert "certificate verify failed" in result.detail
    assert "ca_file" in result.detail


def test_an_untrusted_client_certificate_is_named(tls_broker, certs):
    result = probe(_tls(tls_broker, certs, client="stranger"), client_id="gw-1")
    assert not result.ok
    assert "the broker did not accept the gateway's certificate" in result.detail
    assert "Unspecified error" not in result.detail


def test_bad_credentials_and_no_credentials(tls_broker, tmp_path):
    url = f"mqtt://127.0.0.1:{tls_broker.plain_port}"
    password = tmp_path / "password"
    password.write_text("wrong\n")
    refused = probe(_uplink(url, username="crew", password_file=password), client_id="gw-1")
    assert not refused.ok
    assert "not authorised" in refused.detail or "bad user name or password" in refused.detail
    anonymous = probe(_uplink(url), client_id="gw-1")
    assert not anonymous.ok
    assert "not authorised" in anonymous.detail
    password.write_text("secret\n")
    assert probe(_uplink(url, username="crew", password_file=password), client_id="gw-1").ok


def test_tls_to_a_plain_listener_is_named(tls_broker, certs):
    config = _uplink(f"mqtts://127.0.0.1:{tls_broker.plain_port}", ca_file=certs.path("ca.crt"))
    result = probe(config, client_id="gw-1")
    assert not result.ok
    assert "is it a TLS listener?" in result.detail


def test_nothing_listening_is_named():
    result = probe(_uplink(f"mqtt://127.0.0.1:{free_port()}"), client_id="gw-1")
    assert not result.ok
    assert "connection refused" in result.detail


def test_selftest_with_the_daemon_stopped_connects_for_real(tls_broker, certs, tmp_path, capsys):
    """The old check was a TCP connect and said PASS with a wrong CA."""
    tls = (
        f'ca_file = "{certs.path("stranger-ca.crt")}"\ncert_file = "{certs.path("gateway.crt")}"\n'
        f'key_file = "{certs.path("gateway.key")}"\n'
    )
    broker = f"mqtts://127.0.0.1:{tls_broker.port}"
    (tmp_path / "gateway.toml").write_text(MINIMAL.format(broker=broker, tls=tls, folder=tmp_path))
    status = main(["selftest", "--config", str(tmp_path / "gateway.toml"), "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert status == 1
    assert checks["broker"]["result"] == "fail"
    assert "certificate verify failed" in checks["broker"]["detail"]


MINIMAL = """\
[gateway]
site = "probe-site"
id = "gw-1"

[uplink]
broker = "{broker}"
reconnect_min = 0.2
reconnect_max = 1.0
{tls}
[store]
path = "{folder}/var/buffer.db"

[control]
socket = "{folder}/control.sock"
"""


def _daemon_selftest(folder: Path, broker: str, tls: str = "") -> tuple[int, dict[str, Any]]:
    """A daemon with no devices, its self-test once it has tried the broker, then stopped."""
    config = folder / "gateway.toml"
    config.write_text(MINIMAL.format(broker=broker, tls=tls, folder=folder))
    config.chmod(0o600)
    daemon = watchpost("run", "--config", str(config), cwd=folder, log=folder / "gateway.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = subprocess.run(
                [sys.executable, "-m", "watchpost", "selftest", "--json", "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            checks = {c["name"]: c for c in json.loads(result.stdout or "[]")}
            running = checks.get("daemon", {}).get("detail", "").startswith("running")
            if running and "last error: none yet" not in checks["broker"]["detail"]:
                return result.returncode, checks
            time.sleep(0.5)
        raise AssertionError((folder / "gateway.log").read_text())
    finally:
        assert stop(daemon) == 0, (folder / "gateway.log").read_text()


def test_with_the_daemon_running_a_broker_fail_says_why(tmp_path):
    status, checks = _daemon_selftest(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    assert status == 1
    assert checks["daemon"]["result"] == "pass"
    assert checks["broker"]["result"] == "fail"
    assert "last error: connection refused at 127.0.0.1" in checks["broker"]["detail"]


def test_the_daemon_logs_an_untrusted_certificate_plainly(tls_broker, certs, tmp_path):
    tls = (
        f'ca_file = "{certs.path("ca.crt")}"\ncert_file = "{certs.path("stranger.crt")}"\n'
        f'key_file = "{certs.path("stranger.key")}"\n'
    )
    status, checks = _daemon_selftest(tmp_path, f"mqtts://127.0.0.1:{tls_broker.port}", tls)
    assert status == 1
    assert "the broker did not accept the gateway's certificate" in checks["broker"]["detail"]
    log = (tmp_path / "gateway.log").read_text()
    assert "the broker did not accept the gateway's certificate" in log
    assert "Unspecified error" not in log


def test_an_unsynchronised_clock_is_a_warning_and_warnings_do_not_fail():
    ntp = check_clock("ntp", synced=False)
    assert (ntp.ok, ntp.result) == (True, "warn")
    assert "corrected once the clock is set" in ntp.detail
    assert check_clock("rtc", synced=False).result == "pass"
    assert check_clock("ntp", synced=True).result == "pass"
    fail = Check("store", False, "damaged")
    assert exit_status([ntp, Check("disk", True, "ok")]) == 0
    assert exit_status([ntp, fail]) == 1
    assert Check.from_dict(ntp.as_dict()) == ntp
    assert Check.from_dict({"name": "old", "ok": False, "detail": "x"}).result == "fail"


def test_selftest_prints_warn_in_its_table(tmp_path, capsys):
    """With the daemon stopped, on this box (its clock may or may not be synchronised)."""
    (tmp_path / "gateway.toml").write_text(
        MINIMAL.format(broker=f"mqtt://127.0.0.1:{free_port()}", tls="", folder=tmp_path)
    )
    status = main(["selftest", "--config", str(tmp_path / "gateway.toml")])
    out = capsys.readouterr().out
    assert status == 1  # the broker is not there
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.strip()}
    assert lines["broker"] == "FAIL"
    assert lines["clock"] == ("PASS" if kernel_synced() else "WARN")
    assert lines["disk"] == "PASS"
