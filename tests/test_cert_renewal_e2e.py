"""Certificate renewal end to end: a gateway whose client certificate is due makes a new key,
sends its CSR, installs the certificate the site CA signs, reconnects with it through a
Mosquitto that requires client certificates, and keeps it across a restart. A certificate
for another key is refused and the old one stays."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
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


def install_due(broker: TlsBroker, site: Path, folder: Path) -> Path:
    """gw-a provisioned from the site manifest and installed in ``folder``; its config.
    The bundle's certificate lasts ten years: renewing that far ahead makes it due now."""
    (site / "manifest.toml").write_text(MANIFEST.format(site=SITE, port=broker.port))
    assert main(["provision", str(site / "manifest.toml"), "--out", str(site / "out")]) == 0
    config = install(site / "out" / "gw-a", folder)
    text = config.read_text().replace("[uplink]\n", "[uplink]\nrenew_before_days = 3650\n", 1)
    config.write_text(text)
    return config


def sign_with(site: Path) -> list[str]:
    """`watchpost ca sign` with the site CA, before the CSR and --out."""
    return ["ca", "sign", "--ca-dir", str(site / "ca"), "--days", "4000"]


def online_count(sub: Subscriber) -> int:
    return sum(1 for m in sub.get(ROOT + "status") if m["state"] == "online")


@pytest.mark.slow
def test_a_due_certificate_is_renewed_and_used(
    tls_broker: tuple[TlsBroker, Path], tmp_path: Path
) -> None:
    broker, site = tls_broker
    config = install_due(broker, site, tmp_path / "gw-a")
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
        sign = sign_with(site)
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


def revoke(broker: TlsBroker, site: Path, serials: list[int]) -> None:
    """Restart the broker with a CRL of the site CA listing ``serials`` (none: a CRL that
    revokes nothing)."""
    ca_cert = pki.load_certificate(site / "ca" / "ca.crt")
    ca_key = pki.load_private_key(site / "ca" / "ca.key")
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = site / "crl.pem"
    crl.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(Encoding.PEM))  # type: ignore[arg-type]
    text = broker.config.read_text()
    if "crlfile" not in text:
        text = text.replace(
            "require_certificate true\n", f"require_certificate true\ncrlfile {crl}\n"
        )
        broker.config.write_text(text)
    broker.stop()
    broker.start()


def health_where(sub: Subscriber, check: Callable[[dict], bool]) -> dict:
    """The first `health` whose certificate part passes ``check`` (they come every 10 s)."""
    found = sub.wait_for(
        ROOT + "health",
        timeout=60,
        predicate=lambda ms: any(check(m.get("certificate", {})) for m in ms),
    )
    return next(m for m in found if check(m.get("certificate", {})))


@pytest.mark.slow
def test_a_certificate_the_broker_refuses_is_tried_again_and_kept_once_accepted(
    tls_broker: tuple[TlsBroker, Path], tmp_path: Path
) -> None:
    broker, site = tls_broker
    config = install_due(broker, site, tmp_path / "gw-a")
    state = tmp_path / "gw-a" / "state"
    sub = Subscriber(broker.plain, ROOT + "#")  # type: ignore[arg-type]
    daemon = Daemon(config, tmp_path / "gw-a")
    try:
        daemon.wait_for("READY=1")
        csr_path = tmp_path / "renew.csr"
        csr_path.write_text(sub.wait_for(ROOT + "csr", timeout=30)[0]["csr"])
        renewed = tmp_path / "renewed.crt"
        sign = sign_with(site)
        assert main([*sign, str(csr_path), "--out", str(renewed)]) == 0
        new_cert = pki.load_certificate(renewed)

        # the broker does not take the new certificate yet (revoked, as a platform whose
        # broker has not learnt it): the trial fails, the old certificate carries on
        onlines = online_count(sub)
        revoke(broker, site, [new_cert.serial_number])
        sub.wait_for(ROOT + "status", timeout=30, predicate=lambda _m: online_count(sub) > onlines)
        onlines = online_count(sub)
        reply = command(broker, sub, "cert_install", {"id": 1, "certificate": renewed.read_text()})
        assert reply["ok"] is True, reply
        health = health_where(sub, lambda c: c.get("renewal") == "retry")
        assert health["certificate"]["failed_trials"] == 1
        assert health["certificate"]["last_error"]
        assert online_count(sub) > onlines  # back with the old certificate
        assert (state / "tls" / "candidate.crt").exists()
        assert not (state / "tls" / "client.crt").exists()

        # the broker takes it now; the next check (here: the daemon's start) tries it again
        revoke(broker, site, [])
        assert daemon.stop() == 0, daemon.log()
        onlines = online_count(sub)
        daemon = Daemon(config, tmp_path / "gw-a")
        daemon.wait_for("READY=1")
        sub.wait_for(ROOT + "status", timeout=30, predicate=lambda _m: online_count(sub) > onlines)
        deadline = time.monotonic() + 20
        while not (state / "tls" / "client.crt").exists():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
        kept = x509.load_pem_x509_certificate((state / "tls" / "client.crt").read_bytes())
        assert kept == new_cert
        assert not (state / "tls" / "candidate.trials").exists()
        health = health_where(sub, lambda c: c.get("renewal") == "none")
        assert health["certificate"]["failed_trials"] == 0
        assert len(sub.get(ROOT + "csr")) == 1  # one CSR in all: the certificate was not dropped
    finally:
        daemon.stop()
        daemon.close()
        sub.close()
