"""Certificate renewal end to end: a gateway whose client certificate is due makes a new key,
sends its CSR, installs the certificate the site CA signs, reconnects with it through a
Mosquitto that requires client certificates, and keeps it across a restart. A certificate
for another key is refused and the old one stays."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from paho.mqtt import publish

from tests.conftest import Subscriber
from tests.test_provisioning_e2e import MANIFEST, SITE, Daemon, TlsBroker, install, tls_broker
from watchpost.cli import main
from watchpost.provisioning import pki

__all__ = ["tls_broker"]  # the fixture, used by name below

ROOT = f"watchpost/v1/{SITE}/gw-a/"


def command(broker: TlsBroker, sub: Subscriber, name: str, body: dict[str, object]) -> dict:
    """Publish ``cmd/{name}`` on the broker's plain listener; return the reply."""
    before = len(sub.get(ROOT + f"cmd/{name}/reply"))
    publish.single(
        ROOT + f"cmd/{name}", json.dumps(body), qos=1, hostname="127.0.0.1", port=broker.plain.port
    )
    replies = sub.wait_for(ROOT + f"cmd/{name}/reply", before + 1, timeout=20)
    return replies[-1]


def online_count(sub: Subscriber) -> int:
    return sum(1 for m in sub.get(ROOT + "status") if m["state"] == "online")


@pytest.mark.slow
def test_a_due_certificate_is_renewed_and_used(
    tls_broker: tuple[TlsBroker, Path], tmp_path: Path
) -> None:
    broker, site = tls_broker
    (site / "manifest.toml").write_text(MANIFEST.format(site=SITE, port=broker.port))
    assert main(["provision", str(site / "manifest.toml"), "--out", str(site / "out")]) == 0
    config = install(site / "out" / "gw-a", tmp_path / "gw-a")
    # the bundle's certificate lasts ten years: renewing that far ahead makes it due now
    text = config.read_text().replace("[uplink]\n", "[uplink]\nrenew_before_days = 3650\n", 1)
    config.write_text(text)
    state = tmp_path / "gw-a" / "state"
    sub = Subscriber(broker.plain, ROOT + "#")  # type: ignore[arg-type]
    daemon = Daemon(config, tmp_path / "gw-a")
    try:
        daemon.wait_for("READY=1")
        csr_message = sub.wait_for(ROOT + "csr", timeout=30)[0]
        assert csr_message["reason"] == "expiring"
        assert csr_message["seq"] == 1
        csr_path = tmp_path / "renew.csr"
        csr_path.write_text(csr_message["csr"])
        assert (state / "tls" / "pending.key").stat().st_mode & 0o077 == 0

        # a certificate for another key: refused, nothing changes
        stranger = tmp_path / "stranger.csr"
        stranger.write_bytes(
            pki.pem(pki.make_csr(pki.gateway_subject(SITE, "gw-a"), pki.generate_key()))
        )
        wrong = tmp_path / "wrong.crt"
        sign = ["ca", "sign", "--ca-dir", str(site / "ca"), "--days", "4000"]
        assert main([*sign, str(stranger), "--out", str(wrong)]) == 0
        reply = command(broker, sub, "cert_install", {"id": 1, "certificate": wrong.read_text()})
        assert reply["ok"] is False
        assert "is not for the key this gateway made for it" in reply["error"]

        # the CSR signed by the site CA: installed, tried, kept
        renewed = tmp_path / "renewed.crt"
        assert main([*sign, str(csr_path), "--out", str(renewed)]) == 0
        new_cert = pki.load_certificate(renewed)
        onlines = online_count(sub)
        reply = command(broker, sub, "cert_install", {"id": 2, "certificate": renewed.read_text()})
        assert reply["ok"] is True, reply
        assert reply["result"]["installed"] == "trial"
        sub.wait_for(ROOT + "status", timeout=30, predicate=lambda _m: online_count(sub) > onlines)
        deadline = time.monotonic() + 20
        while not (state / "tls" / "client.crt").exists():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
        kept = x509.load_pem_x509_certificate((state / "tls" / "client.crt").read_bytes())
        assert kept == new_cert
        assert not (state / "tls" / "pending.key").exists()
        not_after = int(new_cert.not_valid_after_utc.timestamp() * 1000)
        health = sub.wait_for(
            ROOT + "health",
            timeout=60,
            predicate=lambda ms: any(
                m.get("certificate", {}).get("not_after") == not_after for m in ms
            ),
        )
        assert health[-1]["certificate"]["renewal"] == "none"
        assert daemon.stop() == 0, daemon.log()

        # after a restart it connects with the renewed certificate, and renews nothing
        onlines = online_count(sub)
        daemon = Daemon(config, tmp_path / "gw-a")
        daemon.wait_for("READY=1")
        sub.wait_for(ROOT + "status", timeout=30, predicate=lambda _m: online_count(sub) > onlines)
        assert len(sub.get(ROOT + "csr")) == 1  # ten years and some days left: not due again
    finally:
        daemon.stop()
        daemon.close()
        sub.close()
