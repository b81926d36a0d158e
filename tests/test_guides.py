"""What the installer guide tells people to do, done: how to get the software, and a TLS
Mosquitto set up with the file ownership the guide gives."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MOSQUITTO, free_port, wait_port
from watchpost.broker_probe import probe
from watchpost.cli import main
from watchpost.config.uplink import UplinkConfig
from watchpost.provisioning import pki

GUIDE = Path(__file__).parents[1] / "docs" / "installer-guide.md"


def test_the_guide_does_not_send_installers_to_an_index_without_the_package():
    text = GUIDE.read_text()
    commands = re.findall(r"^(?:sudo )?(?:\S+/)?pip install .*$", text, re.M)
    assert all("watchpost-gateway" not in line or ".whl" in line for line in commands), commands
    assert "scripts/setup" in text
    assert "pip wheel --no-deps -w dist ." in text


def _mosquitto_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


@pytest.fixture
def world_readable_folder() -> Iterator[Path]:
    """A folder user `mosquitto` can reach (pytest's own folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="watchpost-guide-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="Mosquitto drops to its own user only as root")
@pytest.mark.skipif(_mosquitto_user() is None, reason="no user mosquitto (Debian's package)")
def test_a_tls_mosquitto_set_up_as_the_guide_says(world_readable_folder):
    """The broker's files installed with the guide's modes and owners; Mosquitto started as
    root (no `user` line: it drops to `mosquitto`), then a gateway's MQTT CONNECT."""
    work = world_readable_folder
    assert main(["ca", "create", "--out", str(work / "ca"), "--site", "guide-site"]) == 0
    assert (
        main(
            [
                "ca",
                "broker",
                "--ca-dir",
                str(work / "ca"),
                "--ip",
                "127.0.0.1",
                "--out",
                str(work / "broker"),
            ]
        )
        == 0
    )
    assert (work / "broker" / "broker.key").stat().st_mode & 0o777 == 0o600  # as written
    etc = work / "etc-mosquitto"
    (etc / "certs").mkdir(parents=True)
    etc.chmod(0o755)
    (etc / "certs").chmod(0o755)
    for source, target, mode, group in (
        (work / "ca" / "ca.crt", etc / "certs" / "watchpost-ca.crt", "0644", "root"),
        (work / "broker" / "broker.crt", etc / "certs" / "broker.crt", "0644", "root"),
        (work / "broker" / "broker.key", etc / "certs" / "broker.key", "0640", "mosquitto"),
    ):
        subprocess.run(
            ["install", "-m", mode, "-o", "root", "-g", group, str(source), str(target)],
            check=True,
        )
    # a gateway certificate from the same CA, as provisioning makes it
    ca_cert = pki.load_certificate(work / "ca" / "ca.crt")
    ca_key = pki.load_private_key(work / "ca" / "ca.key")
    key = pki.generate_key()
    cert = pki.sign_leaf(
        pki.gateway_subject("guide-site", "gw-1"),
        key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        days=1,
    )
    (work / "gw.crt").write_bytes(pki.pem(cert))
    pki.write_private_key(key, work / "gw.key")
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {etc / 'certs' / 'watchpost-ca.crt'}\n"
        f"certfile {etc / 'certs' / 'broker.crt'}\n"
        f"keyfile {etc / 'certs' / 'broker.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        "allow_anonymous true\npersistence false\n"
    )
    conf.chmod(0o644)
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    try:
        wait_port("127.0.0.1", port, timeout=10)
        config = UplinkConfig.model_validate(
            {
                "broker": f"mqtts://127.0.0.1:{port}",
                "ca_file": str(work / "ca" / "ca.crt"),
                "cert_file": str(work / "gw.crt"),
                "key_file": str(work / "gw.key"),
                "connect_timeout": 5,
            }
        )
        result = probe(config, client_id="gw-1")
        assert result.ok, result.detail
    finally:
        broker.terminate()
        _out, err = broker.communicate(timeout=10)
    assert "Unable to load server key file" not in err
