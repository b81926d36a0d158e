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

import dataclasses
import json
import logging
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from watchpost.checks import Invalid, parse
from watchpost.error_text import describe_error
from watchpost.files import atomic_write
from watchpost.sqlite_files import move_aside

if TYPE_CHECKING:
    from pydantic import Field  # the rules' declaration; read by checks, and by pydantic

log = logging.getLogger(__name__)

STATE_VERSION = 1

TEXT_DAMAGED = _("alarm state {path} cannot be used ({reason}); moved aside to {moved_to}")
TEXT_NOT_MOVED = _("cannot move {path} aside ({error}); it is replaced at the next save")
TEXT_NOT_JSON = _("not JSON: {error}")
TEXT_UNREADABLE = _("cannot read it: {error}")


@dataclass(frozen=True, kw_only=True)
class SavedAlarm:
    """One alarm's saved state (as ``AlarmEngine.snapshot()`` writes it); keys it does not
    know are ignored."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "ignore"}

    raised: Annotated[bool, Field(strict=True, description="Raised on the stream.")] = False
    cond: Annotated[bool, Field(strict=True, description="The condition, after its delays.")] = (
        False
    )
    raised_ts: Annotated[
        int | None, Field(strict=True, ge=0, description="When it was raised, UTC epoch ms.")
    ] = None
    acked: Annotated[bool, Field(strict=True, description="Acknowledged.")] = False
    acked_by: Annotated[str | None, Field(max_length=10_000, description="Who acknowledged.")] = (
        None
    )
    acked_ts: Annotated[
        int | None,
        Field(strict=True, ge=0, description="When it was acknowledged, UTC epoch ms."),
    ] = None
    acked_note: Annotated[
        str | None, Field(max_length=10_000, description="The acknowledgement's note.")
    ] = None
    value: Annotated[
        float | None,
        Field(allow_inf_nan=False, description="The last value the rule compared."),
    ] = None
    last_ts: Annotated[
        int | None,
        Field(strict=True, ge=0, description="Stamp of its last sample, UTC epoch ms."),
    ] = None
    shelved_until: Annotated[
        int | None,
        Field(strict=True, ge=0, description="A shelf's end, wall time, UTC epoch ms."),
    ] = None
    shelved_by: Annotated[str | None, Field(max_length=10_000, description="Who shelved.")] = None
    shelved_reason: Annotated[
        str | None, Field(max_length=10_000, description="Why it was shelved.")
    ] = None
    order: Annotated[
        str | None, Field(max_length=10_000, description="A power watch's shutdown order.")
    ] = None


@dataclass(frozen=True, kw_only=True)
class SavedState:
    """The whole file."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    version: Annotated[Literal[1], Field(description="The file format's version.")]
    alarms: Annotated[
        dict[Annotated[str, Field(max_length=500)], SavedAlarm],
        Field(description="Alarm id -> its saved state."),
    ]


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
            return dataclasses.asdict(parse(SavedState, data))
        except Invalid as exc:
            self._damaged("; ".join(describe_error(e) for e in exc.errors[:3]))
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
