"""Certificate renewal: the site CA signs a gateway's renewal CSR offline, and the gateway
accepts only a certificate that fits its new key, its name and its CA."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from watchpost.certrenew import ClientCertificates, ClientPair
from watchpost.cli import main
from watchpost.config.uplink import UplinkConfig
from watchpost.provisioning import pki

EXAMPLE = Path(__file__).parents[1] / "examples" / "manifest.toml"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """One gateway's bundle (gw-tank-a), with the site CA in ``../../ca``."""
    shutil.copy(EXAMPLE, tmp_path / "manifest.toml")
    assert main(["ca", "create", "--out", str(tmp_path / "ca"), "--site", "hx-chem-tankfarm"]) == 0
    assert main(["provision", str(tmp_path / "manifest.toml"), "--out", str(tmp_path / "out")]) == 0
    return tmp_path / "out" / "gw-tank-a"


def _renewal_csr(bundle: Path) -> tuple[pki.PrivateKey, Path]:
    key = pki.generate_key()
    csr = pki.make_csr(pki.gateway_subject("hx-chem-tankfarm", "gw-tank-a"), key)
    path = bundle.parent / "renew.csr"
    path.write_bytes(pki.pem(csr))
    return key, path


def test_ca_sign_signs_a_gateway_csr(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, csr = _renewal_csr(bundle)
    out = bundle.parent / "renewed.crt"
    ca = bundle.parents[1] / "ca"
    # the bundle's certificate lasts ten years: the renewal must outlast it
    sign = ["ca", "sign", str(csr), "--ca-dir", str(ca), "--days", "4000"]
    assert main([*sign, "--out", str(out)]) == 0
    assert "gw-tank-a" in capsys.readouterr().out
    cert = pki.load_certificate(out)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-tank-a"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.issued_by(cert, pki.load_certificate(ca / "ca.crt"))
    current = pki.load_certificate(bundle / "gateway.crt")
    trusted = pki.load_certificate(ca / "ca.crt")
    assert pki.renewal_problems(cert, key=key, current=current, trusted=trusted) == []
    # never over an existing file
    assert main([*sign, "--out", str(out)]) == 73
    # a shorter certificate is no renewal
    short = bundle.parent / "short.crt"
    assert main(["ca", "sign", str(csr), "--ca-dir", str(ca), "--out", str(short)]) == 0
    assert "does not last longer than the current certificate" in pki.renewal_problems(
        pki.load_certificate(short), key=key, current=current, trusted=trusted
    )


def test_ca_sign_refuses_what_is_not_a_gateway_csr(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = bundle.parents[1] / "ca"
    plain = bundle.parent / "plain.csr"
    key = pki.generate_key()
    plain.write_bytes(pki.pem(pki.make_csr(pki.Subject("x", "y"), key)))
    out = bundle.parent / "x.crt"
    assert main(["ca", "sign", str(plain), "--ca-dir", str(ca), "--out", str(out)]) == 65
    assert "names no gateway" in capsys.readouterr().err
    garbage = bundle.parent / "garbage.csr"
    garbage.write_text("hello")
    assert main(["ca", "sign", str(garbage), "--ca-dir", str(ca), "--out", str(out)]) == 65
    assert "not a PEM certificate signing request" in capsys.readouterr().err
    assert not out.exists()


def test_a_renewal_for_another_key_or_ca_is_refused(bundle: Path, tmp_path: Path) -> None:
    key, csr = _renewal_csr(bundle)
    ca = bundle.parents[1] / "ca"
    current = pki.load_certificate(bundle / "gateway.crt")
    trusted = pki.load_certificate(ca / "ca.crt")
    out = tmp_path / "a.crt"
    assert (
        main(["ca", "sign", str(csr), "--ca-dir", str(ca), "--days", "4000", "--out", str(out)])
        == 0
    )
    renewed = pki.load_certificate(out)
    other_key = pki.generate_key()
    assert "is not for the key this gateway made for it" in pki.renewal_problems(
        renewed, key=other_key, current=current, trusted=trusted
    )
    # the same CSR signed by another CA with the same name
    assert main(["ca", "create", "--out", str(tmp_path / "ca2"), "--site", "hx-chem-tankfarm"]) == 0
    out2 = tmp_path / "b.crt"
    assert (
        main(["ca", "sign", str(csr), "--ca-dir", str(tmp_path / "ca2"), "--out", str(out2)]) == 0
    )
    foreign = pki.load_certificate(out2)
    assert "is not signed by the site CA" in pki.renewal_problems(
        foreign, key=key, current=current, trusted=trusted
    )


def _on_trial(bundle: Path, state: Path) -> tuple[ClientCertificates, x509.Certificate]:
    """A gateway's certificates with a renewal pending and its signed certificate on trial."""
    certificates = ClientCertificates(certificates_config(bundle), state)
    csr = bundle.parent / "pending.csr"
    csr.write_text(certificates.request())
    signed = bundle.parent / "renewed.crt"
    ca = bundle.parents[1] / "ca"
    assert (
        main(["ca", "sign", str(csr), "--ca-dir", str(ca), "--days", "4000", "--out", str(signed)])
        == 0
    )
    certificates.install(signed.read_text(), trusted=pki.load_certificate(ca / "ca.crt"))
    return certificates, pki.load_certificate(signed)


def test_a_refused_trial_is_tried_again_then_given_up_for_a_new_csr(
    bundle: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    certificates, signed = _on_trial(bundle, state)
    now = int(time.time() * 1000)
    assert certificates.health(now)["renewal"] == "trial"
    first_csr = (state / "pending.csr").read_text()

    certificates.trial_ended(accepted=False, reason="certificate revoked")
    health = certificates.health(now)
    assert (health["renewal"], health["failed_trials"]) == ("retry", 1)
    assert health["last_error"] == "certificate revoked"
    assert certificates.for_connect() == certificates.active()  # the old pair meanwhile
    assert certificates.announce_if_due(dt.datetime.now(dt.UTC)) is None  # no new CSR yet

    # a trial that never reached the broker does not count; a restart keeps the count
    assert certificates.retry_trial()
    assert certificates.for_connect() == ClientPair(state / "candidate.crt", state / "pending.key")
    certificates.trial_ended(accepted=False, reason="connection refused", counted=False)
    restarted = ClientCertificates(certificates_config(bundle), state)
    assert restarted.health(now)["failed_trials"] == 1
    assert restarted.retry_trial()
    assert not restarted.retry_trial()  # already on trial
    restarted.trial_ended(accepted=False, reason="certificate revoked")
    assert restarted.health(now)["failed_trials"] == 2

    assert restarted.retry_trial()
    restarted.trial_ended(accepted=False, reason="certificate revoked")
    health = restarted.health(now)
    assert health["renewal"] == "none"  # given up: nothing pending, no candidate
    assert "3 times" in health["last_error"]
    assert not restarted.retry_trial()
    assert not (state / "candidate.crt").exists()
    assert not (state / "pending.key").exists()
    # still due: the next check makes a new key and CSR
    again = restarted.announce_if_due(dt.datetime.now(dt.UTC))
    assert again is not None
    assert again != first_csr
    assert restarted.health(now)["renewal"] == "pending"
    assert signed.not_valid_after_utc > restarted.current().not_valid_after_utc


def test_a_new_certificate_starts_a_fresh_count_and_is_kept_when_accepted(
    bundle: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    certificates, signed = _on_trial(bundle, state)
    certificates.trial_ended(accepted=False, reason="not authorised")
    certificates.trial_ended(accepted=False, reason="ignored: no trial")  # nothing on trial
    assert certificates.health(0)["failed_trials"] == 1
    assert certificates.retry_trial()
    certificates.trial_ended(accepted=True)
    health = certificates.health(0)
    assert (health["renewal"], health["failed_trials"], health["last_error"]) == ("none", 0, None)
    assert certificates.current() == signed
    assert not (state / "candidate.trials").exists()


def certificates_config(bundle: Path) -> UplinkConfig:
    """Mutual TLS with the bundle's pair; its ten-year certificate is due at once."""
    return UplinkConfig(
        broker="mqtts://127.0.0.1:8883",
        cert_file=bundle / "gateway.crt",
        key_file=bundle / "gateway.key",
        renew_before_days=3650,
    )
