"""Connecting to the broker as the gateway does, and saying why it failed in an installer's
words: one owner for both, used by the uplink (its log) and by `selftest` (daemon stopped).

``apply_security`` gives a paho client the config's TLS, client certificate and credentials;
``probe`` makes one real MQTT CONNECT with them and waits for the CONNACK; ``explain_error``
and ``explain_refusal`` turn a socket/TLS error or a broker's refusal into a sentence that
names the cause and what to check:

    certificate verify failed   the broker's certificate is not signed by ``ca_file``
    closed before CONNACK       with a client certificate: the broker did not accept it
    not authorised              the broker knows the client but its ACL or user refuses it
    bad user name or password   ``username`` / ``password_file``
    refused / unreachable       nothing listens there, or the network does not reach it

No exceptions of its own: ``probe`` returns its outcome.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

if TYPE_CHECKING:
    from watchpost.settings import BrokerAddress, UplinkConfig

TEXT_ACCEPTED = _("{host}:{port} accepted the gateway's MQTT CONNECT")
TEXT_WITH_TLS = _("{host}:{port} (TLS) accepted the gateway's MQTT CONNECT")
TEXT_VERIFY_FAILED = _(
    "certificate verify failed: the broker's certificate is not signed by the CA in "
    "ca_file ({ca}), or it does not name {host}; check [uplink] ca_file and the broker's "
    "certfile ({error})"
)
TEXT_TLS_FAILED = _("the TLS handshake failed: {error}; check the broker's TLS listener")
TEXT_CERT_NOT_ACCEPTED = _(
    "the broker did not accept the gateway's certificate ({cert}): it closed the connection "
    "before answering CONNECT. Check that the certificate is signed by a CA in the broker's "
    "cafile, that it has not expired, and the broker's log"
)
TEXT_CLOSED_EARLY = _(
    "the broker closed the connection before answering CONNECT ({reason}); check the "
    "broker's log and that the port is an MQTT listener (mqtts:// for a TLS port)"
)
TEXT_NOT_AUTHORISED = _(
    "not authorised: the broker refuses this client ({reason}); check [uplink] username and "
    "password_file, and the broker's users and ACL for the gateway's certificate name"
)
TEXT_BAD_LOGIN = _(
    "bad user name or password ({reason}): check [uplink] username and password_file"
)
TEXT_REFUSED_BY_BROKER = _("refused by the broker: {reason}")
TEXT_CONNECTION_REFUSED = _(
    "connection refused at {host}:{port}: nothing listens there; is the broker running, "
    "and is the port right?"
)
TEXT_NO_HOST = _("the broker's host name {host} is not known: {error}; check [uplink] broker")
TEXT_TIMED_OUT = _(
    "no answer from {host}:{port} within {seconds:g} s: check the network, a firewall, and "
    "that the broker runs"
)
TEXT_UNREACHABLE = _("cannot reach {host}:{port}: {error}")
TEXT_RESET_TLS = _(
    "{host}:{port} reset the connection during the TLS handshake: is it a TLS listener? "
    "(mqtts:// needs one; a plain listener wants mqtt://)"
)
TEXT_FILE_UNREADABLE = _("cannot read {path}: {error}")


def apply_security(
    client: mqtt.Client,
    config: UplinkConfig,
    address: BrokerAddress,
    password: str | None,
    *,
    client_pair: tuple[Path, Path] | None = None,
) -> None:
    """The config's TLS (CA, client certificate and key) and user name on ``client``;
    ``client_pair`` (certificate, key) instead of the config's, for a renewed certificate."""
    if address.tls:
        cert, key = client_pair or (config.cert_file, config.key_file)
        client.tls_set(ca_certs=_str(config.ca_file), certfile=_str(cert), keyfile=_str(key))
    if config.username is not None:
        client.username_pw_set(config.username, password)


def explain_error(exc: BaseException, config: UplinkConfig, address: BrokerAddress) -> str:
    """Why connecting (socket, TLS) failed, and what to check."""
    host, port = address.host, address.port
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = config.ca_file or _("the system's CAs")
        return TEXT_VERIFY_FAILED.format(ca=ca, host=host, error=exc.verify_message or exc)
    if isinstance(exc, ssl.SSLError):
        refused = address.tls and config.cert_file is not None and _peer_rejected(exc)
        if refused:
            return TEXT_CERT_NOT_ACCEPTED.format(cert=config.cert_file)
        return TEXT_TLS_FAILED.format(error=exc)
    if isinstance(exc, FileNotFoundError | PermissionError):
        return TEXT_FILE_UNREADABLE.format(path=exc.filename, error=exc.strerror)
    socket_errors: list[tuple[type[BaseException], str]] = [
        (ConnectionRefusedError, TEXT_CONNECTION_REFUSED),
        (socket.gaierror, TEXT_NO_HOST),
        (TimeoutError, TEXT_TIMED_OUT),
    ]
    if address.tls:
        socket_errors.insert(0, (ConnectionResetError, TEXT_RESET_TLS))
    text = next((t for kind, t in socket_errors if isinstance(exc, kind)), TEXT_UNREACHABLE)
    return text.format(
        host=host, port=port, error=exc or type(exc).__name__, seconds=config.connect_timeout
    )


def explain_refusal(code: int, reason: str, config: UplinkConfig, address: BrokerAddress) -> str:
    """Why the broker did not let the gateway in: a CONNACK code, or ``code`` < 0 when it
    closed the connection before answering."""
    if code < 0:
        if address.tls and config.cert_file is not None:
            # TLS 1.3: the broker checks the client certificate after the handshake and,
            # when it does not trust it, just closes; paho then says "Unspecified error"
            return TEXT_CERT_NOT_ACCEPTED.format(cert=config.cert_file)
        return TEXT_CLOSED_EARLY.format(reason=reason)
    if code in (5, 135):  # 3.1.1 "not authorised", 5.0 "Not authorized"
        return TEXT_NOT_AUTHORISED.format(reason=reason)
    if code in (4, 134):  # bad user name or password
        return TEXT_BAD_LOGIN.format(reason=reason)
    return TEXT_REFUSED_BY_BROKER.format(reason=reason)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one CONNECT: accepted or not, and the sentence saying so."""

    ok: bool
    detail: str


def probe(config: UplinkConfig, *, client_id: str, timeout: float | None = None) -> ProbeResult:
    """One MQTT CONNECT to the primary broker, exactly as the gateway would connect, then
    DISCONNECT. Blocks for at most about ``timeout`` (default: the config's connect_timeout)."""
    address = config.addresses()[0]
    seconds = timeout if timeout is not None else config.connect_timeout
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{client_id}-selftest",
        clean_session=True,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    client.connect_timeout = seconds
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome.setdefault("connack", (int(reason.value), str(reason)))
        answered.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome.setdefault("connack", (-1, str(reason)))
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        password = (
            config.password_file.read_text(encoding="utf-8").strip()
            if config.password_file is not None
            else None
        )
        apply_security(client, config, address, password)
        client.connect(address.host, address.port, keepalive=max(5, config.keepalive))
    except (OSError, ValueError) as exc:
        return ProbeResult(False, explain_error(exc, config, address))
    client.loop_start()
    try:
        if not answered.wait(seconds):
            return ProbeResult(
                False, TEXT_TIMED_OUT.format(host=address.host, port=address.port, seconds=seconds)
            )
        code, reason = outcome["connack"]
        if code != 0:
            return ProbeResult(False, explain_refusal(code, reason, config, address))
        text = TEXT_WITH_TLS if address.tls else TEXT_ACCEPTED
        return ProbeResult(True, text.format(host=address.host, port=address.port))
    finally:
        client.disconnect()
        client.loop_stop()


def _peer_rejected(exc: ssl.SSLError) -> bool:
    """A TLS 1.2 broker refuses a client certificate during the handshake with an alert."""
    text = str(exc).lower()
    return any(word in text for word in ("unknown ca", "bad certificate", "certificate unknown"))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
