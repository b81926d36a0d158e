"""First boot: install a gateway's bundle into /etc/watchpost and /var/lib/watchpost.

``watchpost firstboot`` (run once by ``watchpost-firstboot.service``, as root) finds the
bundle on the boot partition (``/boot/firmware/watchpost-bundle``, or ``/boot/...`` on older
images) or takes the one given with ``--bundle``, checks it, installs it, and then removes it,
because it holds the gateway's private key. Re-running is harmless: without a bundle there
is nothing to do, and installing the same bundle twice gives the same files.

Installed::

    /etc/watchpost/gateway.toml   0640 root:watchpost
    /etc/watchpost/gateway.key    0600 watchpost:watchpost
    /etc/watchpost/gateway.crt    0644
    /etc/watchpost/ca.crt         0644
    /var/lib/watchpost/           0750 watchpost:watchpost, with identity.json

Other roots (``--etc``, ``--state``: a trial on a laptop, tests) get a config that names
them: every path under /etc/watchpost and /var/lib/watchpost in ``gateway.toml`` is
rewritten to the folder given, so that `watchpost run --config DIR/gateway.toml` uses the
installed files. ``--keep-paths`` keeps the production paths instead, for an SD card image
mounted elsewhere (like DESTDIR).
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import json
import os
import pwd
import shutil
import sys
import tomllib
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path

from cryptography.x509.oid import NameOID

from watchpost.config import EXIT_CONFIG, ConfigError, load_config, print_config_error
from watchpost.files import atomic_write
from watchpost.provisioning import pki, tomlwrite
from watchpost.provisioning.bundle import BUNDLE_FORMAT, BUNDLE_INFO, EXIT_IOERR
from watchpost.provisioning.manifest import (
    CA_NAME,
    CERT_NAME,
    CONFIG_NAME,
    CSR_NAME,
    ETC_DIR,
    KEY_NAME,
    STATE_DIR,
    VERIFY_KEY_NAME,
)

BUNDLE_DIR_NAME = "watchpost-bundle"
BOOT_DIRS = (Path("/boot/firmware"), Path("/boot"))
SERVICE_USER = "watchpost"
EXIT_NOUSER = 67  # EX_NOUSER
IDENTITY_NAME = "identity.json"

TEXT_HELP = _("install a provisioning bundle from the boot partition (run once at first boot)")
TEXT_BUNDLE_HELP = _("the bundle folder (default: watchpost-bundle on the boot partition)")
TEXT_BOOT_HELP = _("the boot partition (default: /boot/firmware, then /boot)")
TEXT_ETC_HELP = _("config folder to install into (default: /etc/watchpost)")
TEXT_STATE_HELP = _("state folder to install into (default: /var/lib/watchpost)")
TEXT_KEEP_PATHS_HELP = _(
    "keep /etc/watchpost and /var/lib/watchpost in the installed gateway.toml although "
    "--etc or --state differ (an SD card image mounted elsewhere); by default the config "
    "names the folders given"
)
TEXT_REWRITTEN = _(
    "the installed {config} names {etc} and {state} instead of {prod_etc} and {prod_state}"
)
TEXT_USER_HELP = _("the daemon's user, who gets the key (default: watchpost)")
TEXT_KEEP_HELP = _("leave the bundle in place after installing it")
TEXT_NOTHING = _("no bundle at {places}: nothing to do")
TEXT_NOT_BUNDLE = _("{path} is not a Watchpost bundle ({problem})")
TEXT_MISSING = _("the bundle lacks {names}")
TEXT_CSR_ONLY = _(
    "the bundle holds a CSR but no certificate: have {csr} signed and save the "
    "certificate as {cert} in the bundle"
)
TEXT_KEY_MISMATCH = _("{cert} does not belong to {key}: they come from different bundles")
TEXT_NOT_SIGNED = _("{cert} is not signed by {ca} (the CA in the bundle)")
TEXT_NAME_MISMATCH = _("{cert} names gateway {cn!r} but {config} is for {gateway!r}")
TEXT_NO_USER = _(
    "no user {user!r} to own the key: nothing installed, the bundle is kept. "
    "Create the user (systemd-sysusers, from watchpost.sysusers) and run "
    "firstboot again"
)
TEXT_INSTALLED = _("installed gateway {gateway} of site {site} into {etc} and {state}")
TEXT_REMOVED = _("removed the bundle {path}")
TEXT_CANNOT_REMOVE = _(
    "cannot remove the bundle {path}: {error}; delete it by hand, it "
    "holds the gateway's private key"
)
TEXT_IO = _("cannot install {path}: {error}")


class BundleInvalid(Exception):
    """The bundle is incomplete or does not fit together; fix or replace it, no retry helps."""


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns what is installed: the daemon's user and its group."""

    uid: int
    gid: int
    exists: bool

    @classmethod
    def lookup(cls, user: str) -> Owner:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return cls(-1, -1, exists=False)
        try:
            gid = grp.getgrnam(user).gr_gid
        except KeyError:
            gid = entry.pw_gid
        return cls(entry.pw_uid, gid, exists=True)


def find_bundle(boot_dirs: list[Path]) -> Path | None:
    """The bundle on the first boot partition that holds one."""
    for boot in boot_dirs:
        candidate = boot / BUNDLE_DIR_NAME
        if candidate.is_dir():
            return candidate
    return None


def check_bundle(bundle: Path) -> dict[str, str]:
    """Check a bundle before anything is installed; return its identity (site, gateway).

    Raises ConfigError when its config is wrong, BundleInvalid for anything else.
    """
    try:
        info = json.loads((bundle / BUNDLE_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleInvalid(TEXT_NOT_BUNDLE.format(path=bundle, problem=exc)) from exc
    if not isinstance(info, dict) or info.get("format") != BUNDLE_FORMAT:
        raise BundleInvalid(
            TEXT_NOT_BUNDLE.format(
                path=bundle, problem=f"{BUNDLE_INFO}: format is not {BUNDLE_FORMAT}"
            )
        )
    if not (bundle / CERT_NAME).exists() and (bundle / CSR_NAME).exists():
        raise BundleInvalid(TEXT_CSR_ONLY.format(csr=bundle / CSR_NAME, cert=CERT_NAME))
    missing = [
        name
        for name in (CONFIG_NAME, KEY_NAME, CERT_NAME, CA_NAME)
        if not (bundle / name).is_file()
    ]
    if missing:
        raise BundleInvalid(TEXT_MISSING.format(names=", ".join(missing)))
    config = load_config(bundle / CONFIG_NAME)
    if config.commands.verify_key is not None and not (bundle / VERIFY_KEY_NAME).is_file():
        raise BundleInvalid(TEXT_MISSING.format(names=VERIFY_KEY_NAME))
    try:
        key = pki.load_private_key(bundle / KEY_NAME)
        cert = pki.load_certificate(bundle / CERT_NAME)
        ca = pki.load_certificate(bundle / CA_NAME)
    except pki.PkiError as exc:
        raise BundleInvalid(str(exc)) from exc
    if not pki.same_public_key(cert.public_key(), key.public_key()):
        raise BundleInvalid(TEXT_KEY_MISMATCH.format(cert=CERT_NAME, key=KEY_NAME))
    # ca.crt is the CA of the broker; it signed the gateway too unless the site uses
    # separate CAs, and then the issuer's name tells them apart.
    if cert.issuer == ca.subject and not pki.issued_by(cert, ca):
        raise BundleInvalid(TEXT_NOT_SIGNED.format(cert=CERT_NAME, ca=CA_NAME))
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    if cn != config.gateway.id:
        raise BundleInvalid(
            TEXT_NAME_MISMATCH.format(
                cert=CERT_NAME, cn=cn, config=CONFIG_NAME, gateway=config.gateway.id
            )
        )
    return {
        "site": config.gateway.site,
        "gateway": config.gateway.id,
        "certificate_sha256": pki.fingerprint(cert),
        "certificate_not_after": cert.not_valid_after_utc.isoformat(),
    }


def relocate_config(text: str, *, etc: Path, state: Path) -> str:
    """The config ``text`` with every path under /etc/watchpost and /var/lib/watchpost moved
    to ``etc`` and ``state``."""
    moves = ((str(ETC_DIR), str(etc.absolute())), (str(STATE_DIR), str(state.absolute())))

    def move(value: object) -> object:
        if isinstance(value, str):
            for old, new in moves:
                if value == old or value.startswith(old + "/"):
                    return new + value[len(old) :]
            return value
        if isinstance(value, dict):
            return {key: move(item) for key, item in value.items()}
        if isinstance(value, list):
            return [move(item) for item in value]
        return value

    document = move(tomllib.loads(text))
    assert isinstance(document, dict)
    return tomlwrite.dumps(document)


def install_bundle(
    bundle: Path, *, etc: Path, state: Path, owner: Owner, keep_paths: bool = False
) -> dict[str, str]:
    """Check ``bundle`` and install it; return its identity. Safe to repeat. The config
    names ``etc`` and ``state`` unless ``keep_paths`` (see the module's docstring)."""
    identity = check_bundle(bundle)
    if not etc.exists():
        etc.mkdir(parents=True)
        etc.chmod(0o755)  # whatever the umask: the daemon's user must reach its files
    state.mkdir(parents=True, exist_ok=True)
    os.chown(state, owner.uid, owner.gid)
    state.chmod(0o750)
    # The key first and the config last: a daemon started in between still finds a config
    # whose files are all there.
    root = 0 if os.geteuid() == 0 else -1  # -1: unchanged (a trial run as a normal user)
    plan = [
        (KEY_NAME, 0o600, owner.uid, owner.gid),
        (CERT_NAME, 0o644, root, root),
        (CA_NAME, 0o644, root, root),
    ]
    if (bundle / VERIFY_KEY_NAME).is_file():  # signed commands: the platform's public key
        plan.append((VERIFY_KEY_NAME, 0o644, root, root))
    plan.append((CONFIG_NAME, 0o640, root, owner.gid))
    relocate = not keep_paths and (etc, state) != (ETC_DIR, STATE_DIR)
    for name, mode, uid, gid in plan:
        data = (bundle / name).read_bytes()
        if name == CONFIG_NAME and relocate:
            data = relocate_config(data.decode("utf-8"), etc=etc, state=state).encode("utf-8")
        _install_file(data, etc / name, mode, uid, gid)
    record = identity | {"installed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _install_file(
        (json.dumps(record, indent=2) + "\n").encode("utf-8"),
        state / IDENTITY_NAME,
        0o644,
        owner.uid,
        owner.gid,
    )
    return identity


def _install_file(data: bytes, target: Path, mode: int, uid: int, gid: int) -> None:
    """Replace ``target`` atomically; the content never exists with a wider mode."""
    atomic_write(target, data, mode=mode, owner=(uid, gid))


# -- the `watchpost firstboot` command -------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser("firstboot", help=TEXT_HELP)
    command.add_argument("--bundle", type=Path, metavar="PATH", help=TEXT_BUNDLE_HELP)
    command.add_argument("--boot-dir", type=Path, metavar="DIR", help=TEXT_BOOT_HELP)
    command.add_argument("--etc", type=Path, default=ETC_DIR, metavar="DIR", help=TEXT_ETC_HELP)
    command.add_argument(
        "--state", type=Path, default=STATE_DIR, metavar="DIR", help=TEXT_STATE_HELP
    )
    command.add_argument("--keep-paths", action="store_true", help=TEXT_KEEP_PATHS_HELP)
    command.add_argument("--user", default=SERVICE_USER, help=TEXT_USER_HELP)
    command.add_argument("--keep-bundle", action="store_true", help=TEXT_KEEP_HELP)
    command.set_defaults(handler=_firstboot)


def _firstboot(args: argparse.Namespace) -> int:
    bundle, places = _locate(args)
    if bundle is None:
        print(TEXT_NOTHING.format(places=", ".join(map(str, places))))
        return 0
    owner = Owner.lookup(args.user)
    if not owner.exists:
        print(TEXT_NO_USER.format(user=args.user), file=sys.stderr)
        return EXIT_NOUSER
    try:
        identity = install_bundle(
            bundle, etc=args.etc, state=args.state, owner=owner, keep_paths=args.keep_paths
        )
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    except BundleInvalid as exc:
        print(f"{bundle}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(
            TEXT_IO.format(path=exc.filename or args.etc, error=exc.strerror or exc),
            file=sys.stderr,
        )
        return EXIT_IOERR
    print(
        TEXT_INSTALLED.format(
            gateway=identity["gateway"], site=identity["site"], etc=args.etc, state=args.state
        )
    )
    if not args.keep_paths and (args.etc, args.state) != (ETC_DIR, STATE_DIR):
        print(
            TEXT_REWRITTEN.format(
                config=args.etc / CONFIG_NAME,
                etc=args.etc.absolute(),
                state=args.state.absolute(),
                prod_etc=ETC_DIR,
                prod_state=STATE_DIR,
            )
        )
    return 0 if args.keep_bundle else _remove(bundle)


def _locate(args: argparse.Namespace) -> tuple[Path | None, list[Path]]:
    """The bundle to install, if any, and the places looked at."""
    if args.bundle is not None:
        return (args.bundle if args.bundle.is_dir() else None), [args.bundle]
    boots = [args.boot_dir] if args.boot_dir is not None else list(BOOT_DIRS)
    return find_bundle(boots), [boot / BUNDLE_DIR_NAME for boot in boots]


def _remove(bundle: Path) -> int:
    try:
        shutil.rmtree(bundle)
    except OSError as exc:
        print(TEXT_CANNOT_REMOVE.format(path=bundle, error=exc.strerror or exc), file=sys.stderr)
        return EXIT_IOERR
    print(TEXT_REMOVED.format(path=bundle))
    return 0
