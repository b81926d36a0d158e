"""`watchpost anomaly score CSV`: rows, format, column options, errors."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from watchpost import anomaly_cli
from watchpost.models import shipped_model_path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="watchpost")
    anomaly_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def write_csv(
    path: Path,
    *,
    n: int = 600,
    shift_at: int | None = None,
    sep: str = ",",
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    flow = 32 + 0.4 * rng.standard_normal(n)
    current = 1.0 + 0.2 * rng.standard_normal(n)
    if shift_at is not None:
        flow[shift_at : shift_at + 150] -= 6.0
    lab = np.zeros(n, dtype=int) if labels is None else labels
    lines = [sep.join(["datetime", "flow", "current", "anomaly"])]
    for i in range(n):
        lines.append(
            sep.join(
                [
                    f"2020-03-09 10:{i // 60:02d}:{i % 60:02d}",
                    f"{flow[i]:.4f}",
                    f"{current[i]:.4f}",
                    str(lab[i]),
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def parse(out: str) -> list[tuple[int, float, int]]:
    rows = []
    for line in out.splitlines():
        assert re.fullmatch(r"\d+,[-+0-9.eE]+(inf)?,[01]", line), line
        r, s, a = line.split(",")
        rows.append((int(r), float(s), int(a)))
    return rows


def test_prints_one_line_per_row_after_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "pump.csv", n=600, shift_at=420)
    status = run(
        [
            "anomaly",
            "score",
            str(csv),
            "--calibrate-rows",
            "300",
            "--clear",
            "10",
            "--time-column",
            "datetime",
            "--ignore-columns",
            "anomaly",
        ]
    )
    assert status == 0
    rows = parse(capsys.readouterr().out)
    assert [r[0] for r in rows] == list(range(300, 600))
    flagged = [r for r, _s, a in rows if a]
    assert flagged
    assert 420 <= min(flagged) <= 430  # raised within the hold time of the drop
    assert not any(a for r, _s, a in rows if r < 420)
    assert not any(a for r, _s, a in rows if r >= 590)  # cleared after the drop ends (570)


def test_separator_and_ignored_label_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_csv(tmp_path / "a.csv", sep=";")
    labels = np.random.default_rng(9).integers(0, 2, 600)
    b = write_csv(tmp_path / "b.csv", sep=";", labels=labels)
    opts = ["--sep", ";", "--time-column", "datetime", "--ignore-columns", "anomaly"]
    assert run(["anomaly", "score", str(a), *opts]) == 0
    out_a = capsys.readouterr().out
    assert run(["anomaly", "score", str(b), *opts]) == 0
    out_b = capsys.readouterr().out
    assert len(parse(out_a)) == 200  # default: calibrate on 400 rows
    assert out_a == out_b  # the label column never reaches the model
    # fed to the model, the random labels do change the scores
    assert run(["anomaly", "score", str(b), "--sep", ";", "--time-column", "datetime"]) == 0
    assert capsys.readouterr().out != out_a


def test_unparseable_row_prints_an_empty_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "pump.csv", n=560)
    lines = csv.read_text().splitlines()
    lines[1 + 450] = "2020-03-09 10:07:30,,1.0,0"  # data row 450: flow missing
    csv.write_text("\n".join(lines) + "\n")
    assert (
        run(
            [
                "anomaly",
                "score",
                str(csv),
                "--time-column",
                "datetime",
                "--ignore-columns",
                "anomaly",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 160
    assert out[50] == "450,,0"
    assert out[49].startswith("449,")
    assert out[49] != "449,,0"
    # the window starts again after the hole: a window's worth of rows (62 for generic-v6)
    # without a score
    assert out[51] == "451,,0"
    assert out[111] == "511,,0"
    assert out[112].startswith("512,")
    assert out[112] != "512,,0"


def test_unknown_column_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "pump.csv")
    status = run(["anomaly", "score", str(csv), "--ignore-columns", "anomaly,changepoint"])
    assert status == 2
    err = capsys.readouterr().err
    assert "'changepoint'" in err
    assert "datetime, flow, current, anomaly" in err


def test_model_that_does_not_fit_the_columns_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "pump.csv")
    site = Path(__file__).with_name("anomaly_fixtures") / "site-3points.tflite"
    status = run(
        [
            "anomaly",
            "score",
            str(csv),
            "--model",
            str(site),
            "--time-column",
            "datetime",
            "--ignore-columns",
            "anomaly",
        ]
    )
    assert status == 2
    assert "takes windows of 3 point(s)" in capsys.readouterr().err


def test_too_few_rows_for_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "pump.csv", n=100)
    assert run(["anomaly", "score", str(csv), "--time-column", "datetime"]) == 2
    assert "fewer than --calibrate-rows 400" in capsys.readouterr().err


def _pump_csv(path: Path, *, dip: float = 0.0, noise_from: int | None = None) -> Path:
    """700 rows of flow and current, seed 0: the flow dips by ``dip`` over rows 450-549;
    from ``noise_from`` on, the current's noise is four times larger (its level unchanged)."""
    n = 700
    rng = np.random.default_rng(0 if noise_from is None else 3)
    flow = 32 + 0.4 * rng.standard_normal(n)
    current = 1.0 + 0.2 * rng.standard_normal(n)
    flow[450:550] -= dip
    if noise_from is not None:
        current[noise_from:] = 1.0 + 0.8 * rng.standard_normal(n - noise_from)
    lines = ["flow,current"] + [f"{a:.4f},{b:.4f}" for a, b in zip(flow, current, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _flagged(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[int]:
    assert run(argv) == 0
    return [r for r, _s, a in parse(capsys.readouterr().out) if a]


def test_calibration_factor_flag_lifts_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = str(_pump_csv(tmp_path / "dip.csv", dip=2.5))
    v5 = str(shipped_model_path("generic-v5"))  # its level alone: what the dip reaches
    base = ["anomaly", "score", csv, "--model", v5, "--calibrate-rows", "300", "--threshold", "6"]
    flagged = _flagged(base, capsys)
    assert flagged
    assert 450 <= min(flagged) <= 470  # the dip, at the fixed threshold of 6
    # eight times the calibration windows' highest score is above what the dip reaches
    assert _flagged([*base, "--calibration-factor", "8"], capsys) == []


def test_roughness_weight_flag_raises_changed_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = str(_pump_csv(tmp_path / "noise.csv", noise_from=400))
    base = ["anomaly", "score", csv, "--calibrate-rows", "300"]
    assert _flagged(base, capsys) == []  # the model's weight (1): not seen
    flagged = _flagged([*base, "--roughness-weight", "8"], capsys)
    assert flagged
    assert 400 <= min(flagged) <= 440


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        ("--roughness-weight", "0", "roughness_weight"),
        ("--calibration-factor", "-1", "calibration_factor"),
    ],
)
def test_bad_scoring_flag_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, key: str
) -> None:
    csv = str(_pump_csv(tmp_path / "pump.csv"))
    assert run(["anomaly", "score", csv, "--calibrate-rows", "300", flag, value]) == 2
    assert key in capsys.readouterr().err
