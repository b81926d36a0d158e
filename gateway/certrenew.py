"""The gateway's client certificate, renewed before it expires (mutual TLS).

::

    current pair: [uplink] cert_file/key_file, or the last renewed pair in STATE/tls/
      │ expires within [uplink] renew_before_days  (or the platform asks: cmd/cert_renew)
      ▼
    pending key STATE/tls/pending.key (0600, made here, never leaves) and its CSR
      │ ──> the `csr` message (stored, sent like any other), and cmd/cert_renew's reply
      │ cmd/cert_install: a certificate for that key, this gateway's name, the same CA
      ▼
    trial: the uplink reconnects with (new certificate, pending key)
      ├─ the broker accepts it ──> STATE/tls/client.crt + client.key, used from now on
      └─ any other end (refused, dropped, no CONNACK, broker not there) ──> back to the
           current pair; the reason in `health`; the candidate waits (renewal "retry") and
           is tried again at the next certificate check (hourly, and when the daemon starts)
             └─ MAX_TRIALS trials failed at the broker (one that did not reach it does not
                count) ──> given up: candidate, pending key and CSR are removed; while the
                certificate is due, the next check makes a new key and sends a new CSR

The provisioned files under /etc/watchpost are never changed: the old certificate stays
where it is until the new one has connected, and after that it is simply not used.

Exceptions::

    RenewalError    a certificate cannot be installed (wrong key, name, CA, dates, not PEM)
                    or no renewal is possible here; no retry helps without a new certificate
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchpost.files import atomic_write
from watchpost.settings import UplinkConfig

if TYPE_CHECKING:
    from cryptography import x509

# cryptography (through provisioning.pki) is imported in the methods that read or make a
# certificate: a gateway without a client certificate never loads it (about 9 MB resident)

log = logging.getLogger(__name__)

TEXT_NO_TLS = _("this gateway does not use a client certificate ([uplink] cert_file)")
TEXT_NOT_PEM = _("certificate: not a PEM certificate")
TEXT_NO_PENDING = _("no renewal is pending: ask for one with cert_renew first")
TEXT_UNFIT = _("certificate {problems}")
TEXT_DUE = _("the client certificate expires on %s: a new key and CSR are ready (%d day(s) left)")
TEXT_TRIAL = _("connecting with the new client certificate (valid until %s)")
TEXT_RETRY = _("connecting with the new client certificate again (trial %d of %d)")
TEXT_PROMOTED = _("the broker accepted the new client certificate; it is used from now on")
TEXT_REFUSED = _(
    "the broker refused the new client certificate (%s); the old one stays, the new one is "
    "tried again at the next check (%d of %d trials failed)"
)
TEXT_GAVE_UP = _(
    "the broker refused the renewed certificate {trials} times (last: {reason}); it is "
    "dropped, and a new key and CSR follow at the next check while the certificate is due"
)

PENDING_KEY = "pending.key"
PENDING_CSR = "pending.csr"
CANDIDATE = "candidate.crt"
TRIALS = "candidate.trials"  # how many trials of the candidate failed, across restarts
MAX_TRIALS = 3  # failed trials of one certificate before a new key and CSR are made
RENEWED_CERT = "client.crt"
RENEWED_KEY = "client.key"
DAY_MS = 86_400_000


class RenewalError(Exception):
    """A certificate cannot be installed, or no renewal is possible; no retry helps."""


@dataclass(frozen=True, slots=True)
class ClientPair:
    """A client certificate and its private key, as files."""

    cert: Path
    key: Path


class ClientCertificates:
    """Which client certificate the uplink presents, and its renewal."""

    def __init__(self, config: UplinkConfig, folder: Path) -> None:
        self.configured = (
            ClientPair(config.cert_file, config.key_file)
            if config.cert_file is not None and config.key_file is not None
            else None
        )
        self.folder = folder
        self.renew_before_days = config.renew_before_days
        self.trial: ClientPair | None = None
        self.last_error: str | None = None

    # -- which pair --------------------------------------------------------------------------

    def active(self) -> ClientPair | None:
        """The pair the uplink presents: the last renewed one, else the configured one."""
        renewed = ClientPair(self.folder / RENEWED_CERT, self.folder / RENEWED_KEY)
        if renewed.cert.is_file() and renewed.key.is_file():
            return renewed
        return self.configured

    def for_connect(self) -> ClientPair | None:
        """The pair for the next connection: the one on trial, if any."""
        return self.trial or self.active()

    def current(self) -> x509.Certificate:
        from watchpost.provisioning import pki  # noqa: PLC0415 - see the imports

        pair = self.active()
        if pair is None:
            raise RenewalError(TEXT_NO_TLS)
        return pki.load_certificate(pair.cert)

    # -- renewal -----------------------------------------------------------------------------

    def due(self, now: dt.datetime) -> bool:
        """Whether the current certificate expires within ``renew_before_days`` of ``now``."""
        if self.active() is None:
            return False
        left = self.current().not_valid_after_utc - now
        return left <= dt.timedelta(days=self.renew_before_days)

    @property
    def pending(self) -> bool:
        return (self.folder / PENDING_KEY).is_file()

    def request(self) -> str:
        """The CSR (PEM) for the pending key, made now if there is none."""
        from cryptography import x509  # noqa: PLC0415 - see the imports
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

        from watchpost.provisioning import pki  # noqa: PLC0415

        current = self.current()
        csr_path = self.folder / PENDING_CSR
        if self.pending and csr_path.is_file():
            return csr_path.read_text(encoding="ascii")
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = pki.generate_key()
        (self.folder / PENDING_KEY).unlink(missing_ok=True)
        pki.write_private_key(key, self.folder / PENDING_KEY)
        builder = x509.CertificateSigningRequestBuilder().subject_name(current.subject)
        try:
            names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(names.value, critical=False)
        except x509.ExtensionNotFound:
            pass
        csr = builder.sign(key, hashes.SHA256())
        text = pki.pem(csr).decode("ascii")
        atomic_write(csr_path, text.encode("ascii"), mode=0o644)
        return text

    def install(self, pem: str, *, trusted: x509.Certificate | None) -> ClientPair:
        """Check ``pem`` against the pending key, the current certificate and ``trusted``;
        keep it as the candidate and put it on trial. RenewalError says what does not fit."""
        from cryptography import x509  # noqa: PLC0415 - see the imports

        from watchpost.provisioning import pki  # noqa: PLC0415

        if not self.pending:
            raise RenewalError(TEXT_NO_PENDING)
        try:
            new = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise RenewalError(TEXT_NOT_PEM) from exc
        key = pki.load_private_key(self.folder / PENDING_KEY)
        problems = pki.renewal_problems(new, key=key, current=self.current(), trusted=trusted)
        if problems:
            raise RenewalError(TEXT_UNFIT.format(problems="; ".join(problems)))
        atomic_write(self.folder / CANDIDATE, pki.pem(new), mode=0o644)
        (self.folder / TRIALS).unlink(missing_ok=True)  # a new certificate: a fresh count
        self.trial = ClientPair(self.folder / CANDIDATE, self.folder / PENDING_KEY)
        log.warning(TEXT_TRIAL, f"{new.not_valid_after_utc:%Y-%m-%d}")
        return self.trial

    def trial_ended(self, *, accepted: bool, reason: str = "", counted: bool = True) -> None:
        """The broker's answer to the trial: promote the pair, or go back to the old one and
        count the failed trial (MAX_TRIALS of them give the certificate up); a trial that
        never reached the broker (``counted=False``) is only tried again."""
        if self.trial is None:
            return
        self.trial = None
        if accepted:
            (self.folder / PENDING_KEY).replace(self.folder / RENEWED_KEY)
            (self.folder / CANDIDATE).replace(self.folder / RENEWED_CERT)
            (self.folder / PENDING_CSR).unlink(missing_ok=True)
            (self.folder / TRIALS).unlink(missing_ok=True)
            self.last_error = None
            log.warning(TEXT_PROMOTED)
            return
        failed = self.failed_trials + (1 if counted else 0)
        if failed < MAX_TRIALS:
            atomic_write(self.folder / TRIALS, f"{failed}\n".encode("ascii"), mode=0o644)
            self.last_error = reason
            log.error(TEXT_REFUSED, reason, failed, MAX_TRIALS)
            return
        for name in (CANDIDATE, PENDING_KEY, PENDING_CSR, TRIALS):
            (self.folder / name).unlink(missing_ok=True)
        self.last_error = TEXT_GAVE_UP.format(trials=failed, reason=reason)
        log.error("%s", self.last_error)

    @property
    def failed_trials(self) -> int:
        """Failed trials of the waiting candidate (0 when there is none)."""
        try:
            return int((self.folder / TRIALS).read_text(encoding="ascii"))
        except FileNotFoundError:
            return 0
        except ValueError:
            return MAX_TRIALS - 1  # a damaged count: one more trial, then a new key

    @property
    def waiting(self) -> bool:
        """A certificate the broker has not accepted yet waits for another trial."""
        return self.trial is None and self.pending and (self.folder / CANDIDATE).is_file()

    def retry_trial(self) -> bool:
        """Put a waiting candidate on trial again; True if the uplink should reconnect."""
        if not self.waiting:
            return False
        self.trial = ClientPair(self.folder / CANDIDATE, self.folder / PENDING_KEY)
        log.warning(TEXT_RETRY, self.failed_trials + 1, MAX_TRIALS)
        return True

    def health(self, now_ms: int) -> dict[str, Any]:
        """The certificate's part of `health`: expiry, days left, renewal state."""
        if self.active() is None:
            return {}
        cert = self.current()
        not_after = _ms(cert.not_valid_after_utc)
        return {
            "not_after": not_after,
            "days_left": (not_after - now_ms) // DAY_MS,
            "renewal": self._renewal(),
            "failed_trials": self.failed_trials,
            "last_error": self.last_error,
        }

    def _renewal(self) -> str:
        """none; pending: a CSR waits for its certificate; trial: connecting with the new
        one; retry: the broker did not take it yet, it is tried again at the next check."""
        if self.trial is not None:
            return "trial"
        if self.waiting:
            return "retry"
        return "pending" if self.pending else "none"

    def announce_if_due(self, now: dt.datetime) -> str | None:
        """The CSR to send if the certificate is due and no renewal is pending yet."""
        if self.pending or not self.due(now):
            return None
        csr = self.request()
        cert = self.current()
        days = (cert.not_valid_after_utc - now).days
        log.warning(TEXT_DUE, f"{cert.not_valid_after_utc:%Y-%m-%d}", days)
        return csr


class CertificateDesk:
    """The platform's commands `cert_renew` and `cert_install` over the gateway's pair."""

    def __init__(
        self,
        certificates: ClientCertificates,
        *,
        trusted_ca: Path | None,
        reconnect: Callable[[], None],
    ) -> None:
        self.certificates = certificates
        self._trusted_ca = trusted_ca
        self._reconnect = reconnect

    def renew(self) -> dict[str, Any]:
        """`cert_renew`: the CSR of the pending key (made now if there is none)."""
        from watchpost.provisioning import pki  # noqa: PLC0415 - see the imports

        try:
            csr = self.certificates.request()
            current = self.certificates.current()
        except pki.PkiError as exc:
            raise RenewalError(str(exc)) from exc
        return {"csr": csr, "not_after": _ms(current.not_valid_after_utc)}

    def install(self, pem: str) -> dict[str, Any]:
        """`cert_install`: check the certificate, then reconnect with it on trial."""
        from watchpost.provisioning import pki  # noqa: PLC0415 - see the imports

        try:
            trial = self.certificates.install(pem, trusted=self._trusted())
        except pki.PkiError as exc:
            raise RenewalError(str(exc)) from exc
        self._reconnect()
        new = pki.load_certificate(trial.cert)
        return {"installed": "trial", "not_after": _ms(new.not_valid_after_utc)}

    def _trusted(self) -> x509.Certificate | None:
        """The site CA, when ``[uplink] ca_file`` is the CA that issued the gateway's
        certificate (the usual bundle); None when the broker's CA is another one."""
        from watchpost.provisioning import pki  # noqa: PLC0415 - see the imports

        if self._trusted_ca is None:
            return None
        try:
            ca = pki.load_certificate(self._trusted_ca)
        except pki.PkiError:
            return None
        return ca if ca.subject == self.certificates.current().issuer else None


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)
