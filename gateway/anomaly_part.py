"""The daemon's anomaly part, loaded only when a model is configured.

``open_anomaly`` returns the LiteRT runner (``watchpost.anomaly``, which imports numpy and
LiteRT) when the config has model entries, and a stand-in that does nothing otherwise, so a
gateway without a model never maps numpy. The errors live here for the same reason: the
daemon catches them without importing the runner.

Errors::

    AnomalyError            base class
     +-- ModelLoadError     the model file is missing or unreadable (fix the file; no retry)
     +-- ModelShapeError    the model does not fit the configured points (fix the config)
     +-- CalibrationError   too few rows to calibrate (give it more rows)
     +-- UnknownModelError  a command names a model entry that is not configured
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from gettext import gettext as _
from pathlib import Path
from typing import Any, Protocol

from watchpost import numpy_lean
from watchpost.samples import Sample
from watchpost.settings import AnomalyConfig

TEXT_NO_MODELS = _("no anomaly model {name!r}: this gateway runs none")

EventSink = Callable[[dict[str, Any]], Awaitable[None] | None]


class AnomalyError(Exception):
    """Base of the errors of the anomaly models."""

    retry_helps = False


class ModelLoadError(AnomalyError):
    """The model file is missing, unreadable or not a Watchpost model."""


class ModelShapeError(AnomalyError):
    """The model's input does not fit the points it is given."""


class CalibrationError(AnomalyError):
    """Calibration cannot be fitted from the rows given."""


class UnknownModelError(AnomalyError):
    """A command names a model entry that is not configured."""


class AnomalyPart(Protocol):
    """What the daemon uses of the anomaly runner."""

    def observe(self, sample: Sample) -> None:
        """Hand a sample to the models; never blocks."""
        ...

    def status(self) -> dict[str, Any]:
        """Per model entry: calibration progress, raised or not, last score; and drops."""
        ...

    async def run(self) -> None:
        """Process samples until cancelled."""
        ...

    async def rebaseline(self, name: str, *, by: str) -> dict[str, Any]:
        """Recalibrate model entry ``name`` from the next rows; UnknownModelError."""
        ...


class NoModels:
    """The anomaly part of a gateway without models: nothing to feed, nothing to report."""

    def observe(self, sample: Sample) -> None:
        """No model watches any point."""

    def status(self) -> dict[str, Any]:
        return {"dropped": 0, "rows_scored": 0, "models": {}}

    async def run(self) -> None:
        await asyncio.Event().wait()  # until cancelled, like the runner's empty queue

    async def rebaseline(self, name: str, *, by: str) -> dict[str, Any]:
        raise UnknownModelError(TEXT_NO_MODELS.format(name=name))


def open_anomaly(config: AnomalyConfig, *, state_dir: Path | None, emit: EventSink) -> AnomalyPart:
    """The runner of the configured models (loading each; ModelLoadError, ModelShapeError),
    or ``NoModels`` when there is none to run."""
    if not (config.enabled and config.models):
        return NoModels()
    # numpy's OpenBLAS starts a worker thread for every further core when it loads (a stack
    # and buffers each); the models' matrices are a few dozen wide, one thread is enough.
    # An operator's own setting wins; it has no effect once numpy is loaded.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # numpy's random, polynomial, fft and ctypeslib only when something uses them
    numpy_lean.defer_unused()
    from watchpost.anomaly import AnomalyRunner  # noqa: PLC0415 - numpy and LiteRT, only now

    return AnomalyRunner(config=config, state_dir=state_dir, emit=emit)
