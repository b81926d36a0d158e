"""Reading SKAB files for the benches: values, labels, the anomaly-free chunks.

The SKAB data is GPL-3.0 and is never copied into this repository: pass its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from watchpost.models.train_predictor import read_labelled_csv

TIME_COLUMN = "datetime"
CHUNK_CAL, CHUNK_SCORE = 400, 750
LONG_CAL = 7200


@dataclass(frozen=True)
class LabelledSeries:
    """One file's numeric columns (rows, in file order) and its labels (all false without)."""

    name: str
    columns: list[str]
    values: npt.NDArray[np.float64]
    truth: npt.NDArray[np.bool_]


def read_labelled(
    path: Path, *, sep: str = ";", time_column: str | None = TIME_COLUMN, label: str = "anomaly"
) -> LabelledSeries:
    """One labelled CSV (``watchpost.models.train_predictor.read_labelled``) as a series."""
    columns, values, truth = read_labelled_csv(path, sep=sep, time_column=time_column, label=label)
    return LabelledSeries(path.stem, columns, values, truth)


def valve_series(folder: Path) -> list[LabelledSeries]:
    """Every ``N.csv`` of a SKAB group folder, by file number."""
    files = sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    return [read_labelled(f) for f in files]


def anomaly_free_series(path: Path) -> tuple[list[LabelledSeries], LabelledSeries]:
    """The anomaly-free file cut into chunks of 400 + 750 rows, and the file whole."""
    whole = read_labelled(path)
    size = CHUNK_CAL + CHUNK_SCORE
    chunks = [
        LabelledSeries(
            f"{whole.name}[{a}:{a + size}]",
            whole.columns,
            whole.values[a : a + size],
            whole.truth[a : a + size],
        )
        for a in range(0, len(whole.values) - size + 1, size)
    ]
    return chunks, whole
