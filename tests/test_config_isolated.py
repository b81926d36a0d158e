"""The daemon's config validated in a child process: the same config, the same errors, no
validator left in the daemon, and the daemon's own validation when the child cannot run."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.kit.cases import Case, all_cases
from watchpost import config_child
from watchpost.config import ConfigError, load_config
from watchpost.config.isolated import plain_config
from watchpost.settings import GatewayConfig as PlainConfig

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "gateway.toml"


@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.name)
def test_the_child_gives_what_load_config_gives(case: Case) -> None:
    if case.is_config_error:
        with pytest.raises(ConfigError) as here:
            load_config(case.config)
        with pytest.raises(ConfigError) as isolated:
            config_child.load(case.config)
        assert isolated.value.errors == here.value.errors == case.errors()
        assert isolated.value.path == case.config
    else:
        assert config_child.load(case.config) == plain_config(load_config(case.config))


def test_the_demo_config_comes_back_whole() -> None:
    config = config_child.load(DEMO)
    assert config == plain_config(load_config(DEMO))
    assert type(config) is PlainConfig  # no pydantic model: the daemon needs no pydantic
    assert len(list(config.points())) == len(list(load_config(DEMO).points())) > 0


def test_the_daemon_process_builds_no_config_validator() -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from watchpost.config.file import GatewayConfig\n"
        "from watchpost import config_child\n"
        f"config = config_child.load(Path({str(DEMO)!r}))\n"
        "print(json.dumps([config.gateway.id, GatewayConfig.__pydantic_complete__]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    gateway_id, built = json.loads(done.stdout.strip().splitlines()[-1])
    assert gateway_id == load_config(DEMO).gateway.id
    assert built is False


def test_without_a_child_the_daemon_validates_itself(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with caplog.at_level(logging.WARNING, logger="watchpost.config.isolated"):
        config = config_child.load(DEMO)
    assert config == plain_config(load_config(DEMO))
    assert "no-such-python" in caplog.text
    assert "daemon itself" in caplog.text


def test_a_child_that_fails_leaves_the_validation_to_the_daemon(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with caplog.at_level(logging.WARNING, logger="watchpost.config.isolated"):
        config = config_child.load(DEMO)
    assert config == plain_config(load_config(DEMO))
    assert "exit status 1" in caplog.text


def test_the_child_started_early_is_the_one_taken(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(DEMO.read_text())
    config_child.start_early(path)
    [early] = config_child._early
    assert early.process is not None
    early.process.wait(timeout=60)  # it has read and validated the file
    path.write_text("not toml [")
    assert config_child.load(path) == plain_config(load_config(DEMO))
    with pytest.raises(ConfigError):  # a later load starts a child of its own
        config_child.load(path)


def test_a_child_started_early_for_another_file_is_not_used(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("not toml [")
    config_child.start_early(other)
    assert config_child.load(DEMO) == plain_config(load_config(DEMO))
    assert config_child._early == []


def test_without_a_child_config_errors_still_name_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "gateway.toml"
    bad.write_text(DEMO.read_text().replace("[uplink]", "[uplink]\nno_such_key = 1", 1))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(ConfigError) as failed:
        config_child.load(bad)
    assert any("uplink.no_such_key" in line for line in failed.value.errors)


@pytest.mark.parametrize("case", [c for c in all_cases() if not c.is_config_error], ids=str)
def test_the_plain_copy_keeps_every_value_of_every_model(case: Case) -> None:
    """Every model's fields are its plain class's fields, and the copy holds the same values
    (compared as plain data, key by key)."""
    model = load_config(case.config)
    copy = plain_config(model)

    def as_data(value: object) -> object:
        if isinstance(value, BaseModel):
            return {name: as_data(getattr(value, name)) for name in type(value).model_fields}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: as_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [as_data(item) for item in value]
        return value

    assert as_data(copy) == as_data(model)
