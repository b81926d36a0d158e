"""The files the Debian package is made of, checked without building it (the packages
themselves are installed and exercised in tests/test_packages.py)."""

from __future__ import annotations

import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

DEBIAN = Path(__file__).resolve().parents[1] / "packaging/debian"
GUARD_UNIT = DEBIAN / "watchpost-update-guard.service"
SCRIPTS = ["preinst", "postinst", "prerm", "postrm"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_maintainer_scripts_are_valid_sh(name: str) -> None:
    result = subprocess.run(
        ["sh", "-n", str(DEBIAN / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["update-guard", "watchpost"])
def test_python_programs_compile(name: str, tmp_path: Path) -> None:
    py_compile.compile(str(DEBIAN / name), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_guard_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify`, with ExecStart at the guard as it is in the repository."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd"
    copy = tmp_path / GUARD_UNIT.name
    text = GUARD_UNIT.read_text()
    assert "ExecStart=/usr/lib/watchpost/update-guard watch" in text
    copy.write_text(text.replace("/usr/lib/watchpost/update-guard", str(DEBIAN / "update-guard")))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert GUARD_UNIT.name not in result.stdout + result.stderr


def test_the_debian_mirror_is_read_from_enabled_apt_sources(tmp_path: Path) -> None:
    """Disabled files and other archives (a NodeSource list once confused this) are skipped."""
    from tests.debian_root import FALLBACK_MIRROR, mirror  # noqa: PLC0415

    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    assert mirror(tmp_path) == FALLBACK_MIRROR
    (folder / "nodesource.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
    )
    (folder / "old.sources.disabled-by-farm").write_text(
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
    )
    assert mirror(tmp_path) == FALLBACK_MIRROR
    (folder / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://first.example/debian bookworm main\n"
    )
    assert mirror(tmp_path) == "http://first.example/debian"
