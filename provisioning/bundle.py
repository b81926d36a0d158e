"""Site manifest to one bundle per gateway; a site CA for a new enterprise.

A bundle is a folder named after the gateway::

    gw-01/
      gateway.toml   the gateway's config (0640); files point at /etc/watchpost, /var/lib/watchpost
      gateway.key    its private key (0600), generated here, never printed
      gateway.crt    its certificate, signed by the site CA   (or gateway.csr with --csr)
      ca.crt         the CA the gateway trusts for the broker's certificate
      command-verify.pem  the platform's key for signed commands, when the manifest names one
      bundle.json    what the bundle is: format, site, gateway, certificate fingerprint

Commands: ``watchpost provision MANIFEST --out DIR [--csr]``, ``watchpost ca create``,
``watchpost ca broker``, ``watchpost ca sign`` (a gateway's renewal CSR, offline).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from watchpost import __version__
from watchpost.command_auth import load_verify_key
from watchpost.config import EXIT_CONFIG, ConfigError, load_config, print_config_error
from watchpost.provisioning import pki, tomlwrite
from watchpost.provisioning.manifest import (
    CA_NAME,
    CERT_NAME,
    CONFIG_NAME,
    CSR_NAME,
    KEY_NAME,
    VERIFY_KEY_NAME,
    GatewaySection,
    Manifest,
    gateway_config,
    load_manifest,
)

Handler = Callable[[argparse.Namespace], int]

BUNDLE_FORMAT = 1
BUNDLE_INFO = "bundle.json"
EXIT_CANTCREAT = 73  # EX_CANTCREAT: an output file exists or cannot be made
EXIT_IOERR = 74  # EX_IOERR

TEXT_PROVISION_HELP = _("turn a site manifest into one bundle per gateway")
TEXT_MANIFEST_HELP = _("the site manifest (TOML)")
TEXT_OUT_HELP = _("folder to write the bundles into (one sub-folder per gateway)")
TEXT_CSR_HELP = _(
    "write a certificate signing request instead of a certificate, for a CA that signs elsewhere"
)
TEXT_FORCE_HELP = _("replace bundles that already exist (their keys are lost)")
TEXT_ONLY_HELP = _("provision only this gateway (repeatable)")
TEXT_CA_HELP = _("make a site CA, or a broker certificate signed by it")
TEXT_CA_CREATE_HELP = _("make a new site CA (ca.crt, ca.key) for an enterprise")
TEXT_CA_OUT_HELP = _("folder for ca.crt and ca.key")
TEXT_SITE_HELP = _("site id (the organisation in the CA's name)")
TEXT_CN_HELP = _("common name of the CA (default: 'Watchpost CA <site>')")
TEXT_DAYS_HELP = _("days the certificate is valid")
TEXT_KEY_TYPE_HELP = _("key type")
TEXT_BROKER_HELP = _("make a server certificate for an MQTT broker, signed by the site CA")
TEXT_CA_DIR_HELP = _("folder holding the site CA's ca.crt and ca.key")
TEXT_HOST_HELP = _("the broker's DNS name, as gateways write it in the broker URL (repeatable)")
TEXT_IP_HELP = _("an IP address gateways use to reach the broker (repeatable)")
TEXT_BROKER_OUT_HELP = _("folder for broker.crt and broker.key")

TEXT_CA_NEEDS_KEY = _(
    "is required to sign certificates (or use --csr to have them signed elsewhere)"
)
TEXT_CA_REQUIRED = _("is required: the site CA (cert and key), or use --csr")
TEXT_NO_BROKER_CA = _(
    "no CA for the broker's certificate: set [broker] ca or [ca] cert, "
    "or put ca.crt into each bundle before first boot"
)
TEXT_EXISTS = _("{path} already exists; remove it or pass --force (its key is then lost)")
TEXT_UNKNOWN_GATEWAY = _("no gateway {name!r} in the manifest (gateways: {known})")
TEXT_WRITE_FAILED = _("cannot write {path}: {error}")
TEXT_BUNDLE_DONE = _(
    "{gateway}: bundle {path}, certificate SHA-256 {fingerprint}, valid until {until:%Y-%m-%d}"
)
TEXT_CSR_DONE = _(
    "{gateway}: bundle {path} with a CSR: have {csr} signed and save the "
    "certificate as {cert} in the bundle"
)
TEXT_CA_DONE = _(
    "site CA written: {cert} (give it out) and {key} (keep it secret, 0600); SHA-256 {fingerprint}"
)
TEXT_BROKER_DONE = _("broker certificate written: {cert} and {key} (0600), for {names}")
TEXT_SIGN_HELP = _("sign a gateway's certificate signing request (a renewal) with the site CA")
TEXT_SIGN_CSR_HELP = _("the gateway's CSR (PEM), from its `csr` message or its bundle")
TEXT_SIGN_OUT_HELP = _("file to write the signed certificate (PEM) to")
TEXT_COMMAND_KEY_HELP = _(
    "make the platform's Ed25519 key pair for signed commands ([commands] verify_key)"
)
TEXT_COMMAND_KEY_OUT_HELP = _("folder for command-signing.key and command-verify.pem")
TEXT_COMMAND_KEY_DONE = _(
    "command keys written: {private} (0600: the platform signs with it; keep it there) and "
    "{public} (every gateway's [commands] verify_key)"
)
TEXT_SIGN_DONE = _("certificate for {gateway} written to {path}, valid until {until}")
TEXT_BAD_CSR = _("{path}: not a PEM certificate signing request")
TEXT_KEY_EXISTS = _("{path} already exists; refusing to replace a key")


class BundleError(Exception):
    """A bundle cannot be written or does not fit together; the message says what to fix."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True, slots=True)
class Signer:
    """The CA material a provisioning run uses."""

    ca_cert: x509.Certificate | None  # signs gateways; None with --csr
    ca_key: pki.PrivateKey | None
    trust: bytes | None  # ca.crt of each bundle: the CA of the broker's certificate
    verify_key: bytes | None = None  # command-verify.pem of each bundle (signed commands)


def load_signer(manifest: Manifest, manifest_path: Path, *, csr: bool) -> Signer:
    """Load and check the CA files the manifest names; ConfigError names the key."""
    problems: list[str] = []
    ca_cert = ca_key = None
    if manifest.ca is None:
        if not csr:
            raise ConfigError(manifest_path, ["ca: " + TEXT_CA_REQUIRED])
    else:
        try:
            ca_cert = pki.load_certificate(manifest.ca.cert)
        except pki.PkiError as exc:
            problems.append(f"ca.cert: {exc}")
        if manifest.ca.key is not None and not csr:
            try:
                ca_key = pki.load_private_key(manifest.ca.key)
            except pki.PkiError as exc:
                problems.append(f"ca.key: {exc}")
        elif not csr:
            problems.append("ca.key: " + TEXT_CA_NEEDS_KEY)
        if ca_cert is not None and not csr:
            problems += [
                f"ca.cert: {manifest.ca.cert} {problem}"
                for problem in pki.check_ca(ca_cert, ca_key)
            ]
    trust = None
    if manifest.broker.ca is not None:
        try:
            pki.load_certificate(manifest.broker.ca)  # a certificate, not something else
            trust = manifest.broker.ca.read_bytes()  # the whole file: it may hold a chain
        except (pki.PkiError, OSError) as exc:
            problems.append(f"broker.ca: {exc}")
    elif ca_cert is not None:
        trust = pki.pem(ca_cert)
    verify_key = _command_key(manifest.commands.verify_key, problems)
    if problems:
        raise ConfigError(manifest_path, problems)
    return Signer(ca_cert if not csr else None, ca_key, trust, verify_key)


def _command_key(path: Path | None, problems: list[str]) -> bytes | None:
    """The platform's command verify key for each bundle; an Ed25519 public key, or the
    gateways would refuse to start (a problem is added naming the key)."""
    if path is None:
        return None
    try:
        load_verify_key(path)
        return path.read_bytes()
    except (ValueError, OSError) as exc:
        problems.append(f"commands.verify_key: {exc}")
        return None


def provision(
    manifest: Manifest,
    signer: Signer,
    out: Path,
    *,
    force: bool = False,
    only: list[str] | None = None,
) -> list[str]:
    """Write one bundle per gateway under ``out``; return one line per bundle for the user.

    Each bundle is written into a temporary folder beside its final place and renamed into
    it when complete, so an interrupted run never leaves half a bundle.
    """
    gateways = _select(manifest, only)
    for gateway in gateways:
        target = out / gateway.id
        if target.exists() and not force:
            raise BundleError(TEXT_EXISTS.format(path=target), EXIT_CANTCREAT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_failed(exc, out) from exc
    report = []
    for gateway in gateways:
        target = out / gateway.id
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{gateway.id}.", dir=out))
            try:
                report.append(_write_bundle(manifest, signer, gateway, work, target))
                if target.exists():
                    shutil.rmtree(target)
                work.rename(target)
            finally:
                if work.exists():
                    shutil.rmtree(work)
        except OSError as exc:
            raise _write_failed(exc, target) from exc
    return report


def _select(manifest: Manifest, only: list[str] | None) -> list[GatewaySection]:
    if not only:
        return list(manifest.gateways)
    known = {gateway.id: gateway for gateway in manifest.gateways}
    for name in only:
        if name not in known:
            raise BundleError(
                TEXT_UNKNOWN_GATEWAY.format(name=name, known=", ".join(known)), EXIT_CONFIG
            )
    return [known[name] for name in dict.fromkeys(only)]


def _write_bundle(
    manifest: Manifest, signer: Signer, gateway: GatewaySection, work: Path, target: Path
) -> str:
    work.chmod(0o700)  # holds a private key until it is renamed into place
    config_path = work / CONFIG_NAME
    header = (
        f"# Watchpost gateway {gateway.id} of site {manifest.site}: generated by "
        f"`watchpost provision` {__version__} from the site manifest.\n"
        "# Change the manifest and provision again rather than editing this file.\n\n"
    )
    text = header + tomlwrite.dumps(gateway_config(manifest, gateway))
    pki.write_new_file(config_path, text.encode("utf-8"), 0o640)
    try:
        load_config(config_path)  # the manifest passed the same checks: a failure is a bug
    except ConfigError as exc:
        raise AssertionError(f"provisioning wrote an invalid config: {exc}") from exc

    key = pki.generate_key(manifest.certificates.key_type)
    pki.write_private_key(key, work / KEY_NAME)
    subject = pki.gateway_subject(manifest.site, gateway.id, gateway.hostname)
    info: dict[str, object] = {
        "format": BUNDLE_FORMAT,
        "site": manifest.site,
        "gateway": gateway.id,
        "generator": f"watchpost {__version__}",
    }
    if signer.trust is not None:
        pki.write_new_file(work / CA_NAME, signer.trust, 0o644)
    if signer.verify_key is not None:
        pki.write_new_file(work / VERIFY_KEY_NAME, signer.verify_key, 0o644)
    if signer.ca_cert is None or signer.ca_key is None:
        pki.write_new_file(work / CSR_NAME, pki.pem(pki.make_csr(subject, key)), 0o644)
        line = TEXT_CSR_DONE.format(gateway=gateway.id, path=target, csr=CSR_NAME, cert=CERT_NAME)
    else:
        cert = pki.sign_leaf(
            subject,
            key.public_key(),
            ca_cert=signer.ca_cert,
            ca_key=signer.ca_key,
            days=manifest.certificates.days,
        )
        pki.write_new_file(work / CERT_NAME, pki.pem(cert), 0o644)
        info["certificate_sha256"] = pki.fingerprint(cert)
        line = TEXT_BUNDLE_DONE.format(
            gateway=gateway.id,
            path=target,
            fingerprint=pki.fingerprint(cert),
            until=cert.not_valid_after_utc,
        )
    pki.write_new_file(
        work / BUNDLE_INFO, (json.dumps(info, indent=2) + "\n").encode("utf-8"), 0o644
    )
    return line


def create_site_ca(
    out: Path,
    *,
    site: str,
    common_name: str | None = None,
    days: int = 7300,
    key_type: pki.KeyType = "ec-p256",
) -> tuple[Path, Path, x509.Certificate]:
    """Write ``out/ca.crt`` and ``out/ca.key`` (0600) for a new site; never replaces a key."""
    cert_path, key_path = _new_pair(out, "ca")
    key = pki.generate_key(key_type)
    cert = pki.create_ca(
        site=site, common_name=common_name or f"Watchpost CA {site}", key=key, days=days
    )
    _write_pair(out, key, cert, key_path, cert_path)
    return cert_path, key_path, cert


def _new_pair(out: Path, stem: str) -> tuple[Path, Path]:
    """``out/STEM.crt`` and ``out/STEM.key``; BundleError if either exists (a key is never
    replaced)."""
    cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise BundleError(TEXT_KEY_EXISTS.format(path=path), EXIT_CANTCREAT)
    return cert_path, key_path


def _write_pair(
    out: Path, key: pki.PrivateKey, cert: x509.Certificate, key_path: Path, cert_path: Path
) -> None:
    """Write the key (0600) and its certificate into ``out``, made if need be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        pki.write_private_key(key, key_path)
        pki.write_new_file(cert_path, pki.pem(cert), 0o644)
    except OSError as exc:
        raise _write_failed(exc, out) from exc


def _write_failed(exc: OSError, where: Path, exit_status: int = EXIT_IOERR) -> BundleError:
    """The BundleError for a failed write: the file the OS names (else ``where``), its reason."""
    return BundleError(
        TEXT_WRITE_FAILED.format(path=exc.filename or where, error=exc.strerror or exc),
        exit_status,
    )


def _load_site_ca(ca_dir: Path) -> tuple[x509.Certificate, pki.PrivateKey]:
    """The site CA's certificate and key from ``ca_dir``; BundleError if it cannot sign."""
    try:
        ca_cert = pki.load_certificate(ca_dir / "ca.crt")
        ca_key = pki.load_private_key(ca_dir / "ca.key")
    except pki.PkiError as exc:
        raise BundleError(str(exc), EXIT_CONFIG) from exc
    problems = pki.check_ca(ca_cert, ca_key)
    if problems:
        raise BundleError(f"{ca_dir / 'ca.crt'}: " + "; ".join(problems), EXIT_CONFIG)
    return ca_cert, ca_key


def sign_gateway_csr(ca_dir: Path, csr_path: Path, out: Path, *, days: int) -> x509.Certificate:
    """Sign the gateway CSR at ``csr_path`` with the CA in ``ca_dir``; write it to ``out``."""
    ca_cert, ca_key = _load_site_ca(ca_dir)
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except OSError as exc:
        raise BundleError(f"{csr_path}: {exc.strerror or exc}", EXIT_IOERR) from exc
    except ValueError as exc:
        raise BundleError(TEXT_BAD_CSR.format(path=csr_path), 65) from exc  # EX_DATAERR
    try:
        cert = pki.sign_csr(csr, ca_cert=ca_cert, ca_key=ca_key, days=days)
    except pki.PkiError as exc:
        raise BundleError(f"{csr_path}: {exc}", 65) from exc
    try:
        pki.write_new_file(out, pki.pem(cert), 0o644)
    except OSError as exc:
        exit_status = EXIT_CANTCREAT if isinstance(exc, FileExistsError) else EXIT_IOERR
        raise _write_failed(exc, out, exit_status) from exc
    return cert


def create_broker_cert(
    ca_dir: Path, out: Path, *, hosts: list[str], ips: list[str], days: int = 3650
) -> tuple[Path, Path]:
    """Write ``out/broker.crt`` and ``out/broker.key`` (0600), signed by the CA in ``ca_dir``."""
    ca_cert, ca_key = _load_site_ca(ca_dir)
    cert_path, key_path = _new_pair(out, "broker")
    key = pki.generate_key("ec-p256")
    organization = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = pki.Subject(
        common_name=(hosts or ips)[0],
        organization=str(organization[0].value) if organization else "watchpost",
        dns_names=tuple(hosts),
        ips=tuple(ips),
        server=True,
    )
    try:
        cert = pki.sign_leaf(subject, key.public_key(), ca_cert=ca_cert, ca_key=ca_key, days=days)
    except ValueError as exc:  # an IP address that is not one
        raise BundleError(str(exc), 2) from exc
    _write_pair(out, key, cert, key_path, cert_path)
    return cert_path, key_path


# -- the `watchpost provision` and `watchpost ca` commands -----------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser("provision", help=TEXT_PROVISION_HELP)
    command.add_argument("manifest", type=Path, metavar="MANIFEST", help=TEXT_MANIFEST_HELP)
    command.add_argument("--out", type=Path, required=True, metavar="DIR", help=TEXT_OUT_HELP)
    command.add_argument("--csr", action="store_true", help=TEXT_CSR_HELP)
    command.add_argument("--force", action="store_true", help=TEXT_FORCE_HELP)
    command.add_argument("--only", action="append", metavar="GATEWAY", help=TEXT_ONLY_HELP)
    command.set_defaults(handler=_provision)

    ca = subparsers.add_parser("ca", help=TEXT_CA_HELP)
    actions = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help=TEXT_CA_CREATE_HELP)
    create.add_argument("--out", type=Path, required=True, metavar="DIR", help=TEXT_CA_OUT_HELP)
    create.add_argument("--site", required=True, help=TEXT_SITE_HELP)
    create.add_argument("--name", help=TEXT_CN_HELP)
    create.add_argument("--days", type=int, default=7300, help=TEXT_DAYS_HELP)
    create.add_argument(
        "--key-type",
        default="ec-p256",
        choices=["ec-p256", "rsa-2048", "rsa-3072", "rsa-4096"],
        help=TEXT_KEY_TYPE_HELP,
    )
    create.set_defaults(handler=_ca_create)
    broker = actions.add_parser("broker", help=TEXT_BROKER_HELP)
    broker.add_argument("--ca-dir", type=Path, required=True, metavar="DIR", help=TEXT_CA_DIR_HELP)
    broker.add_argument("--host", action="append", default=[], help=TEXT_HOST_HELP)
    broker.add_argument("--ip", action="append", default=[], help=TEXT_IP_HELP)
    broker.add_argument("--out", type=Path, required=True, metavar="DIR", help=TEXT_BROKER_OUT_HELP)
    broker.add_argument("--days", type=int, default=3650, help=TEXT_DAYS_HELP)
    broker.set_defaults(handler=_ca_broker)
    sign = actions.add_parser("sign", help=TEXT_SIGN_HELP)
    sign.add_argument("csr", type=Path, metavar="CSR", help=TEXT_SIGN_CSR_HELP)
    sign.add_argument("--ca-dir", type=Path, required=True, metavar="DIR", help=TEXT_CA_DIR_HELP)
    sign.add_argument("--out", type=Path, required=True, metavar="FILE", help=TEXT_SIGN_OUT_HELP)
    sign.add_argument("--days", type=int, default=825, help=TEXT_DAYS_HELP)
    sign.set_defaults(handler=_ca_sign)
    command_key = actions.add_parser("command-key", help=TEXT_COMMAND_KEY_HELP)
    command_key.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help=TEXT_COMMAND_KEY_OUT_HELP
    )
    command_key.set_defaults(handler=_ca_command_key)


def _bundle_errors_exit(handler: Callable[[argparse.Namespace], int]) -> Handler:
    """A command whose BundleError is printed and becomes its exit status."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BundleError as exc:
            print(exc, file=sys.stderr)
            return exc.exit_status

    return run


@_bundle_errors_exit
def _provision(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        signer = load_signer(manifest, args.manifest, csr=args.csr)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    if signer.trust is None:
        print(TEXT_NO_BROKER_CA, file=sys.stderr)
    for line in provision(manifest, signer, args.out, force=args.force, only=args.only):
        print(line)
    return 0


@_bundle_errors_exit
def _ca_create(args: argparse.Namespace) -> int:
    cert_path, key_path, cert = create_site_ca(
        args.out, site=args.site, common_name=args.name, days=args.days, key_type=args.key_type
    )
    print(TEXT_CA_DONE.format(cert=cert_path, key=key_path, fingerprint=pki.fingerprint(cert)))
    return 0


@_bundle_errors_exit
def _ca_broker(args: argparse.Namespace) -> int:
    if not args.host and not args.ip:
        print(TEXT_HOST_HELP, file=sys.stderr)
        return 2
    cert_path, key_path = create_broker_cert(
        args.ca_dir, args.out, hosts=args.host, ips=args.ip, days=args.days
    )
    print(
        TEXT_BROKER_DONE.format(cert=cert_path, key=key_path, names=", ".join(args.host + args.ip))
    )
    return 0


def _ca_command_key(args: argparse.Namespace) -> int:
    try:
        private, public = pki.create_command_keys(args.out)
    except OSError as exc:
        path = exc.filename or (exc.args[0] if exc.args else args.out)
        print(TEXT_WRITE_FAILED.format(path=path, error=exc.strerror or exc), file=sys.stderr)
        return EXIT_IOERR
    print(TEXT_COMMAND_KEY_DONE.format(private=private, public=public))
    return 0


@_bundle_errors_exit
def _ca_sign(args: argparse.Namespace) -> int:
    cert = sign_gateway_csr(args.ca_dir, args.csr, args.out, days=args.days)
    print(
        TEXT_SIGN_DONE.format(
            gateway=cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            path=args.out,
            until=f"{cert.not_valid_after_utc:%Y-%m-%d}",
        )
    )
    return 0
