"""The site manifest: one TOML file per enterprise, from which every gateway is provisioned.

Buses and devices use the gateway config's own models (``watchpost.config``), so one schema
serves both files, and a gateway's part of the manifest is checked exactly as its
``gateway.toml`` will be. Errors name the key path in the manifest
(``gateways[1].devices[0].bus: no bus named 'rs485'``).
"""

from __future__ import annotations

from gettext import gettext as _
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

# the manifest reuses the config's wording and cross-section rules, so that both files
# report the same mistake the same way
from watchpost.config import (
    BusConfig,
    ConfigError,
    GatewayConfig,
    Model,
    describe_error,
    read_toml,
)
from watchpost.config.base import TopicLevel
from watchpost.config.devices import AnyDevice, tag_devices
from watchpost.config.references import gateway_references, tables, text
from watchpost.config.uplink import BrokerAddress
from watchpost.provisioning.pki import KeyType

TEXT_NOT_MQTTS = _("must be an mqtts:// URL: gateways authenticate with their certificate")
TEXT_DUPLICATE_GATEWAY = _("gateway id {name!r} is used more than once")

# Where a bundle's files are installed on the gateway (see provisioning.firstboot).
ETC_DIR = Path("/etc/watchpost")
STATE_DIR = Path("/var/lib/watchpost")
CONFIG_NAME = "gateway.toml"
KEY_NAME = "gateway.key"
CERT_NAME = "gateway.crt"
CSR_NAME = "gateway.csr"
CA_NAME = "ca.crt"
VERIFY_KEY_NAME = "command-verify.pem"  # the platform's key for signed commands
STORE_NAME = "buffer.db"


class BrokerSection(Model):
    """`[broker]`: where every gateway of the site sends its data."""

    urls: list[str] = Field(min_length=1, description="mqtts:// URLs; the first is the primary.")
    ca: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate; "
        "default: the site CA's certificate ([ca] cert).",
    )
    keepalive: int = Field(default=30, ge=5, le=600, description="MQTT keepalive in seconds.")
    ack_timeout: float | None = Field(
        default=None,
        ge=1,
        le=600,
        description="Seconds a message may wait for its PUBACK before the gateway leaves the "
        "broker ([uplink] ack_timeout); default: the gateway's (20).",
    )
    failback_after: float | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Seconds on a backup broker before a gateway tries the primary again "
        "([uplink] failback_after); default: the gateway's (300).",
    )

    @field_validator("urls")
    @classmethod
    def _mqtts(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not BrokerAddress.parse(url).tls:
                raise ValueError(TEXT_NOT_MQTTS)
        return urls


class CaSection(Model):
    """`[ca]`: the site CA that signs the gateways' certificates."""

    cert: Path = Field(description="The CA certificate (PEM).")
    key: Path | None = Field(
        default=None, description="The CA private key (PEM, unencrypted); not needed with --csr."
    )


class CertificateSection(Model):
    """`[certificates]`: what is generated for each gateway."""

    key_type: KeyType = Field(
        default="ec-p256", description="ec-p256, rsa-2048, rsa-3072 or rsa-4096."
    )
    days: int = Field(
        default=3650, ge=1, le=10950, description="Days a gateway certificate is valid."
    )


class StoreSection(Model):
    """`[store]`: store settings every gateway shares."""

    commit_interval: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between telemetry commits."
    )
    keep_sent: float | None = Field(
        default=None,
        ge=0,
        le=30 * 86400,
        allow_inf_nan=False,
        description="Seconds each gateway keeps what it sent, for cmd/resend; default: the "
        "gateway's (86400).",
    )
    alarm_reserve_mb: float | None = Field(
        default=None,
        ge=0,
        le=1024,
        allow_inf_nan=False,
        description="MiB each gateway keeps free for alarms on a full disk; default: the "
        "gateway's (4).",
    )
    alarm_spill: str | None = Field(
        default=None,
        min_length=1,
        description="The second path each gateway writes alarm events to when its disk is "
        "full (a path on the gateway, best on another filesystem); default: none.",
    )


class CommandsSection(Model):
    """`[commands]`: how every gateway of the site checks the platform's commands."""

    verify_key: Path | None = Field(
        default=None,
        description="The platform's Ed25519 public key (PEM, `watchpost ca command-key` makes "
        "it): put into each bundle as command-verify.pem and named as [commands] verify_key. "
        "Without it the gateways accept unsigned commands.",
    )
    max_age: float | None = Field(
        default=None,
        ge=10,
        le=86400,
        allow_inf_nan=False,
        description="Seconds a signed command's ts may differ from the gateway's clock; "
        "default: the gateway's (300).",
    )


class GatewaySection(Model):
    """One `[[gateways]]` entry: a gateway, its buses and its devices."""

    id: TopicLevel = Field(description="Gateway id, unique within the site.")
    hostname: str | None = Field(
        default=None, description="DNS name of the gateway, added to its certificate."
    )
    description: str = Field(default="", description="Free text for people (where it hangs).")
    buses: list[BusConfig] = Field(default_factory=list, description="Field buses.")
    devices: list[AnyDevice] = Field(
        default_factory=list,
        description="Devices polled; their keys depend on their bus's type.",
    )

    @model_validator(mode="before")
    @classmethod
    def _tag_devices(cls, data: Any) -> Any:
        return tag_devices(data)


class Manifest(Model):
    """The whole site manifest."""

    site: TopicLevel = Field(description="Site id, the second level of topics.")
    broker: BrokerSection = Field(description="The platform's MQTT broker.")
    ca: CaSection | None = Field(default=None, description="The site CA.")
    certificates: CertificateSection = Field(
        default_factory=CertificateSection, description="Gateway key and certificate."
    )
    store: StoreSection = Field(default_factory=StoreSection, description="Store settings.")
    commands: CommandsSection = Field(
        default_factory=CommandsSection, description="Signed commands from the platform."
    )
    gateways: list[GatewaySection] = Field(min_length=1, description="The site's gateways.")


def load_manifest(path: Path) -> Manifest:
    """Read and check ``path``; raise ConfigError naming every wrong key.

    Relative file paths in the manifest are taken from the manifest's folder.
    Type errors, names and references are reported together, in one run.
    """
    raw = read_toml(path)
    problems: list[str] = []
    manifest = None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors()]
    problems += _references(raw)
    if manifest is not None and not problems:
        problems = _check_gateways(manifest)
    if problems or manifest is None:
        raise ConfigError(path, problems)
    return _resolve_paths(manifest, path.parent)


def _references(raw: dict[str, Any]) -> list[str]:
    """Gateway ids unique; in each gateway, the names and references of its config."""
    problems: list[str] = []
    seen: set[str] = set()
    for g, gateway in tables(raw, "gateways"):
        gateway_id = text(gateway, "id")
        if gateway_id is not None and gateway_id in seen:
            problems.append(f"gateways[{g}].id: " + TEXT_DUPLICATE_GATEWAY.format(name=gateway_id))
        seen.add(gateway_id or "")
        problems += [f"gateways[{g}].{line}" for line in gateway_references(gateway)]
    return problems


def _check_gateways(manifest: Manifest) -> list[str]:
    """Each gateway's config as it will be written, validated whole: rules the sections
    alone do not see."""
    problems = []
    for g, gateway in enumerate(manifest.gateways):
        try:
            GatewayConfig.model_validate(gateway_config(manifest, gateway))
        except ValidationError as exc:
            problems += [f"gateways[{g}]." + describe_error(error) for error in exc.errors()]
    return problems


def _resolve_paths(manifest: Manifest, base: Path) -> Manifest:
    def resolve(path: Path | None) -> Path | None:
        return None if path is None else base / path.expanduser()

    broker = manifest.broker.model_copy(update={"ca": resolve(manifest.broker.ca)})
    ca = (
        None
        if manifest.ca is None
        else manifest.ca.model_copy(
            update={"cert": resolve(manifest.ca.cert), "key": resolve(manifest.ca.key)}
        )
    )
    commands = manifest.commands.model_copy(
        update={"verify_key": resolve(manifest.commands.verify_key)}
    )
    return manifest.model_copy(update={"broker": broker, "ca": ca, "commands": commands})


def gateway_config(manifest: Manifest, gateway: GatewaySection) -> dict[str, Any]:
    """The ``gateway.toml`` of one gateway, as the document to write.

    Buses and devices keep exactly the keys the manifest gave, so the file reads like the
    manifest; files point at their installed places under /etc/watchpost and /var/lib/watchpost.
    """
    urls = manifest.broker.urls
    uplink: dict[str, Any] = {"broker": urls[0]}
    if len(urls) > 1:
        uplink["backup_brokers"] = urls[1:]
    uplink |= {
        "keepalive": manifest.broker.keepalive,
        "ca_file": str(ETC_DIR / CA_NAME),
        "cert_file": str(ETC_DIR / CERT_NAME),
        "key_file": str(ETC_DIR / KEY_NAME),
    }
    for key in ("ack_timeout", "failback_after"):
        value = getattr(manifest.broker, key)
        if value is not None:
            uplink[key] = value
    commands: dict[str, Any] = {}
    if manifest.commands.verify_key is not None:
        commands["verify_key"] = str(ETC_DIR / VERIFY_KEY_NAME)
    if manifest.commands.max_age is not None:
        commands["max_age"] = manifest.commands.max_age
    return {
        "gateway": {"site": manifest.site, "id": gateway.id},
        "uplink": uplink,
        **({"commands": commands} if commands else {}),
        "store": {
            "path": str(STATE_DIR / STORE_NAME),
            "commit_interval": manifest.store.commit_interval,
        }
        | manifest.store.model_dump(
            include={"keep_sent", "alarm_reserve_mb", "alarm_spill"}, exclude_none=True
        ),
        "buses": [
            bus.model_dump(mode="json", exclude_unset=True) | {"type": bus.type}
            for bus in gateway.buses
        ],
        "devices": [
            device.model_dump(mode="json", exclude_unset=True) for device in gateway.devices
        ],
    }
