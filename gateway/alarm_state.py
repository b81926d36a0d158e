"""``alarms.json``: the alarm engine's state kept over restarts, checked before it is used.

The file holds what must survive a restart (raised, latched, acknowledged and shelved
alarms; ``AlarmEngine.snapshot()``). It is written atomically and never with NaN or an
infinity. A file that is there but cannot be used (not JSON, another version, ``"alarms":
null``, a text where a number belongs, NaN) is never a reason not to start: it is moved aside
to ``alarms.json.damaged-STAMP``, the engine starts from normal, and ``damage`` says why and
where the file went, for the `state_damaged` fault alarm.

No exceptions of its own: ``load`` never raises for the file's content; ``save`` raises
OSError (a retry may help: the housekeeper tries again on the next change).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from watchpost.config.errors import describe_error
from watchpost.files import atomic_write
from watchpost.sqlite_files import move_aside

log = logging.getLogger(__name__)

STATE_VERSION = 1

TEXT_DAMAGED = _("alarm state {path} cannot be used ({reason}); moved aside to {moved_to}")
TEXT_NOT_MOVED = _("cannot move {path} aside ({error}); it is replaced at the next save")
TEXT_NOT_JSON = _("not JSON: {error}")
TEXT_UNREADABLE = _("cannot read it: {error}")

Stamp = Annotated[StrictInt, Field(ge=0, description="UTC epoch ms.")]
Text = Annotated[str, Field(max_length=10_000)]


class SavedAlarm(BaseModel):
    """One alarm's saved state (as ``AlarmEngine.snapshot()`` writes it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    raised: StrictBool = Field(default=False, description="Raised on the stream.")
    cond: StrictBool = Field(default=False, description="The condition, after its delays.")
    raised_ts: Stamp | None = Field(default=None, description="When it was raised.")
    acked: StrictBool = Field(default=False, description="Acknowledged.")
    acked_by: Text | None = Field(default=None, description="Who acknowledged.")
    acked_ts: Stamp | None = Field(default=None, description="When it was acknowledged.")
    acked_note: Text | None = Field(default=None, description="The acknowledgement's note.")
    value: float | None = Field(
        default=None, allow_inf_nan=False, description="The last value the rule compared."
    )
    last_ts: Stamp | None = Field(default=None, description="Stamp of its last sample.")
    shelved_until: Stamp | None = Field(default=None, description="A shelf's end, wall time.")
    shelved_by: Text | None = Field(default=None, description="Who shelved.")
    shelved_reason: Text | None = Field(default=None, description="Why it was shelved.")
    order: Text | None = Field(default=None, description="A power watch's shutdown order.")


class SavedState(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(description="The file format's version.")
    alarms: dict[Annotated[str, Field(max_length=500)], SavedAlarm] = Field(
        description="Alarm id -> its saved state."
    )


@dataclass(frozen=True, slots=True)
class StateDamaged:
    """Why the file could not be used, and where it went."""

    reason: str
    moved_to: Path | None  # None: it could not be moved either (it is overwritten later)


class AlarmStateFile:
    """The engine's snapshot on disk (``alarms.json`` in the state directory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.damage: StateDamaged | None = None

    def load(self) -> dict[str, Any] | None:
        """The saved snapshot, checked; None if there is none or it was moved aside."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._damaged(TEXT_UNREADABLE.format(error=exc.strerror or exc))
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            self._damaged(TEXT_NOT_JSON.format(error=exc))
            return None
        try:
            return SavedState.model_validate(data).model_dump(exclude_none=False)
        except ValidationError as exc:
            self._damaged("; ".join(describe_error(e) for e in exc.errors()[:3]))
            return None

    def save(self, snapshot: dict[str, Any]) -> None:
        """Replace the file atomically (blocking: call it off the event loop)."""
        data = json.dumps(snapshot, separators=(",", ":"), allow_nan=False)
        atomic_write(self.path, data.encode("utf-8"))

    def _damaged(self, reason: str) -> None:
        moved: Path | None = None
        if self.path.is_file():  # never a folder or a device that stands in its place
            try:
                moved = move_aside(self.path)
            except OSError as exc:
                log.error(TEXT_NOT_MOVED.format(path=self.path, error=exc))
        self.damage = StateDamaged(reason, moved)
        log.error(TEXT_DAMAGED.format(path=self.path, reason=reason, moved_to=moved))
