"""Keys, certificates and CSRs for gateways and site CAs (the `cryptography` library).

Private keys are written with mode 0600 from the moment the file exists (``os.open`` with
0o600, never chmod afterwards) and are never printed or logged: no function here returns
key material as text.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec-p256", "rsa-2048", "rsa-3072", "rsa-4096"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# A Pi has no real-time clock: on first boot it may think it is hours or days earlier than
# the machine that provisioned it. Certificates are valid from a day before issue.
BACKDATE = dt.timedelta(days=1)

TEXT_CANNOT_READ = _("cannot read {path}: {error}")
TEXT_CSR_NAME = _("the CSR's common name is not the gateway id {gateway!r}")


class PkiError(Exception):
    """A key or certificate file is unusable. Fix the file; a retry will not help."""


def generate_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    """A new private key: EC P-256 (small, fast on a Pi) or RSA of 2048 bits or more."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(key_type.removeprefix("rsa-"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_private_key(key: PrivateKey, path: Path) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM to a new file created with mode 0600."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_new_file(path, data, 0o600)


def create_command_keys(out: Path) -> tuple[Path, Path]:
    """The platform's Ed25519 pair for signed commands: ``command-signing.key`` (0600, for
    the platform only) and ``command-verify.pem`` (for every gateway's ``[commands]
    verify_key``). Refuses to replace either file."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = out / "command-signing.key"
    public = out / "command-verify.pem"
    out.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_data = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public.exists():
        raise FileExistsError(public)
    write_new_file(private, data, 0o600)
    write_new_file(public, public_data, 0o644)
    return private, public


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (refusing to replace a file) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed the mode given to open
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM private key; PkiError says what is wrong with the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(TEXT_CANNOT_READ.format(path=path, error=exc.strerror or exc)) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise PkiError(f"{path} is encrypted; give an unencrypted key") from exc
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: only EC and RSA keys are supported")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Read the first PEM certificate of ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(TEXT_CANNOT_READ.format(path=path, error=exc.strerror or exc)) from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate") from exc


def pem(item: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return item.public_bytes(serialization.Encoding.PEM)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def create_ca(*, site: str, common_name: str, key: PrivateKey, days: int) -> x509.Certificate:
    """A self-signed CA certificate that signs the gateways' certificates, and nothing more."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a leaf certificate names: a gateway (client) or a broker (server)."""

    common_name: str
    organization: str
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = False

    def name(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
            ]
        )

    def alternative_names(self) -> x509.SubjectAlternativeName | None:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns_names]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ips]
        return x509.SubjectAlternativeName(names) if names else None


def gateway_subject(site: str, gateway: str, hostname: str | None = None) -> Subject:
    """CN = the gateway id, O = the site; SAN: a URI naming both, and the host name if any."""
    return Subject(
        common_name=gateway,
        organization=site,
        dns_names=(hostname,) if hostname else (),
        uris=(f"urn:watchpost:{site}:{gateway}",),
    )


def sign_leaf(
    subject: Subject,
    public_key: CertificatePublicKeyTypes,
    *,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    days: int,
) -> x509.Certificate:
    """A certificate for ``subject`` signed by the CA: client auth, or server auth."""
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if subject.server else ExtendedKeyUsageOID.CLIENT_AUTH
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PkiError("the CA's key is neither EC nor RSA")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name())
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    alternative = subject.alternative_names()
    if alternative is not None:
        builder = builder.add_extension(alternative, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_csr(subject: Subject, key: PrivateKey) -> x509.CertificateSigningRequest:
    """A CSR for ``subject``, for a CA that signs elsewhere."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject.name())
    alternative = subject.alternative_names()
    if alternative is not None:
        builder = builder.add_extension(alternative, critical=False)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    return builder.sign(key, hashes.SHA256())


def check_ca(cert: x509.Certificate, key: PrivateKey | None) -> list[str]:
    """Why ``cert`` (with ``key``, if given) cannot sign gateway certificates; empty if it can."""
    problems = []
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            problems.append("is not a CA certificate (basicConstraints CA:FALSE)")
    except x509.ExtensionNotFound:
        problems.append("is not a CA certificate (no basicConstraints)")
    if cert.not_valid_after_utc <= _now():
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if key is not None and not same_public_key(cert.public_key(), key.public_key()):
        problems.append("does not belong to the given CA key")
    return problems


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True if ``ca_cert`` signed ``cert`` (signature checked, not only the names)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, as colon-separated hex (what installers compare by eye)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def gateway_of(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> str | None:
    """The ``urn:watchpost:{site}:{gateway}`` name a gateway's certificate or CSR carries."""
    try:
        names = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return next((u for u in uris if u.startswith("urn:watchpost:")), None)


def sign_csr(
    csr: x509.CertificateSigningRequest,
    *,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    days: int,
) -> x509.Certificate:
    """A client certificate for a gateway's CSR; PkiError if the CSR is not a gateway's."""
    if not csr.is_signature_valid:
        raise PkiError("the CSR's signature does not match its key")
    name = gateway_of(csr)
    if name is None:
        raise PkiError("the CSR names no gateway (no urn:watchpost:SITE:GATEWAY name)")
    _, _, site, gateway = name.split(":", 3)
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != gateway:
        raise PkiError(TEXT_CSR_NAME.format(gateway=gateway))
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PkiError("the CSR's key is neither EC nor RSA")
    dns = tuple(
        csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    )
    subject = Subject(common_name=gateway, organization=site, dns_names=dns, uris=(name,))
    return sign_leaf(subject, public_key, ca_cert=ca_cert, ca_key=ca_key, days=days)


def renewal_problems(
    new: x509.Certificate,
    *,
    key: PrivateKey,
    current: x509.Certificate,
    trusted: x509.Certificate | None,
) -> list[str]:
    """Why ``new`` cannot replace ``current`` for the gateway holding ``key``; empty if it can.

    ``trusted`` is the site CA the gateway knows; when given, it must have signed ``new``.
    """
    problems = []
    if not same_public_key(new.public_key(), key.public_key()):
        problems.append("is not for the key this gateway made for it")
    if gateway_of(new) != gateway_of(current) or new.subject != current.subject:
        problems.append("names another gateway")
    if new.issuer != current.issuer:
        problems.append("comes from another CA than the current certificate")
    if trusted is not None and not issued_by(new, trusted):
        problems.append("is not signed by the site CA")
    now = _now()
    if not new.not_valid_before_utc <= now < new.not_valid_after_utc:
        problems.append("is not valid now")
    if new.not_valid_after_utc <= current.not_valid_after_utc:
        problems.append("does not last longer than the current certificate")
    return problems
