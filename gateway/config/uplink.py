"""The `[uplink]` section: the MQTT brokers, TLS files and timing of the uplink.

The client itself (paho) is ``watchpost.uplink``; this module does not import it.
"""

from __future__ import annotations

from gettext import gettext as _
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from watchpost import settings
from watchpost.config.base import Model
from watchpost.settings import (
    BrokerAddress,
)

__all__ = [
    "BrokerAddress",
    "UplinkConfig",
]

TEXT_RECONNECT_RANGE = _("reconnect_max must not be below reconnect_min")
TEXT_CERT_PAIR = _("cert_file and key_file go together: set both or neither")
TEXT_PASSWORD_ALONE = _("password_file needs username")


class UplinkConfig(Model, settings.UplinkConfig):
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
