"""Site CA, manifest to bundles, and first boot, through the `watchpost` command."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.test_provisioning_e2e import firstboot
from watchpost.cli import main
from watchpost.config import EXIT_CONFIG, load_config
from watchpost.provisioning import pki

EXAMPLE = Path(__file__).parents[1] / "examples" / "manifest.toml"
GATEWAYS = ("gw-tank-a", "gw-loading")
ME = pwd.getpwuid(os.getuid()).pw_name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with the example manifest and a fresh site CA beside it."""
    shutil.copy(EXAMPLE, tmp_path / "manifest.toml")
    assert main(["ca", "create", "--out", str(tmp_path / "ca"), "--site", "hx-chem-tankfarm"]) == 0
    return tmp_path


@pytest.fixture
def bundles(site: Path) -> Path:
    assert main(["provision", str(site / "manifest.toml"), "--out", str(site / "out")]) == 0
    return site / "out"


def test_site_ca(site: Path) -> None:
    assert mode(site / "ca" / "ca.key") == 0o600
    cert = pki.load_certificate(site / "ca" / "ca.crt")
    assert pki.check_ca(cert, pki.load_private_key(site / "ca" / "ca.key")) == []
    assert main(["ca", "create", "--out", str(site / "ca"), "--site", "x"]) == 73  # no overwrite


def test_two_gateways_two_bundles(
    bundles: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = pki.load_certificate(site / "ca" / "ca.crt")
    assert sorted(p.name for p in bundles.iterdir()) == sorted(GATEWAYS)
    for gateway in GATEWAYS:
        bundle = bundles / gateway
        assert sorted(p.name for p in bundle.iterdir()) == [
            "bundle.json",
            "ca.crt",
            "gateway.crt",
            "gateway.key",
            "gateway.toml",
        ]
        assert mode(bundle / "gateway.key") == 0o600
        assert mode(bundle / "gateway.toml") == 0o640

        cert = pki.load_certificate(bundle / "gateway.crt")
        cert.verify_directly_issued_by(ca)  # raises unless the site CA signed it
        assert pki.issued_by(cert, ca)
        key = pki.load_private_key(bundle / "gateway.key")
        assert pki.same_public_key(cert.public_key(), key.public_key())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == gateway
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"urn:watchpost:hx-chem-tankfarm:{gateway}" in san.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        assert (bundle / "ca.crt").read_bytes() == (site / "ca" / "ca.crt").read_bytes()

        assert main(["config", "check", str(bundle / "gateway.toml")]) == 0
        config = load_config(bundle / "gateway.toml")
        assert config.gateway.id == gateway
        assert config.gateway.site == "hx-chem-tankfarm"
        assert config.uplink.broker == "mqtts://mqtt.emergency.example.cn:8883"
        assert config.uplink.backup_brokers == ["mqtts://mqtt-backup.emergency.example.cn:8883"]
        assert str(config.uplink.ca_file) == "/etc/watchpost/ca.crt"
        assert str(config.uplink.cert_file) == "/etc/watchpost/gateway.crt"
        assert str(config.uplink.key_file) == "/etc/watchpost/gateway.key"
        assert str(config.store.path) == "/var/lib/watchpost/buffer.db"
        info = json.loads((bundle / "bundle.json").read_text())
        assert info["gateway"] == gateway
        assert info["certificate_sha256"] == pki.fingerprint(cert)

    tank = load_config(bundles / "gw-tank-a" / "gateway.toml")
    assert [d.name for d in tank.devices] == ["gas_a1", "gas_a2"]
    assert tank.buses[0].type == "modbus_rtu"
    assert [a.threshold for a in tank.devices[0].points[0].alarms] == [10, 20]

    output = capsys.readouterr()
    for gateway in GATEWAYS:
        key_text = (bundles / gateway / "gateway.key").read_text()
        body = "".join(key_text.splitlines()[1:-1])
        assert body[:40] not in output.out + output.err
    assert "PRIVATE KEY" not in output.out + output.err


def test_keys_are_0600_whatever_the_umask(site: Path) -> None:
    old = os.umask(0)
    try:
        assert main(["provision", str(site / "manifest.toml"), "--out", str(site / "o")]) == 0
    finally:
        os.umask(old)
    for gateway in GATEWAYS:
        assert mode(site / "o" / gateway / "gateway.key") == 0o600


def test_existing_bundles_are_not_replaced_without_force(bundles: Path, site: Path) -> None:
    before = (bundles / "gw-loading" / "gateway.key").read_bytes()
    manifest = str(site / "manifest.toml")
    assert main(["provision", manifest, "--out", str(bundles)]) == 73
    assert (bundles / "gw-loading" / "gateway.key").read_bytes() == before
    assert (
        main(["provision", manifest, "--out", str(bundles), "--force", "--only", "gw-loading"]) == 0
    )
    assert (bundles / "gw-loading" / "gateway.key").read_bytes() != before
    assert (
        main(["provision", manifest, "--out", str(bundles), "--force", "--only", "gw-nowhere"])
        == EXIT_CONFIG
    )
    assert not [p for p in bundles.iterdir() if p.name.startswith(".")]  # no half bundles


def test_an_output_folder_that_cannot_be_made_is_named_with_the_reason(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "notes.txt").write_text("a crew's notes")
    out = site / "notes.txt" / "out"
    assert main(["provision", str(site / "manifest.toml"), "--out", str(out)]) == 74
    assert f"cannot write {out}: Not a directory" in capsys.readouterr().err
    assert main(["ca", "create", "--out", str(out), "--site", "x"]) == 74
    assert "cannot write " in capsys.readouterr().err
    assert (
        main(["ca", "broker", "--ca-dir", str(site / "ca"), "--out", str(out), "--host", "b"]) == 74
    )
    assert "cannot write " in capsys.readouterr().err
    assert (site / "notes.txt").read_text() == "a crew's notes"


def test_rsa_keys(site: Path) -> None:
    manifest = site / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace('key_type = "ec-p256"', 'key_type = "rsa-2048"')
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == 0
    key = pki.load_private_key(site / "out" / "gw-loading" / "gateway.key")
    assert key.key_size == 2048


# -- CSR mode --------------------------------------------------------------------------------


def test_csr_mode_then_signed_elsewhere(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = site / "manifest.toml"
    # the CA key stays with whoever signs elsewhere: the manifest names only the certificate
    manifest.write_text(manifest.read_text().replace('key = "ca/ca.key"', ""))
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == EXIT_CONFIG
    assert "ca.key: is required" in capsys.readouterr().err
    assert main(["provision", str(manifest), "--out", str(site / "out"), "--csr"]) == 0
    bundle = site / "out" / "gw-tank-a"
    assert not (bundle / "gateway.crt").exists()
    csr = x509.load_pem_x509_csr((bundle / "gateway.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-tank-a"
    key = pki.load_private_key(bundle / "gateway.key")
    assert pki.same_public_key(csr.public_key(), key.public_key())
    assert mode(bundle / "gateway.key") == 0o600

    # first boot refuses a bundle that still waits for its certificate
    etc = tmp_path / "etc"
    assert firstboot(bundle, tmp_path, source_option="--bundle") == EXIT_CONFIG
    assert "CSR" in capsys.readouterr().err
    assert not etc.exists()

    # the CA signs it "elsewhere"; the installer saves the certificate into the bundle
    ca_cert = pki.load_certificate(site / "ca" / "ca.crt")
    ca_key = pki.load_private_key(site / "ca" / "ca.key")
    subject = pki.Subject(common_name="gw-tank-a", organization="hx-chem-tankfarm")
    cert = pki.sign_leaf(subject, csr.public_key(), ca_cert=ca_cert, ca_key=ca_key, days=30)
    (bundle / "gateway.crt").write_bytes(pki.pem(cert))
    assert firstboot(bundle, tmp_path, source_option="--bundle") == 0
    assert mode(etc / "gateway.key") == 0o600


# -- bad manifests ---------------------------------------------------------------------------

BAD_MANIFESTS = {
    "no site": (('site = "hx-chem-tankfarm"', ""), "site: is required"),
    "plain mqtt": (
        ("mqtts://mqtt.emergency", "mqtt://mqtt.emergency"),
        "broker.urls: must be an mqtts:// URL",
    ),
    "unknown key": (
        ('description = "Loading bay, pump house"', 'colour = "red"'),
        "gateways[1].colour: is not a known key",
    ),
    "bad baud": (("baudrate = 9600", "baudrate = 9601"), "gateways[0].buses[0].baudrate"),
    "bad scale": (
        ("scale = 0.1", 'scale = "tenth"'),
        "gateways[0].devices[0].points[0].scale: must be a number",
    ),
    "unknown bus": (
        ('bus = "level_gauge"', 'bus = "level_gage"'),
        "gateways[1].devices[0].bus: no bus named 'level_gage'",
    ),
    "same gateway twice": (
        ('id = "gw-loading"', 'id = "gw-tank-a"'),
        "gateways[1].id: gateway id 'gw-tank-a' is used more than once",
    ),
    "same point twice": (
        ('name = "lel_a2"', 'name = "h2s_a1"'),
        "gateways[0].devices[1].points[0].name: point name 'h2s_a1'",
    ),
    "ca missing": (('cert = "ca/ca.crt"', 'cert = "ca/nowhere.crt"'), "ca.cert: cannot read"),
    "not toml": (("[broker]", "[broker"), "not valid TOML"),
}


@pytest.mark.parametrize("case", BAD_MANIFESTS, ids=list(BAD_MANIFESTS))
def test_bad_manifest_names_the_key(
    case: str, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (old, new), expected = BAD_MANIFESTS[case]
    manifest = site / "manifest.toml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new, 1))
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(manifest) in err
    assert expected in err
    assert not (site / "out").exists()


def broker_certificate(site: Path, *extra: str) -> int:
    """`watchpost ca broker` for mqtt.local with the site CA, into SITE/broker."""
    ca = ["--ca-dir", str(site / "ca")]
    return main(
        ["ca", "broker", *ca, "--host", "mqtt.local", *extra, "--out", str(site / "broker")]
    )


def test_a_ca_that_is_not_a_ca(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert broker_certificate(site) == 0
    manifest = site / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace('cert = "ca/ca.crt"', 'cert = "broker/broker.crt"')
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "ca.cert:" in err
    assert "is not a CA certificate" in err
    assert "does not belong to the given CA key" in err


def test_broker_certificate(site: Path) -> None:
    assert broker_certificate(site, "--ip", "127.0.0.1") == 0
    cert = pki.load_certificate(site / "broker" / "broker.crt")
    assert pki.issued_by(cert, pki.load_certificate(site / "ca" / "ca.crt"))
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.local"]
    assert mode(site / "broker" / "broker.key") == 0o600


# -- first boot ------------------------------------------------------------------------------


def test_firstboot_installs_and_is_idempotent(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot, root = tmp_path / "boot", tmp_path / "root"
    shutil.copytree(bundles / "gw-tank-a", boot / "watchpost-bundle")
    old = os.umask(0o077)  # as under watchpost-firstboot.service
    try:
        assert firstboot(boot, root) == 0
    finally:
        os.umask(old)
    etc, state = root / "etc", root / "state"
    assert not (boot / "watchpost-bundle").exists()
    assert mode(etc / "gateway.key") == 0o600
    assert mode(etc / "gateway.toml") == 0o640
    assert mode(etc / "gateway.crt") == 0o644
    assert mode(state) == 0o750
    assert mode(etc) == 0o755
    assert (etc / "gateway.key").stat().st_uid == os.getuid()
    for name in ("gateway.key", "gateway.crt", "ca.crt"):
        assert (etc / name).read_bytes() == (bundles / "gw-tank-a" / name).read_bytes()
    assert main(["config", "check", str(etc / "gateway.toml")]) == 0
    # installed into other roots, the config names them, not /etc/watchpost
    config = load_config(etc / "gateway.toml")
    assert config.uplink.cert_file == etc / "gateway.crt"
    assert config.uplink.key_file == etc / "gateway.key"
    assert config.uplink.ca_file == etc / "ca.crt"
    assert config.store.path == state / "buffer.db"
    assert "/etc/watchpost" not in (etc / "gateway.toml").read_text()
    assert "/var/lib/watchpost" not in (etc / "gateway.toml").read_text()
    assert f"names {etc} and {state} instead of /etc/watchpost" in capsys.readouterr().out
    identity = json.loads((state / "identity.json").read_text())
    assert identity["gateway"] == "gw-tank-a"
    assert identity["site"] == "hx-chem-tankfarm"
    assert not [p for p in etc.iterdir() if p.name.startswith(".")]  # no temporary files
    installed = {p.name: p.read_bytes() for p in etc.iterdir()}
    capsys.readouterr()

    assert firstboot(boot, root) == 0  # again: no bundle, nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == installed

    # the same bundle twice (a power cut before it was removed) gives the same files
    shutil.copytree(bundles / "gw-tank-a", boot / "watchpost-bundle")
    assert firstboot(boot, root, "--keep-bundle") == 0
    assert firstboot(boot, root, "--keep-bundle") == 0
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == installed
    assert (boot / "watchpost-bundle").exists()


def test_firstboot_can_keep_the_production_paths_for_an_image(
    bundles: Path, tmp_path: Path
) -> None:
    boot, root = tmp_path / "boot", tmp_path / "image"
    shutil.copytree(bundles / "gw-tank-a", boot / "watchpost-bundle")
    assert firstboot(boot, root, "--keep-paths") == 0
    installed = root / "etc" / "gateway.toml"
    assert installed.read_bytes() == (bundles / "gw-tank-a" / "gateway.toml").read_bytes()
    assert load_config(installed).uplink.key_file == Path("/etc/watchpost/gateway.key")


def test_firstboot_without_a_boot_partition_bundle(tmp_path: Path) -> None:
    assert firstboot(tmp_path / "boot", tmp_path / "root") == 0
    assert not (tmp_path / "root" / "etc").exists()


def test_firstboot_keeps_the_store(bundles: Path, tmp_path: Path) -> None:
    boot, root = tmp_path / "boot", tmp_path / "root"
    (root / "state").mkdir(parents=True)
    (root / "state" / "buffer.db").write_bytes(b"backlog")
    shutil.copytree(bundles / "gw-loading", boot / "watchpost-bundle")
    assert firstboot(boot, root) == 0
    assert (root / "state" / "buffer.db").read_bytes() == b"backlog"


def test_firstboot_refuses_a_mixed_up_bundle(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot, root = tmp_path / "boot", tmp_path / "root"
    bundle = boot / "watchpost-bundle"
    shutil.copytree(bundles / "gw-tank-a", bundle)
    shutil.copy(bundles / "gw-loading" / "gateway.key", bundle / "gateway.key")
    assert firstboot(boot, root) == EXIT_CONFIG
    assert "does not belong to" in capsys.readouterr().err
    assert bundle.exists()  # kept for the installer to fix
    assert not (root / "etc").exists()

    shutil.copy(bundles / "gw-tank-a" / "gateway.key", bundle / "gateway.key")
    shutil.copy(bundles / "gw-loading" / "gateway.toml", bundle / "gateway.toml")
    assert firstboot(boot, root) == EXIT_CONFIG
    assert "names gateway 'gw-tank-a'" in capsys.readouterr().err

    shutil.copy(bundles / "gw-tank-a" / "gateway.toml", bundle / "gateway.toml")
    (bundle / "gateway.toml").write_text(
        (bundle / "gateway.toml").read_text().replace("keepalive = 30", "keepalive = 1")
    )
    assert firstboot(boot, root) == EXIT_CONFIG
    assert "uplink.keepalive" in capsys.readouterr().err

    # a CA of the same name but another key: the signature gives it away
    shutil.copy(bundles / "gw-tank-a" / "gateway.toml", bundle / "gateway.toml")
    assert (
        main(["ca", "create", "--out", str(tmp_path / "twin"), "--site", "hx-chem-tankfarm"]) == 0
    )
    shutil.copy(tmp_path / "twin" / "ca.crt", bundle / "ca.crt")
    assert firstboot(boot, root) == EXIT_CONFIG
    assert "is not signed by ca.crt" in capsys.readouterr().err

    (bundle / "bundle.json").unlink()
    assert firstboot(boot, root) == EXIT_CONFIG
    assert "not a Watchpost bundle" in capsys.readouterr().err
    assert not (root / "etc").exists()


def test_firstboot_needs_the_service_user(bundles: Path, tmp_path: Path) -> None:
    boot, root = tmp_path / "boot", tmp_path / "root"
    shutil.copytree(bundles / "gw-tank-a", boot / "watchpost-bundle")
    assert firstboot(boot, root, user="no-such-user-here") == 67
    assert (boot / "watchpost-bundle").exists()
    assert not (root / "etc").exists()


def test_generated_config_reads_back_as_written(bundles: Path) -> None:
    raw = tomllib.loads((bundles / "gw-loading" / "gateway.toml").read_text())
    assert raw["devices"][0]["points"][0]["word_order"] == "little"
    assert "state_dir" not in raw["gateway"]  # defaults stay defaults


def test_bundles_carry_the_platforms_command_key(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[commands] verify_key` in the manifest: each bundle holds the key, its config names
    it, first boot installs it, and the installed gateway verifies commands."""
    assert main(["ca", "command-key", "--out", str(site / "platform-keys")]) == 0
    manifest = site / "manifest.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace(
            "[store]",
            '[commands]\nverify_key = "platform-keys/command-verify.pem"\nmax_age = 120\n\n'
            "[store]\nkeep_sent = 3600\n",
            1,
        )
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == 0
    public = (site / "platform-keys" / "command-verify.pem").read_bytes()
    for gateway in GATEWAYS:
        bundle = site / "out" / gateway
        assert (bundle / "command-verify.pem").read_bytes() == public
        assert mode(bundle / "command-verify.pem") == 0o644
        written = tomllib.loads((bundle / "gateway.toml").read_text())
        assert written["commands"] == {
            "verify_key": "/etc/watchpost/command-verify.pem",
            "max_age": 120,
        }
        assert written["store"]["keep_sent"] == 3600

    boot, root = tmp_path / "boot", tmp_path / "root"
    shutil.copytree(site / "out" / "gw-tank-a", boot / "watchpost-bundle")
    assert firstboot(boot, root) == 0
    etc = root / "etc"
    assert (etc / "command-verify.pem").read_bytes() == public
    assert mode(etc / "command-verify.pem") == 0o644
    config = load_config(etc / "gateway.toml")
    assert config.commands.verify_key == etc / "command-verify.pem"
    assert config.commands.max_age == 120
    capsys.readouterr()
    assert main(["config", "check", str(etc / "gateway.toml")]) == 0

    # a bundle whose config names the key but lacks the file is not installed
    broken = tmp_path / "boot2" / "watchpost-bundle"
    shutil.copytree(site / "out" / "gw-loading", broken)
    (broken / "command-verify.pem").unlink()
    assert firstboot(broken.parent, tmp_path / "root2") == EXIT_CONFIG
    assert "command-verify.pem" in capsys.readouterr().err
    assert not (tmp_path / "root2" / "etc" / "gateway.toml").exists()


def test_a_command_key_that_is_not_one_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = site / "manifest.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace("[store]", '[commands]\nverify_key = "ca/ca.crt"\n\n[store]', 1)
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "commands.verify_key" in err
    assert "not an Ed25519 public key" in err
    assert not (site / "out" / "gw-tank-a").exists()


def test_bundles_carry_the_brokers_ack_timeout_and_failback(site: Path) -> None:
    """`[broker] ack_timeout` and `failback_after` reach every gateway's `[uplink]`; left
    out, the gateway's own defaults stay (the key is not written)."""
    manifest = site / "manifest.toml"
    assert main(["provision", str(manifest), "--out", str(site / "plain")]) == 0
    plain = tomllib.loads((site / "plain" / GATEWAYS[0] / "gateway.toml").read_text())
    assert "ack_timeout" not in plain["uplink"]
    assert "failback_after" not in plain["uplink"]
    text = manifest.read_text()
    manifest.write_text(
        text.replace("[broker]\n", "[broker]\nack_timeout = 5\nfailback_after = 900\n", 1)
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == 0
    for gateway in GATEWAYS:
        written = tomllib.loads((site / "out" / gateway / "gateway.toml").read_text())
        assert written["uplink"]["ack_timeout"] == 5
        assert written["uplink"]["failback_after"] == 900
        assert written["uplink"]["backup_brokers"]


def test_bundles_carry_the_room_kept_for_alarms(site: Path) -> None:
    """`[store] alarm_reserve_mb` and `alarm_spill` reach every gateway's `[store]`; left
    out, the gateway's own defaults stay (the keys are not written)."""
    manifest = site / "manifest.toml"
    assert main(["provision", str(manifest), "--out", str(site / "plain")]) == 0
    plain = tomllib.loads((site / "plain" / GATEWAYS[0] / "gateway.toml").read_text())
    assert "alarm_reserve_mb" not in plain["store"]
    assert "alarm_spill" not in plain["store"]
    text = manifest.read_text()
    spill = "/run/watchpost/alarm-spill.jsonl"
    manifest.write_text(
        text.replace("[store]\n", f'[store]\nalarm_reserve_mb = 8\nalarm_spill = "{spill}"\n', 1)
    )
    assert main(["provision", str(manifest), "--out", str(site / "out")]) == 0
    for gateway in GATEWAYS:
        written = tomllib.loads((site / "out" / gateway / "gateway.toml").read_text())
        assert written["store"]["alarm_reserve_mb"] == 8
        assert written["store"]["alarm_spill"] == spill
