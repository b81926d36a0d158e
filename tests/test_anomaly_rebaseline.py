"""Honest recovery in the runner: a raised event says since when and which points hold it;
a rebaseline forgets the calibration at once (also on disk), clears what was raised, is sent
as an event, and the next rows calibrate anew."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_anomaly import normal_rows, samples_for
from watchpost.anomaly import AnomalyRunner
from watchpost.anomaly_part import UnknownModelError
from watchpost.config.anomaly import AnomalyConfig, AnomalyModelConfig
from watchpost.crew_output import print_models, when

POINTS = ["flow", "pressure", "temp"]
T0 = 1_700_000_000_000


def config() -> AnomalyConfig:
    return AnomalyConfig(
        models=[AnomalyModelConfig(name="pump", points=POINTS, calibration_s=300, hold_s=3)]
    )


async def feed(runner: AnomalyRunner, rows: np.ndarray, start: int) -> None:
    for s in samples_for(rows, POINTS, T0 + start * 1000):
        runner.observe(s)
    await asyncio.wait_for(runner.idle(), 60)


def test_rebaseline_after_a_lasting_shift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[dict[str, Any]] = []
    state = tmp_path / "anomaly" / "pump.json"
    rows = normal_rows(1400, seed=11)
    rows[500:, 1] += 40 * 0.05  # the pressure settles 40 of its spreads higher, for good

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        runner = AnomalyRunner(config=config(), state_dir=tmp_path, emit=got.append)
        task = asyncio.create_task(runner.run())
        await feed(runner, rows[:600], 0)
        before = runner.status()["models"]["pump"]
        assert state.exists()
        reply = await runner.rebaseline("pump", by="crew:li")
        after = runner.status()["models"]["pump"]
        assert not state.exists()  # forgotten on disk at once: a restart calibrates anew
        await feed(runner, rows[600:], 600)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return before, reply, {"after": after, "end": runner.status()["models"]["pump"]}

    before, reply, later = asyncio.run(main())
    # `watchpost status` shows a crew the same facts
    print_models({"pump": before})
    print_models({"pump": later["after"]})
    raised_line, calibrating_line = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("pump")
    ]
    assert "raised" in raised_line
    assert when(before["raised_since"]) in raised_line
    assert "pressure" in raised_line
    assert "calibrating 0/300 rows" in calibrating_line
    assert before["raised"]
    # since when: the first row above the threshold, within the hold of the shift's start
    assert T0 + 500_000 <= before["raised_since"] <= T0 + 503_000
    assert before["holding"] == ["pressure"]
    assert reply == {"model": "pump", "calibration_rows": 300}
    assert later["after"]["calibrated"] is False
    assert later["after"]["calibration_rows"] == [0, 300]
    assert later["after"]["raised"] is False
    assert [e["event"] for e in got] == ["raised", "cleared", "rebaseline"]
    assert got[2] == {"event": "rebaseline", "model": "pump", "by": "crew:li", "points": POINTS}
    assert later["end"]["calibrated"] is True  # 800 more rows: calibrated on the new level
    assert later["end"]["raised"] is False  # and the new level is normal now
    assert state.exists()


def test_rebaseline_of_an_unknown_model_names_the_configured_ones(tmp_path: Path) -> None:
    async def main() -> None:
        runner = AnomalyRunner(config=config(), state_dir=tmp_path, emit=lambda e: None)
        with pytest.raises(UnknownModelError, match=r"'pumpp'.*configured: pump"):
            await runner.rebaseline("pumpp", by="crew")

    asyncio.run(main())


def test_a_model_proposes_a_rebaseline_once_the_new_level_holds_but_never_applies_it(
    tmp_path: Path,
) -> None:
    got: list[dict[str, Any]] = []
    rows = normal_rows(1400, seed=11)
    rows[500:, 1] += 40 * 0.05  # the pressure settles higher and stays there
    cfg = AnomalyConfig(
        models=[
            AnomalyModelConfig(
                name="pump",
                points=POINTS,
                calibration_s=300,
                hold_s=3,
                propose_rebaseline_s=300,
            )
        ]
    )

    async def main() -> dict[str, Any]:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=got.append)
        task = asyncio.create_task(runner.run())
        await feed(runner, rows, 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return runner.status()["models"]["pump"]

    status = asyncio.run(main())
    assert [e["event"] for e in got] == ["raised", "rebaseline_proposed"]
    raised, proposal = got
    assert proposal["model"] == "pump"
    assert proposal["points"] == ["pressure"]
    # steady for the configured 300 s: proposed 300 rows into the new level (and its ramp)
    assert T0 + 800_000 <= proposal["ts"] <= T0 + 830_000
    assert proposal["steady_since"] == proposal["ts"] - 299_000
    assert status["raised"]  # never applied: still raised, the old calibration kept
    assert status["calibrated"]
    assert (tmp_path / "anomaly" / "pump.json").exists()
    assert T0 + 500_000 <= raised["ts"] <= T0 + 510_000
