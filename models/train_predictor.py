"""generic-v6's trained predictor (the ``train`` extra: TensorFlow; never on a gateway).

Round 13 of ``bench/anomaly_search.py`` trains, on the normal rows of labelled files, a
network that predicts each point's *level* (the median of its last 5 rows, generic-v5's
level) from the point's own scaled values in the 32 rows that end ``horizon`` rows earlier.
One network is shared by every point, so the model stays channel-independent: it fits any
point or group of points. Its graph outputs per point the level, the *residual* (level
minus the prediction) and the roughness; the gateway scores the residual as one more
level-like feature in robust units (``watchpost.anomaly_robust``).

Inputs are scaled as on the device: each file by the median and robust spread of its own
first 400 rows. Training: Huber loss (delta 1), Adam (1e-3), batch 256, 8 epochs, seed 0,
deterministic ops. ``kind="others"`` (each point's level from the other points' levels, one
head per point; a site reference of round 13, never shipped) shares the same training.

    python -m watchpost.models.train predictor VALVE1_DIR --out models/generic-v6
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from watchpost.anomaly_robust import ROUGHNESS_EPS, input_scaling

PAST_ROWS = 32  # the predictor sees the 32 rows that end `horizon` rows before its target
LEVEL_ROWS = 5  # generic-v5's level: the median of the last 5 rows
ROUGHNESS_ROWS = 32
CALIBRATION_ROWS = 400  # each training file is scaled by its own first rows, as the device
HIDDEN = 16
EPOCHS, BATCH, LEARNING_RATE, HUBER_DELTA, SEED = 8, 256, 1e-3, 1.0, 0
LABELS = ("anomaly", "changepoint")

Layers = list[tuple[np.ndarray, np.ndarray]]  # dense layers (kernel, bias), ReLU between


def read_labelled_csv(
    path: Path, *, sep: str = ";", time_column: str | None = "datetime", label: str = "anomaly"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A labelled CSV: the numeric columns' names, values ``[rows, columns]`` and, per row,
    whether ``label`` is set (all false without that column)."""
    with path.open(newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        header = [h.strip() for h in next(reader)]
        rows = [r for r in reader if r]
    drop = {time_column, *LABELS, label}
    keep = [i for i, h in enumerate(header) if h not in drop]
    values = np.array([[float(r[i]) for i in keep] for r in rows], dtype=np.float64)
    if label in header:
        col = header.index(label)
        truth = np.array([float(r[col]) > 0.5 for r in rows], dtype=bool)
    else:
        truth = np.zeros(len(rows), dtype=bool)
    return [header[i] for i in keep], values, truth


def scaled(values: np.ndarray, cal: int = CALIBRATION_ROWS) -> np.ndarray:
    """The device's input: each point scaled by its own first ``cal`` rows."""
    center, scale = input_scaling(values[:cal])
    return np.asarray((values - center) / scale)


def level5(z: np.ndarray) -> np.ndarray:
    """Per row and point the median of its last 5 rows (NaN before)."""
    out = np.full(z.shape, np.nan)
    out[LEVEL_ROWS - 1 :] = np.median(sliding_window_view(z, LEVEL_ROWS, axis=0), axis=-1)
    return out


def roughness(z: np.ndarray) -> np.ndarray:
    """``log(mean squared first difference + 1e-4)`` over the last 32 rows (NaN before)."""
    n, p = z.shape
    d2 = np.vstack([np.zeros((1, p)), np.diff(z, axis=0) ** 2])
    c2 = np.cumsum(np.vstack([np.zeros((1, p)), d2]), axis=0)
    energy = np.full((n, p), np.nan)
    rows = ROUGHNESS_ROWS
    energy[rows - 1 :] = (c2[rows:] - c2[1 : n - rows + 2]) / (rows - 1)
    return np.log(energy + ROUGHNESS_EPS)


def past_inputs(z: np.ndarray, horizon: int) -> np.ndarray:
    """``[n, points, 32]``: for each target row t, the point's rows t-horizon-31 .. t-horizon
    (NaN where they do not exist)."""
    n, p = z.shape
    out = np.full((n, p, PAST_ROWS), np.nan)
    w = sliding_window_view(z, PAST_ROWS, axis=0)  # [n - 31, p, 32]: rows i .. i + 31
    first = PAST_ROWS - 1 + horizon
    if n > first:
        out[first:] = w[: n - first]
    return out


def run_layers(layers: Layers, x: np.ndarray) -> np.ndarray:
    """Dense layers with ReLU between, in numpy."""
    h = x
    for j, (kernel, bias) in enumerate(layers):
        h = h @ kernel + bias
        if j < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return np.asarray(h)


def training_pairs(
    files: Sequence[tuple[np.ndarray, np.ndarray]], kind: str, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of every window whose rows are all normal, from (values, truth)
    per file; each file scaled by its own first 400 rows."""
    xs, ys = [], []
    span = PAST_ROWS + horizon if kind == "past" else LEVEL_ROWS
    for values, truth in files:
        z = scaled(values)
        lv = level5(z)
        bad = np.convolve(truth.astype(float), np.ones(span), mode="full")[: len(z)] > 0
        ok = ~bad
        ok[: span - 1] = False
        if kind == "past":
            xs.append(past_inputs(z, horizon)[ok].reshape(-1, PAST_ROWS))
            ys.append(lv[ok].reshape(-1, 1))
        else:
            xs.append(lv[ok])
            ys.append(lv[ok])
    return np.concatenate(xs), np.concatenate(ys)


def fit(
    files: Sequence[tuple[np.ndarray, np.ndarray]], kind: str, net: str, horizon: int
) -> list[Layers]:
    """Train a predictor (``kind`` past or others, ``net`` linear or mlp) on the normal
    windows of ``files``; its dense layers, one stack per head (`others`: one per point, its
    own point's input weights 0)."""
    import tensorflow as tf  # noqa: PLC0415

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x, y = training_pairs(files, kind, horizon)
    keras = tf.keras
    heads: list[list[Any]] = []

    def head(inp: Any) -> Any:
        layers = [keras.layers.Dense(HIDDEN, activation="relu")] if net == "mlp" else []
        layers.append(keras.layers.Dense(1))
        heads.append(layers)
        for layer in layers:
            inp = layer(inp)
        return inp

    inp = keras.Input((x.shape[1],))
    if kind == "past":
        out = head(inp)
    else:  # one head per point, fed the others only (its own input multiplied by 0)
        outs = []
        for i in range(x.shape[1]):
            mask = np.ones(x.shape[1], dtype=np.float32)
            mask[i] = 0.0
            outs.append(head(keras.layers.Lambda(lambda t, m=mask: t * m)(inp)))
        out = keras.layers.Concatenate()(outs)
    model = keras.Model(inp, out)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=keras.losses.Huber(HUBER_DELTA)
    )
    model.fit(
        x.astype(np.float32), y.astype(np.float32), epochs=EPOCHS, batch_size=BATCH, verbose=0
    )
    stacks = [
        [
            (np.asarray(d.kernel.numpy(), np.float64), np.asarray(d.bias.numpy(), np.float64))
            for d in layers
        ]
        for layers in heads
    ]
    if kind == "others":  # the masked input is the same as a zero weight
        for i, stack in enumerate(stacks):
            stack[0][0][i, :] = 0.0
    return stacks


def build_graph(tf: Any, layers: Layers, horizon: int) -> Any:
    """The exported graph: input ``[B, 32 + horizon, 1]``, output per point ``[level,
    residual, roughness]``: the median of the last 5 rows, that minus the prediction from
    the first 32 rows, the log difference energy of the last 32 rows."""
    window = PAST_ROWS + horizon

    @tf.function(input_signature=[tf.TensorSpec([None, window, 1], tf.float32, name="window")])
    def features(x: Any) -> Any:
        tail = x[:, window - LEVEL_ROWS :, 0]
        lvl = tf.math.top_k(tail, k=(LEVEL_ROWS + 1) // 2).values[:, -1:]  # the median of 5
        h = x[:, :PAST_ROWS, 0]
        for j, (kernel, bias) in enumerate(layers):
            h = tf.matmul(h, tf.constant(kernel, tf.float32)) + tf.constant(bias, tf.float32)
            if j < len(layers) - 1:
                h = tf.nn.relu(h)
        last = x[:, window - ROUGHNESS_ROWS :, :]
        diff = last[:, 1:, :] - last[:, :-1, :]
        rough = tf.math.log(tf.reduce_mean(tf.square(diff), axis=1) + ROUGHNESS_EPS)
        return tf.concat([lvl, lvl - h, rough], axis=1)  # [B, 3]

    return features


def export_predictor(
    folder: Path, out: Path, *, horizon: int, net: str, defaults: dict[str, float]
) -> tuple[Any, dict[str, Any]]:
    """Train the `past` predictor on every ``*.csv`` of ``folder`` (labelled) and return the
    graph and its sidecar (``train.py`` exports them)."""
    import tensorflow as tf  # noqa: PLC0415

    paths = sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    if not paths:
        raise SystemExit(f"no CSV files under {folder}")
    files = [read_labelled_csv(p)[1:] for p in paths]
    (layers,) = fit(files, "past", net, horizon)
    x, y = training_pairs(files, "past", horizon)
    rmse = float(np.sqrt(np.mean((run_layers(layers, x) - y) ** 2)))
    last = float(np.sqrt(np.mean((x[:, -1:] - y) ** 2)))
    meta = {
        "name": out.name,
        "kind": "generic",
        "scoring": "robust",
        "window": PAST_ROWS + horizon,
        "level_rows": LEVEL_ROWS,
        "channel_independent": True,
        "features": ["level", "residual", "roughness"],
        "predictor": {
            "rows": PAST_ROWS,
            "horizon": horizon,
            "net": net,
            "layers": [{"kernel": k.tolist(), "bias": b.tolist()} for k, b in layers],
        },
        "trained_on": (
            f"the normal windows of {len(paths)} labelled files ({len(x)} windows, "
            f"{folder.name}), each scaled by its own first {CALIBRATION_ROWS} rows"
        ),
        "training": {
            "rmse_prediction": round(rmse, 4),
            "rmse_last_row": round(last, 4),
        },
        "defaults": defaults,
        "quantised_not_stuck": True,
    }
    return build_graph(tf, layers, horizon), meta
