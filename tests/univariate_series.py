"""Labelled univariate sensor series with known faults, made from a fixed seed.

Five kinds of signal that a gateway watches alone (one point per model entry), sampled once
a second, and five kinds of fault injected into them, each inside a labelled window:

| signal | what it looks like |
|---|---|
| tank_level | a tank filled and drawn in slow cycles (tens of minutes), 1 mm resolution |
| methane | a methane head near 0.2 %CH4 wandering slowly, 0.01 % resolution |
| machine_temp | a machine temperature following its load (slow sinusoid) with AR(1) noise |
| pump_pressure | a discharge pressure with a pulsation and white noise |
| flow | a flow rate quantised to whole units with jitter (like SKAB's flow channel) |

| fault | what is injected (magnitudes in units of the signal's noise, drawn per series) |
|---|---|
| shift | the level moves by 5 to 30 noise units for 5 to 20 min, then returns |
| drift | the level ramps to 10 to 40 noise units over 5 to 20 min, stays 5 min, returns |
| spikes | 5 rows in a row 10 to 50 noise units off (a burst), labelled 10 s |
| stuck | the value freezes at its last reading for 5 to 20 min |
| noise | the noise grows 3 to 6 times for 5 to 20 min |

Every series is 4 hours long; the first hour is fault-free (calibration), and three faults
of its kind follow at random times, at least 20 minutes apart. The magnitudes were fixed
before any detector was run on them. ``python tests/univariate_series.py DIR`` writes them
as CSV (``value,anomaly``) for `bench/anomaly_labelled.py`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SEED = 20261127
HOURS = 4
CALIBRATION_ROWS = 3600
SIGNALS = ("tank_level", "methane", "machine_temp", "pump_pressure", "flow")
FAULTS = ("shift", "drift", "spikes", "stuck", "noise")


@dataclass(frozen=True)
class Series:
    """One labelled univariate series."""

    name: str
    signal: str
    fault: str
    values: npt.NDArray[np.float64]
    truth: npt.NDArray[np.bool_]


def _signal(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean part, noise, resolution) of a signal; the noise has unit scale times sigma."""
    t = np.arange(n, dtype=np.float64)
    if kind == "tank_level":  # metres
        period = rng.uniform(1800, 3600)
        clean = 2.0 + 0.8 * np.abs(((t / period + rng.random()) % 1.0) * 2 - 1)
        return clean, 0.004 * rng.standard_normal(n), 0.001
    if kind == "methane":  # %CH4
        walk = np.cumsum(rng.standard_normal(n)) * 0.0004
        walk -= np.linspace(0, walk[-1], n)  # wanders, comes back
        return 0.2 + walk, 0.01 * rng.standard_normal(n), 0.01
    if kind == "machine_temp":  # degrees C
        clean = 55 + 4 * np.sin(2 * np.pi * t / rng.uniform(5000, 9000) + rng.uniform(0, 6))
        e = rng.standard_normal(n)
        ar = np.empty(n)
        ar[0] = e[0]
        for i in range(1, n):
            ar[i] = 0.8 * ar[i - 1] + 0.6 * e[i]
        return clean, 0.15 * ar, 0.01
    if kind == "pump_pressure":  # bar
        clean = 6.0 + 0.05 * np.sin(2 * np.pi * t / 7.0)
        return clean, 0.03 * rng.standard_normal(n), 0.001
    if kind == "flow":  # m3/h, whole units with jitter
        clean = 32.0 + np.round(0.6 * rng.standard_normal(n) * (rng.random(n) < 0.3))
        return clean, 0.002 * rng.standard_normal(n), 0.0
    raise ValueError(f"unknown signal {kind!r}")


def _inject(
    kind: str,
    clean: np.ndarray,
    noise: np.ndarray,
    *,
    sigma: float,
    at: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Apply one fault at row ``at``; returns (clean, noise, labelled length)."""
    minutes = int(rng.uniform(5, 20) * 60)
    sign = rng.choice([-1.0, 1.0])
    if kind == "shift":
        clean[at : at + minutes] += sign * rng.uniform(5, 30) * sigma
        return clean, noise, minutes
    if kind == "drift":
        top = sign * rng.uniform(10, 40) * sigma
        clean[at : at + minutes] += np.linspace(0, top, minutes)
        clean[at + minutes : at + minutes + 300] += top
        return clean, noise, minutes + 300
    if kind == "spikes":
        clean[at : at + 5] += sign * rng.uniform(10, 50, 5) * sigma
        return clean, noise, 10
    if kind == "stuck":
        return clean, noise, minutes  # frozen after quantisation, in make()
    if kind == "noise":
        noise[at : at + minutes] *= rng.uniform(3, 6)
        return clean, noise, minutes
    raise ValueError(f"unknown fault {kind!r}")


def make(signal: str, fault: str, seed: int = SEED) -> Series:
    """One series: ``signal`` with three faults of kind ``fault`` after the first hour."""
    rng = np.random.default_rng([seed, SIGNALS.index(signal), FAULTS.index(fault)])
    n = HOURS * 3600
    clean, noise, resolution = _signal(signal, n, rng)
    sigma = float(np.std(noise[:CALIBRATION_ROWS])) or 1e-3
    if signal == "flow":
        sigma = 1.0  # its noise is the whole-unit steps, not the jitter
    truth = np.zeros(n, dtype=bool)
    starts = sorted(rng.choice(np.arange(CALIBRATION_ROWS + 600, n - 3000, 1200), 3, replace=False))
    stuck: list[tuple[int, int]] = []
    for at in starts:
        clean, noise, length = _inject(fault, clean, noise, sigma=sigma, at=int(at), rng=rng)
        truth[at : at + length] = True
        if fault == "stuck":
            stuck.append((int(at), length))
    values = clean + noise
    if resolution:
        values = np.round(values / resolution) * resolution
    for at, length in stuck:
        values[at : at + length] = values[at - 1]
    return Series(f"{signal}-{fault}", signal, fault, values, truth)


def every_series(seed: int = SEED) -> list[Series]:
    return [make(s, f, seed) for s in SIGNALS for f in FAULTS]


def write(folder: Path, seed: int = SEED) -> list[Path]:
    """Write every series as ``<signal>-<fault>.csv`` (columns ``value,anomaly``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in every_series(seed):
        path = folder / f"{s.name}.csv"
        lines = ["value,anomaly"] + [
            f"{v:.6g},{int(t)}" for v, t in zip(s.values, s.truth, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "univariate")):
        print(p)
