"""Alarm rules, the `alarms` list of a point: one pydantic class per kind, keyed by `kind`.

Also the shipped rule sets (``drivers/profiles/NAME.toml``) that a point takes with
``rules_from``, and how a point's own rules are merged with them. The engine that evaluates
the rules is ``watchpost.alarms``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from functools import cache
from gettext import gettext as _
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from watchpost import settings
from watchpost.config.base import NAME_PATTERN
from watchpost.settings import Level

TEXT_DEADBAND = _("deadband must be below rate")
TEXT_RANGE = _("range: min must be below max")
TEXT_RESERVED = _("rule name {name!r} is reserved")
TEXT_NO_RULE_SET = _("no rule set {name!r} (known: {known})")
TEXT_BAD_RULE_SET = _("rule set {name!r} is broken: {error}")
TEXT_UNIT_MISMATCH = _("rule set {name!r} is for {expected!r}, the point is in {unit!r}")
TEXT_DUPLICATE_RULE = _("rule name {name!r} is used more than once on this point")
TEXT_NEEDS_RANGE = _("out_of_range needs a range: give the rule or the point one")

RESERVED_RULE_NAMES = frozenset({"test", "output_fault", "state_damaged"})

__all__ = ["Level"]  # the rule levels, from watchpost.settings


# -- rules: one pydantic class per kind, a discriminated union keyed by `kind` ----------------


class Rule(BaseModel, settings.Rule):
    """What every rule has: its name, level, delays, latching and shelving."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(
        default="",
        pattern=r"^$|" + NAME_PATTERN,
        description=(
            "Rule id within its point (alarm id = point/name). Default: kind_level for high, "
            "low and rate_of_rise, the kind for sensor faults."
        ),
    )
    level: Level = Field(default="alarm", description="prealarm, alarm, critical or fault.")
    on_delay: float = Field(
        default=0.0,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description=("Seconds the condition must hold (by sample time) before the alarm raises."),
    )
    off_delay: float = Field(
        default=0.0,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description=("Seconds the condition must stay normal before the alarm clears."),
    )
    latch: bool = Field(
        default=False,
        description=("Stay raised after the condition returns to normal until acknowledged."),
    )
    shelvable: bool = Field(default=True, description="Crews may shelve this alarm.")
    max_shelve: float = Field(
        default=8 * 3600,
        gt=0,
        le=7 * 86400,
        description=("Longest shelf in seconds (the expiry of a shelf is mandatory)."),
    )
    description: str = Field(default="", description="Free text for people.")

    @model_validator(mode="after")
    def _name(self) -> Rule:
        if not self.name:
            object.__setattr__(self, "name", self.default_name())  # frozen: set once here
        if self.name in RESERVED_RULE_NAMES:
            raise ValueError(TEXT_RESERVED.format(name=self.name))
        return self


class ThresholdRule(Rule, settings.ThresholdRule):
    """high: raise at value >= threshold, clear below threshold - deadband; low: mirrored."""

    kind: Literal["high", "low"] = Field(description="high: raise above; low: raise below.")
    threshold: float = Field(allow_inf_nan=False, description="Value at which the alarm raises.")
    deadband: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description=("How far back past the threshold the value must go to clear."),
    )


class RateOfRiseRule(Rule, settings.RateOfRiseRule):
    """Raise when the value rose by ``rate`` per minute over the last ``window`` seconds."""

    kind: Literal["rate_of_rise"]
    rate: float = Field(
        gt=0,
        allow_inf_nan=False,
        description=(
            "Units per minute: the rise from the lowest value in the window, per minute of window."
        ),
    )
    window: float = Field(
        default=60.0, gt=0, le=86400, allow_inf_nan=False, description=("Seconds looked back.")
    )
    deadband: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description=("Units per minute below rate at which the alarm clears."),
    )

    @model_validator(mode="after")
    def _deadband_below_rate(self) -> RateOfRiseRule:
        if self.deadband >= self.rate:
            raise ValueError(TEXT_DEADBAND)
        return self


class ProductionRule(Rule, settings.ProductionRule):
    """Power watch: the site draws ``threshold`` or more (it is producing) while an ordered
    shutdown is in force. Put it on a power point (kW) or an energy-rate point."""

    kind: Literal["production_during_shutdown"]
    threshold: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="Power at or above which the site counts as producing: a margin above "
        "its idle load during a shutdown (docs/alarm-rules.md).",
    )
    deadband: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="How far below the threshold the power must fall to clear.",
    )


class FaultRule(Rule, settings.FaultRule):
    level: Level = Field(default="fault", description="prealarm, alarm, critical or fault.")


class OutOfRangeRule(FaultRule, settings.OutOfRangeRule):
    """Sensor fault: the value lies outside the plausible range."""

    kind: Literal["out_of_range"]
    range: tuple[float, float] | None = Field(
        default=None, description=("[min, max]; default: the point's range.")
    )

    @model_validator(mode="after")
    def _ordered(self) -> OutOfRangeRule:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(TEXT_RANGE)
        return self


class StuckRule(FaultRule, settings.StuckRule):
    """Sensor fault: good values stayed within ``tolerance`` of each other for ``duration``."""

    kind: Literal["stuck"]
    duration: float = Field(
        gt=0,
        le=30 * 86400,
        allow_inf_nan=False,
        description=("Seconds without movement after which the sensor counts as stuck."),
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description=("Largest spread of values that still counts as not moving."),
    )


class CommLossRule(FaultRule, settings.CommLossRule):
    """Sensor fault: the device does not answer (`comm` samples)."""

    kind: Literal["comm_loss"]
    stale: bool = Field(default=True, description="Count `stale` samples as lost too.")


class InvalidRule(FaultRule, settings.InvalidRule):
    """Sensor fault: the device answered with an exception or a value flagged invalid."""

    kind: Literal["invalid"]


class OutputFaultRule(FaultRule, settings.OutputFaultRule):
    """A local output that could not be written or verified (made by the engine, not config)."""

    kind: Literal["output_fault"] = "output_fault"

    @model_validator(mode="after")
    def _name(self) -> OutputFaultRule:  # the reserved name is its own
        if not self.name:
            object.__setattr__(self, "name", "output_fault")
        return self


class StateDamagedRule(FaultRule, settings.StateDamagedRule):
    """The gateway's alarm state file could not be used and was moved aside (made by the
    engine, not config): latched, so that it stays raised until someone acknowledges it."""

    kind: Literal["state_damaged"] = "state_damaged"
    latch: bool = Field(default=True, description="Stays raised until acknowledged.")
    shelvable: bool = Field(default=False, description="A gateway fault is not shelved.")

    @model_validator(mode="after")
    def _name(self) -> StateDamagedRule:  # the reserved name is its own
        if not self.name:
            object.__setattr__(self, "name", "state_damaged")
        return self


class GatewayFaultRule(FaultRule, settings.GatewayFaultRule):
    """One of the gateway's own faults that comes and goes (made by the engine, not config):
    raised while it lasts, cleared when it is over; never shelved."""

    shelvable: bool = Field(default=False, description="A gateway fault is not shelved.")

    @model_validator(mode="after")
    def _name(self) -> GatewayFaultRule:  # the reserved name is its kind
        if not self.name:
            object.__setattr__(self, "name", self.default_name())
        return self


class DiskFullRule(GatewayFaultRule, settings.DiskFullRule):
    """The store's disk is full: telemetry is not stored, alarms use the reserved room."""

    kind: Literal["disk_full"] = "disk_full"


class StateUnsavedRule(GatewayFaultRule, settings.StateUnsavedRule):
    """The alarm state file cannot be written (a full disk, an I/O error); retried."""

    kind: Literal["state_unsaved"] = "state_unsaved"


RULE_CLASSES: tuple[type[Rule], ...] = (
    ThresholdRule,
    ProductionRule,
    RateOfRiseRule,
    OutOfRangeRule,
    StuckRule,
    CommLossRule,
    InvalidRule,
)
RULE_KINDS = frozenset(
    {
        "high",
        "low",
        "rate_of_rise",
        "out_of_range",
        "stuck",
        "comm_loss",
        "invalid",
        "production_during_shutdown",
    }
)

AlarmRule = Annotated[
    ThresholdRule
    | RateOfRiseRule
    | OutOfRangeRule
    | StuckRule
    | CommLossRule
    | InvalidRule
    | ProductionRule,
    Field(discriminator="kind"),
]


# -- ready-made rule sets (drivers/profiles/*.toml) ---------------------------------------------


class RuleSet(BaseModel):
    """A profile file: rules for one hazard, with where their numbers come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    description: str = Field(description="What the rule set is for.")
    unit: str = Field(default="", description="Engineering unit the thresholds are in.")
    sources: list[str] = Field(default_factory=list, description="Where each number comes from.")
    alarms: list[AlarmRule] = Field(min_length=1, description="The rules.")


def rule_set_names() -> list[str]:
    """Names of the shipped rule sets."""
    folder = resources.files("watchpost.drivers").joinpath("profiles")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


@cache
def load_rule_set(name: str) -> RuleSet:
    """The shipped rule set ``name``; ValueError names the known ones."""
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(TEXT_NO_RULE_SET.format(name=name, known=", ".join(rule_set_names())))
    entry = resources.files("watchpost.drivers").joinpath("profiles", f"{name}.toml")
    if not entry.is_file():
        raise ValueError(TEXT_NO_RULE_SET.format(name=name, known=", ".join(rule_set_names())))
    try:
        return RuleSet.model_validate(tomllib.loads(entry.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(TEXT_BAD_RULE_SET.format(name=name, error=exc)) from exc


def resolve_rules(
    rules: Sequence[Rule],
    *,
    rules_from: str | None,
    unit: str,
    point_range: tuple[float, float] | None,
) -> list[Rule]:
    """A point's rules: its rule set's (unless overridden by name) then its own.

    Fills the range of out_of_range rules from the point; raises ValueError on a clash.
    """
    merged: list[Rule] = []
    if rules_from is not None:
        rule_set = load_rule_set(rules_from)
        if unit and rule_set.unit and _unit_key(unit) != _unit_key(rule_set.unit):
            raise ValueError(
                TEXT_UNIT_MISMATCH.format(name=rules_from, expected=rule_set.unit, unit=unit)
            )
        own = {rule.name for rule in rules}
        merged.extend(rule for rule in rule_set.alarms if rule.name not in own)
    names: set[str] = set()
    for rule in rules:
        if rule.name in names:
            raise ValueError(TEXT_DUPLICATE_RULE.format(name=rule.name))
        names.add(rule.name)
    merged.extend(rules)
    resolved: list[Rule] = []
    for rule in merged:
        if isinstance(rule, OutOfRangeRule) and rule.range is None:
            if point_range is None:
                raise ValueError(TEXT_NEEDS_RANGE)
            resolved.append(rule.model_copy(update={"range": tuple(point_range)}))
        else:
            resolved.append(rule)
    return resolved


def _unit_key(unit: str) -> str:
    return "".join(unit.split()).lower()
