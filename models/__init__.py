"""Anomaly models shipped with Watchpost, and the pipeline that trains them.

Each model is a ``.tflite`` file with a sidecar ``.json`` (the contract the runner reads:
window length, whether the model is channel-independent, its feature names) and a model
card ``.md``. ``train.py`` builds them; it needs the optional ``train`` extra (TensorFlow),
which the gateway never installs.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL = "generic-v6"
PREVIOUS_MODEL = "generic-v5"


def shipped_model_path(name: str = SHIPPED_MODEL) -> Path:
    """Path of a model that ships with the gateway (default: the generic model used when an
    entry names none)."""
    return Path(__file__).with_name(f"{name}.tflite")
