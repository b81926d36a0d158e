"""Site and gateway ids are topic levels: a '.' (a separator on some brokers) is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.kit.processes import cli
from watchpost.config import EXIT_CONFIG

DEMO = Path(__file__).parents[1] / "examples" / "demo" / "gateway.toml"
MANIFEST = Path(__file__).parents[1] / "examples" / "manifest.toml"


def test_a_dot_in_the_gateway_or_site_id_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = DEMO.read_text()
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace('id = "gw-01"', 'id = "gw.01"', 1))
    result = cli("config", "check", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "gateway.id: may not hold '.'" in result.stderr
    assert "topic separator" in result.stderr

    config.write_text(text.replace('site = "demo-colliery"', 'site = "demo/colliery"', 1))
    result = cli("config", "check", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "gateway.site: may hold only letters, digits, '_' and '-'" in result.stderr


def test_the_manifest_refuses_it_too(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.toml"
    shutil.copy(MANIFEST, manifest)
    manifest.write_text(manifest.read_text().replace('id = "gw-loading"', 'id = "gw.loading"'))
    result = cli("provision", str(manifest), "--out", str(tmp_path / "out"))
    assert result.returncode == EXIT_CONFIG
    assert "gateways[1].id: may not hold '.'" in result.stderr
