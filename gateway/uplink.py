"""MQTT uplink to the platform (paho-mqtt): sends what the store holds, in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

TEXT_BAD_URL = "must be an mqtt:// or mqtts:// URL with a host, e.g. mqtt://10.0.0.5:1883"


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
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(TEXT_BAD_URL) from exc
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)


class UplinkConfig(BaseModel):
    """The `[uplink]` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(description="Primary broker, mqtt://host:port or mqtts://host:port.")
    backup_brokers: list[str] = Field(
        default_factory=list, description="Further brokers tried in turn when it is unreachable.")
    keepalive: int = Field(default=30, ge=5, le=600, description="MQTT keepalive in seconds.")
    ca_file: Path | None = Field(
        default=None, description="PEM file of the CA that signed the broker's certificate.")
    cert_file: Path | None = Field(
        default=None, description="The gateway's client certificate (PEM), for mutual TLS.")
    key_file: Path | None = Field(
        default=None, description="The gateway's private key (PEM); must not be readable by others.")
    username: str | None = Field(default=None, description="MQTT user name, instead of a certificate.")
    password_file: Path | None = Field(
        default=None, description="File holding the MQTT password; never put it in this file.")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        BrokerAddress.parse(url)
        return url

    @field_validator("backup_brokers")
    @classmethod
    def _backup_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            BrokerAddress.parse(url)
        return urls

    def addresses(self) -> list[BrokerAddress]:
        """The primary broker first, then the backups."""
        return [BrokerAddress.parse(url) for url in (self.broker, *self.backup_brokers)]
