"""The unit files: `systemd-analyze verify`, the security rating, and what the daemon relies on.

Needs the Debian package `systemd` (systemd-analyze, systemd-sysusers); the README's install
step puts it on fresh machines, so a missing tool fails here instead of skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from watchpost.config import EXIT_CONFIG
from watchpost.provisioning.firstboot import BOOT_DIRS, BUNDLE_DIR_NAME

UNITS = Path(__file__).parents[1] / "systemd"
SERVICE = UNITS / "watchpost.service"
FIRSTBOOT = UNITS / "watchpost-firstboot.service"
SYSUSERS = UNITS / "watchpost.sysusers"
INSTALLED_COMMAND = "/usr/local/bin/watchpost"  # where the installer guide links the command
MAX_EXPOSURE = 4.0  # "OK" or better in systemd-analyze security


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install -y systemd"
    return path


def directives(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def installed_copy(unit: Path, folder: Path) -> Path:
    """The unit as installed with the command at the venv's path instead of /usr/local/bin.

    systemd-analyze verify checks that ExecStart's program exists; on a test machine the
    command lives in the virtual environment. Nothing else in the unit changes.
    """
    command = Path(sys.executable).parent / "watchpost"
    assert command.exists(), "the watchpost command is not installed in this environment"
    text = unit.read_text()
    assert INSTALLED_COMMAND in text
    copy = folder / unit.name
    copy.write_text(text.replace(INSTALLED_COMMAND, str(command)))
    return copy


@pytest.mark.parametrize("unit", [SERVICE, FIRSTBOOT], ids=lambda u: u.name)
def test_verify(unit: Path, tmp_path: Path) -> None:
    copy = installed_copy(unit, tmp_path)
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert unit.name not in result.stdout + result.stderr


@pytest.mark.parametrize("unit", [SERVICE, FIRSTBOOT], ids=lambda u: u.name)
def test_verify_as_shipped_finds_only_the_missing_command(unit: Path) -> None:
    """Unchanged, the unit's one complaint may be the command not being installed here."""
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if unit.name in line
    ]
    if Path(INSTALLED_COMMAND).exists():
        assert result.returncode == 0, result.stderr
    for line in complaints:
        assert f"Command {INSTALLED_COMMAND} is not executable" in line, line


@pytest.mark.parametrize("unit", [SERVICE, FIRSTBOOT], ids=lambda u: u.name)
def test_security_rating(unit: Path) -> None:
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure, rating = float(match[1]), match[2]
    print(f"{unit.name}: exposure {exposure} {rating}")
    assert exposure <= MAX_EXPOSURE
    assert rating in ("OK", "SAFE", "PERFECT")


def test_daemon_unit_has_what_the_daemon_relies_on() -> None:
    unit = directives(SERVICE)
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert int(unit["Service.WatchdogSec"][0]) >= 10
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert unit["Service.User"] == ["watchpost"]
    assert unit["Service.SupplementaryGroups"] == ["dialout"]
    assert unit["Service.StateDirectory"] == ["watchpost"]
    assert unit["Service.RuntimeDirectory"] == ["watchpost"]
    assert unit["Service.ConfigurationDirectory"] == ["watchpost"]
    assert "watchpost-firstboot.service" in unit["Unit.After"][0].split()
    exec_start = unit["Service.ExecStart"][0].split()
    assert exec_start[:2] == [INSTALLED_COMMAND, "run"]
    assert "/etc/watchpost/gateway.toml" in exec_start


def test_firstboot_unit_matches_the_command() -> None:
    unit = directives(FIRSTBOOT)
    assert unit["Service.Type"] == ["oneshot"]
    assert "watchpost.service" in unit["Unit.Before"][0].split()
    assert "systemd-sysusers.service" in unit["Unit.After"][0].split()
    # the unit starts exactly when `watchpost firstboot` would find a bundle
    expected = {f"|{boot / BUNDLE_DIR_NAME}" for boot in BOOT_DIRS}
    assert set(unit["Unit.ConditionPathExists"]) == expected
    assert unit["Service.ExecStart"][0].split()[:2] == [INSTALLED_COMMAND, "firstboot"]


def test_sysusers_makes_the_user_in_dialout(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("watchpost:"))
    assert user[5] == "/var/lib/watchpost"
    assert user[6].endswith("nologin")
    groups = {
        line.split(":")[0]: line.split(":")[3]
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    assert "watchpost" in groups["dialout"].split(",")
    assert "watchpost" in groups
