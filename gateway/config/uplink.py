"""The `[uplink]` section: the MQTT brokers, TLS files and timing of the uplink.

The client itself (paho) is ``watchpost.uplink``; this module does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from watchpost.config.base import Model

TEXT_BAD_URL = _("must be an mqtt:// or mqtts:// URL with a host, e.g. mqtt://10.0.0.5:1883")
TEXT_URL_CREDENTIALS = _(
    "may not hold a user name or password (status and logs show the URL): "
    "put them in [uplink] username and password_file"
)
TEXT_URL_PORT = _("port {port} is not a port a broker listens on; use 1-65535, e.g. 1883")
TEXT_URL_EXTRA = _("may hold only scheme, host and port (no path, query or fragment)")
TEXT_RECONNECT_RANGE = _("reconnect_max must not be below reconnect_min")
TEXT_CERT_PAIR = _("cert_file and key_file go together: set both or neither")
TEXT_PASSWORD_ALONE = _("password_file needs username")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker's place, parsed from its URL."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(TEXT_BAD_URL)
        if "@" in parts.netloc:
            raise ValueError(TEXT_URL_CREDENTIALS)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(TEXT_URL_EXTRA)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(TEXT_BAD_URL) from exc
        if port == 0:
            raise ValueError(TEXT_URL_PORT.format(port=port))
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)


class UplinkConfig(Model):
    """The `[uplink]` section."""

    broker: str = Field(description="Primary broker, mqtt://host:port or mqtts://host:port.")
    backup_brokers: list[str] = Field(
        default_factory=list,
        description="Further brokers tried in turn when it is unreachable or does not deliver "
        "(no PUBACK, drops the link before anything moved).",
    )
    keepalive: int = Field(
        default=30,
        ge=5,
        le=600,
        description="Seconds within which a dead link (even a silent one) is noticed at most "
        "1.5 times over; the gateway pings every keepalive/2 to keep that promise.",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds to wait for a broker to accept."
    )
    reconnect_min: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="First bound of the backoff after a broker refused or dropped the gateway "
        "(capped exponential, full jitter).",
    )
    reconnect_max: float = Field(
        default=15.0, gt=0, le=3600, description="Largest reconnect delay in seconds."
    )
    reconnect_spread: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Mean seconds between attempts while the broker is not there, and the "
        "window over which the first attempt after a loss falls. A fleet of N gateways "
        "reconnects at about N / reconnect_spread per second after a broker restart; one "
        "gateway is back spread/2 after the broker in the median (docs/fleet.md).",
    )
    protocol: Literal["mqtt311", "mqtt5"] = Field(
        default="mqtt311",
        description="MQTT 3.1.1, or MQTT 5 (session expiry, reason codes that mean "
        "'slow down' or 'use another server').",
    )
    session_expiry: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="MQTT 5: seconds the broker keeps the gateway's session after a loss "
        "(0: none; the store, not the broker, keeps what is unsent).",
    )
    renew_before_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Make a new key and ask the platform for a new client certificate this "
        "many days before the current one expires (mutual TLS only).",
    )
    max_inflight: int = Field(
        default=64,
        ge=2,
        le=1000,
        description="Messages sent but not yet acknowledged (PUBACK) at any moment.",
    )
    ack_timeout: float = Field(
        default=20.0,
        ge=1,
        le=600,
        description="Seconds a message may wait for its PUBACK while nothing else is "
        "acknowledged either; past it the connection is judged broken: dropped, counted as a "
        "failure, and the messages sent again on the next one (or on a backup broker).",
    )
    failback_after: float = Field(
        default=300.0,
        ge=1,
        le=86400,
        description="Seconds on a backup broker before the gateway tries its primary again; "
        "doubled (up to an hour) each time the primary fails again, so it never flaps.",
    )
    health_interval: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between `health` messages."
    )
    client_id: str | None = Field(
        default=None, description="MQTT client id; default watchpost-{site}-{gateway}."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM file of the CA that signed the broker's certificate."
    )
    cert_file: Path | None = Field(
        default=None, description="The gateway's client certificate (PEM), for mutual TLS."
    )
    key_file: Path | None = Field(
        default=None, description="The gateway's private key (PEM); must not be readable by others."
    )
    username: str | None = Field(
        default=None, description="MQTT user name, instead of a certificate."
    )
    password_file: Path | None = Field(
        default=None, description="File holding the MQTT password; never put it in this file."
    )

    @field_validator("broker", "backup_brokers")
    @classmethod
    def _broker_urls(cls, urls: str | list[str]) -> str | list[str]:
        for url in [urls] if isinstance(urls, str) else urls:
            BrokerAddress.parse(url)
        return urls

    @model_validator(mode="after")
    def _consistent(self) -> UplinkConfig:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError(TEXT_RECONNECT_RANGE)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(TEXT_CERT_PAIR)
        if self.password_file is not None and self.username is None:
            raise ValueError(TEXT_PASSWORD_ALONE)
        return self

    def addresses(self) -> list[BrokerAddress]:
        """The primary broker first, then the backups."""
        return [BrokerAddress.parse(url) for url in (self.broker, *self.backup_brokers)]
