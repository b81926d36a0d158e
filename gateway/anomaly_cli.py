"""`watchpost anomaly score`: replay a CSV through the daemon's own anomaly detector;
`watchpost anomaly rebaseline MODEL`: have the running daemon recalibrate a model.

Each data row of the CSV is one row of the detector's grid, in file order. The first
``--calibrate-rows`` rows calibrate it; every later row gets one output line
``row,score,anomaly`` (``row``: 0-based data row index, header not counted; ``anomaly``: 1
while an event is raised). A row the detector cannot score (a non-numeric cell, or too few
rows since one) prints an empty score and anomaly 0.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import getpass
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TextIO

import numpy as np

from watchpost.anomaly import (
    AnomalyDetector,
    DetectorParams,
    LiteRTModel,
)
from watchpost.anomaly_part import AnomalyError
from watchpost.config.anomaly import AnomalyModelConfig
from watchpost.models import shipped_model_path

TEXT_ANOMALY_HELP = _("on-device anomaly models")
TEXT_SCORE_HELP = _("score a CSV offline with the daemon's anomaly detector")
TEXT_SCORE_DESCRIPTION = _(
    "Calibrate on the first N rows of a CSV, then print `row,score,anomaly` for every later "
    "row (row: 0-based data row, header not counted; anomaly: 1 while an event is raised)."
)
TEXT_CSV_HELP = _("the CSV file, with a header row")
TEXT_MODEL_HELP = _("a .tflite model (default: the shipped generic model)")
TEXT_CAL_HELP = _("rows used for calibration (default: %(default)s)")
TEXT_SEP_HELP = _("column separator (default: ',')")
TEXT_TIME_HELP = _("name of the time column, which is not fed to the model")
TEXT_IGNORE_HELP = _("comma-separated columns not fed to the model (labels, ids)")
TEXT_THRESHOLD_HELP = _(
    "robust models (generic-v2 and later): threshold in robust units "
    "(default: the model's, 24 for generic-v6)"
)
TEXT_FACTOR_HELP = _(
    "other models: threshold = factor x highest calibration score (default: the model's, 8)"
)
TEXT_RELATION_HELP = _(
    "relation threshold = factor x highest calibration relation score; 0: off "
    "(default: the model's)"
)
TEXT_ROUGHNESS_HELP = _(
    "robust models: a point's roughness deviation counts this many times in the score "
    "(above 1: changed noise is raised sooner; default: the model's, 1)"
)
TEXT_CALIBRATION_FACTOR_HELP = _(
    "robust models: the threshold is at least this factor x the highest score of the "
    "calibration windows; 0: the threshold alone (default: the model's, 2 for generic-v3 to v5)"
)
TEXT_HOLD_HELP = _("rows above the threshold before an event is raised (default: the model's)")
TEXT_CLEAR_HELP = _("rows below the threshold before it is cleared (default: the model's)")
TEXT_NO_COLUMN = _("{path}: no column {name!r} (columns: {columns})")
TEXT_NO_INPUT = _("{path}: no column left to feed the model")
TEXT_SHORT = _("{path}: {rows} data row(s), fewer than --calibrate-rows {n}")
TEXT_CANNOT_READ = _("cannot read {path}: {error}")
TEXT_ERROR = _("error: {message}")
TEXT_REBASELINE_HELP = _(
    "recalibrate a model from the next rows, after the process settled somewhere new "
    "(the running daemon does it and records it as an event)"
)
TEXT_MODEL_NAME_HELP = _("the model entry's name, as in [[anomaly.models]]")
TEXT_BY_HELP = _("who asks, for the record (default: your login name)")
TEXT_CONFIG_HELP = _("the gateway's config file (for the control socket)")
TEXT_JSON_HELP = _("print JSON for scripts")
TEXT_NEEDS_DAEMON = _("this needs the running daemon: {error}")
TEXT_REBASELINED = _(
    "{model}: rebaseline recorded; it calibrates anew on the next {rows} rows and scores "
    "nothing until then"
)
DEFAULT_CONFIG = Path("/etc/watchpost/gateway.toml")
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the daemon is needed and not running

_DEFAULTS = AnomalyModelConfig(name="csv", points=["x"])


@dataclass(frozen=True, slots=True)
class ScoredRow:
    row: int
    score: float | None
    anomaly: bool


@dataclass(frozen=True, slots=True)
class CsvTable:
    columns: list[str]
    rows: list[list[float] | None]  # None: a row with a cell that is not a number


def read_table(
    path: Path, *, sep: str = ",", time_column: str | None = None, ignore: Sequence[str] = ()
) -> CsvTable:
    """The numeric input columns of a CSV; raises ValueError naming a missing column."""
    with path.open(newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        header = [h.strip() for h in next(reader, [])]
        for name in [time_column, *ignore]:
            if name is not None and name not in header:
                raise ValueError(
                    TEXT_NO_COLUMN.format(path=path, name=name, columns=", ".join(header))
                )
        drop = {time_column, *ignore}
        keep = [i for i, h in enumerate(header) if h not in drop]
        if not keep:
            raise ValueError(TEXT_NO_INPUT.format(path=path))
        rows: list[list[float] | None] = []
        for rec in reader:
            if not rec:
                continue
            try:
                vals = [float(rec[i]) for i in keep]
            except (ValueError, IndexError):
                rows.append(None)
                continue
            rows.append(vals if all(math.isfinite(v) for v in vals) else None)
    return CsvTable(columns=[header[i] for i in keep], rows=rows)


def score_table(
    table: CsvTable,
    *,
    model_path: Path | None = None,
    calibrate_rows: int,
    threshold: float | None = None,
    threshold_factor: float | None = None,
    relation_factor: float | None = None,
    roughness_weight: float | None = None,
    calibration_factor: float | None = None,
    hold: int | None = None,
    clear: int | None = None,
) -> Iterator[ScoredRow]:
    """Calibrate on the first rows, then yield one result per later row.

    One row is one period of the grid, so the entry's durations (hold, clear, drift lag)
    count rows at the default period of one second.
    """
    cfg = AnomalyModelConfig(
        name="csv",
        points=table.columns,
        calibration_s=calibrate_rows * _DEFAULTS.period_s,
        threshold=threshold,
        threshold_factor=threshold_factor,
        relation_factor=relation_factor,
        roughness_weight=roughness_weight,
        calibration_factor=calibration_factor,
    )
    model = LiteRTModel(model_path or shipped_model_path(), table.columns, name="csv")
    params = DetectorParams.from_config(cfg, model.defaults)
    params = dataclasses.replace(
        params,
        hold=params.hold if hold is None else hold,
        clear=params.clear if clear is None else clear,
    )
    det = AnomalyDetector(name="csv", model=model, params=params)
    for i, values in enumerate(table.rows):
        if values is None:
            det.gap()
            if i >= calibrate_rows:
                yield ScoredRow(i, None, False)
            continue
        verdict = det.push_row(i * 1000, np.asarray(values))
        if i < calibrate_rows:
            continue
        if verdict is None:
            yield ScoredRow(i, None, False)
        else:
            yield ScoredRow(i, verdict.score, verdict.anomaly)


def write_rows(rows: Iterator[ScoredRow], out: TextIO) -> None:
    for r in rows:
        score = "" if r.score is None else f"{r.score:.6g}"
        out.write(f"{r.row},{score},{int(r.anomaly)}\n")


def _split(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def cmd_score(args: argparse.Namespace) -> int:
    try:
        table = read_table(
            args.csv, sep=args.sep, time_column=args.time_column, ignore=_split(args.ignore_columns)
        )
        if len(table.rows) < args.calibrate_rows:
            raise ValueError(
                TEXT_SHORT.format(path=args.csv, rows=len(table.rows), n=args.calibrate_rows)
            )
        write_rows(
            score_table(
                table,
                model_path=args.model,
                calibrate_rows=args.calibrate_rows,
                threshold=args.threshold,
                threshold_factor=args.threshold_factor,
                relation_factor=args.relation_factor,
                roughness_weight=args.roughness_weight,
                calibration_factor=args.calibration_factor,
                hold=args.hold,
                clear=args.clear,
            ),
            sys.stdout,
        )
    except OSError as exc:
        print(
            TEXT_ERROR.format(message=TEXT_CANNOT_READ.format(path=args.csv, error=exc)),
            file=sys.stderr,
        )
        return 1
    except (ValueError, AnomalyError) as exc:
        print(TEXT_ERROR.format(message=exc), file=sys.stderr)
        return 2
    return 0


def cmd_rebaseline(args: argparse.Namespace) -> int:
    """Ask the running daemon to rebaseline one model entry; print what it recorded."""
    from watchpost.config import (  # noqa: PLC0415 - only this command reads the config
        EXIT_CONFIG,
        ConfigError,
        load_config,
        print_config_error,
    )
    from watchpost.control import ControlError, DaemonNotRunning, request  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    try:
        result = request(
            config.control.socket, "anomaly_rebaseline", model=args.model_name, by=args.by
        )
    except DaemonNotRunning as exc:
        message = TEXT_NEEDS_DAEMON.format(error=exc)
        print(TEXT_ERROR.format(message=message), file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ControlError as exc:
        print(TEXT_ERROR.format(message=exc), file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result))
    else:
        print(TEXT_REBASELINED.format(model=result["model"], rows=result["calibration_rows"]))
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): say so in the record
        return f"uid {os.getuid()}"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    anomaly = subparsers.add_parser("anomaly", help=TEXT_ANOMALY_HELP)
    sub = anomaly.add_subparsers(dest="anomaly_command", required=True, metavar="COMMAND")
    p = sub.add_parser("score", help=TEXT_SCORE_HELP, description=TEXT_SCORE_DESCRIPTION)
    p.add_argument("csv", type=Path, metavar="CSV", help=TEXT_CSV_HELP)
    p.add_argument("--model", type=Path, metavar="M", help=TEXT_MODEL_HELP)
    p.add_argument("--calibrate-rows", type=int, default=400, metavar="N", help=TEXT_CAL_HELP)
    p.add_argument("--sep", default=",", help=TEXT_SEP_HELP)
    p.add_argument("--time-column", metavar="C", help=TEXT_TIME_HELP)
    p.add_argument("--ignore-columns", default="", metavar="a,b", help=TEXT_IGNORE_HELP)
    p.add_argument("--threshold", type=float, help=TEXT_THRESHOLD_HELP)
    p.add_argument("--threshold-factor", type=float, help=TEXT_FACTOR_HELP)
    p.add_argument("--relation-factor", type=float, help=TEXT_RELATION_HELP)
    p.add_argument("--roughness-weight", type=float, metavar="W", help=TEXT_ROUGHNESS_HELP)
    p.add_argument(
        "--calibration-factor", type=float, metavar="F", help=TEXT_CALIBRATION_FACTOR_HELP
    )
    p.add_argument("--hold", type=int, help=TEXT_HOLD_HELP)
    p.add_argument("--clear", type=int, help=TEXT_CLEAR_HELP)
    p.set_defaults(handler=cmd_score)
    r = sub.add_parser("rebaseline", help=TEXT_REBASELINE_HELP)
    r.add_argument("model_name", metavar="MODEL", help=TEXT_MODEL_NAME_HELP)
    r.add_argument("--by", default=_login_name(), help=TEXT_BY_HELP)
    r.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=TEXT_CONFIG_HELP)
    r.add_argument("--json", action="store_true", help=TEXT_JSON_HELP)
    r.set_defaults(handler=cmd_rebaseline)
