"""Inbound data checked against its class without pydantic: the daemon's side of a command.

What comes in while the daemon runs (platform commands, the crews' alarm actions, shutdown
orders, the saved alarm state) is declared as stdlib dataclasses whose annotations carry
pydantic ``Field``s inside ``Annotated``, the same way the outbound messages are
(``messages.py``): pydantic reads them when ``message_schemas`` generates the JSON Schemas and
in the tests; the daemon reads them here, with ``Field`` standing for a plain ``Rule``, and
checks a request the way pydantic's lax mode checks a Python dict (the same conversions, the
same error types, locations and context), so that ``describe_error`` words every refusal as
before. The daemon thus never imports pydantic for what it receives.

What is understood: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Literal``, unions of
them, ``dict[K, V]``, nested dataclasses; the rules ``ge``, ``gt``, ``le``, ``lt``,
``min_length``, ``max_length``, ``pattern``, ``allow_inf_nan``, ``strict``. A class says what
it does with unknown keys in ``__pydantic_config__`` (``extra``: ``forbid``, the default
here, or ``ignore``). What pydantic's validators did is plain code: ``__field_checks__``
(key -> a function of the checked value that raises ``ValueError`` to refuse it) and
``__post_init__`` (raises ``ValueError`` to refuse the whole request; it runs only when every
key is right).

Exceptions::

    Invalid      the data does not fit its class; ``errors`` as pydantic reports them
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

_UNSET: Any = object()


class Invalid(ValueError):
    """The data does not fit its class. ``errors`` are pydantic's ``ErrorDetails`` (type,
    loc, msg, input, ctx): give each to ``describe_error``. No retry helps."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.errors = errors


class Rule:
    """What a pydantic ``Field`` says, for the checks here (its description is not needed)."""

    __slots__ = (
        "allow_inf_nan",
        "default",
        "ge",
        "gt",
        "le",
        "lt",
        "max_length",
        "min_length",
        "pattern",
        "strict",
    )

    def __init__(
        self,
        default: Any = _UNSET,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
        allow_inf_nan: bool | None = None,
        strict: bool | None = None,
        **_documentation: Any,
    ) -> None:
        self.default = default
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.min_length, self.max_length = min_length, max_length
        self.pattern = pattern
        self.allow_inf_nan = allow_inf_nan
        self.strict = strict

    def merged(self, other: Rule) -> Rule:
        """This rule with what ``other`` sets on top."""
        rule = Rule()
        for name in Rule.__slots__:
            value = getattr(other, name)
            unset = value is None or value is _UNSET
            setattr(rule, name, getattr(self, name) if unset else value)
        return rule


NO_RULE = Rule()

# The names the annotations of checked classes use, as they are evaluated here.
NAMES: dict[str, Any] = {"Field": Rule}


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    name: str
    kind: Any  # the annotation, without its outer Annotated
    rule: Rule
    default: Any  # _UNSET: required


_KEYS: dict[type, tuple[_Key, ...]] = {}


def _keys(cls: type) -> tuple[_Key, ...]:
    """The keys of dataclass ``cls`` in order, their types evaluated once."""
    known = _KEYS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls, localns=NAMES, include_extras=True)
    keys = []
    for field in dataclasses.fields(cls):
        kind, rule = _split(hints[field.name])
        default = field.default
        if default is dataclasses.MISSING:
            default = _UNSET
        keys.append(_Key(field.name, kind, rule, default))
    _KEYS[cls] = out = tuple(keys)
    return out


def _split(kind: Any) -> tuple[Any, Rule]:
    """``Annotated[T, Field(...)]`` -> (T, its rule)."""
    rule = NO_RULE
    while typing.get_origin(kind) is typing.Annotated:
        for meta in kind.__metadata__:
            if isinstance(meta, Rule):
                rule = rule.merged(meta)
        kind = kind.__origin__
    return kind, rule


def parse(cls: type[T], data: Any) -> T:
    """``data`` (a dict from JSON) as an instance of dataclass ``cls``; Invalid if it does not
    fit, with every error pydantic would report."""
    errors: list[dict[str, Any]] = []
    value = _model(cls, data, (), errors)
    if errors:
        raise Invalid(errors)
    return typing.cast(T, value)


def _error(
    errors: list[dict[str, Any]],
    kind: str,
    loc: tuple[Any, ...],
    msg: str,
    value: Any,
    **ctx: Any,
) -> None:
    error: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        error["ctx"] = ctx
    errors.append(error)


def _model(cls: type, data: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if not isinstance(data, Mapping):
        _error(
            errors,
            "model_type",
            loc,
            f"Input should be a valid dictionary or instance of {cls.__name__}",
            data,
            class_name=cls.__name__,
        )
        return None
    before = len(errors)
    values: dict[str, Any] = {}
    field_checks = getattr(cls, "__field_checks__", {})
    for key in _keys(cls):
        if key.name in data:
            given = len(errors)
            value = _value(key.kind, key.rule, data[key.name], (*loc, key.name), errors)
            check = field_checks.get(key.name)
            if check is not None and len(errors) == given:
                try:
                    value = check(value)
                except ValueError as exc:
                    _error(errors, "value_error", (*loc, key.name), f"Value error, {exc}", value)
            values[key.name] = value
        elif key.default is _UNSET:
            _error(errors, "missing", (*loc, key.name), "Field required", data)
    config = getattr(cls, "__pydantic_config__", {})
    if config.get("extra", "forbid") == "forbid":
        names = {key.name for key in _keys(cls)}
        for name, value in data.items():
            if name not in names:
                _error(
                    errors, "extra_forbidden", (*loc, name), "Extra inputs are not permitted", value
                )
    if len(errors) > before:
        return None
    try:
        return cls(**values)
    except ValueError as exc:
        _error(errors, "value_error", loc, f"Value error, {exc}", dict(data))
    return None


def _value(
    kind: Any, rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]
) -> Any:
    kind, inner = _split(kind)
    if inner is not NO_RULE:
        rule = rule.merged(inner)
    origin = typing.get_origin(kind)
    if origin is Union or origin is types.UnionType:
        return _union(typing.get_args(kind), rule, value, loc, errors)
    if origin is Literal:
        return _literal(typing.get_args(kind), value, loc, errors)
    if origin is dict:
        return _dict(typing.get_args(kind), value, loc, errors)
    if dataclasses.is_dataclass(kind):
        return _model(typing.cast(type, kind), value, loc, errors)
    check = _SCALARS.get(kind)
    if check is None:
        raise TypeError(f"checks: {kind!r} is not understood")
    return check(rule, value, loc, errors)


def _union(
    members: tuple[Any, ...],
    rule: Rule,
    value: Any,
    loc: tuple[Any, ...],
    errors: list[dict[str, Any]],
) -> Any:
    """pydantic's nullable and smart unions: None for an optional key; else the first member
    that takes the value as it is, then the first that takes it converted."""
    if type(None) in members:
        if value is None:
            return None
        members = tuple(m for m in members if m is not type(None))
    if len(members) == 1:
        return _value(members[0], rule, value, loc, errors)
    for member in members:  # strict: the value's own type
        if _SCALARS.get(member) is not None and type(value) is member:
            return _value(member, rule, value, loc, errors)
    tried: list[dict[str, Any]] = []
    for member in members:
        attempt: list[dict[str, Any]] = []
        out = _value(member, rule, value, (*loc, _tag(member)), attempt)
        if not attempt:
            return out
        tried.extend(attempt)
    errors.extend(tried)
    return None


def _tag(member: Any) -> str:
    return getattr(member, "__name__", str(member))


def _literal(
    allowed: tuple[Any, ...], value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]
) -> Any:
    for choice in allowed:  # as pydantic's lax mode: 1 takes True and 1.0, never "1"
        number = isinstance(choice, int | float)
        if value == choice and isinstance(value, int | float) == number:
            return choice
    shown = [repr(choice) for choice in allowed]
    expected = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    _error(errors, "literal_error", loc, f"Input should be {expected}", value, expected=expected)
    return None


def _dict(
    args: tuple[Any, ...], value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]
) -> Any:
    if not isinstance(value, dict):
        _error(errors, "dict_type", loc, "Input should be a valid dictionary", value)
        return None
    key_kind, item_kind = args
    out = {}
    for key, item in value.items():
        checked_key = _value(key_kind, NO_RULE, key, (*loc, key, "[key]"), errors)
        out[checked_key] = _value(item_kind, NO_RULE, item, (*loc, key), errors)
    return out


def _text(rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if not isinstance(value, str):
        _error(errors, "string_type", loc, "Input should be a valid string", value)
        return None
    if rule.min_length is not None and len(value) < rule.min_length:
        _error(
            errors,
            "string_too_short",
            loc,
            f"String should have at least {rule.min_length} "
            f"character{'' if rule.min_length == 1 else 's'}",
            value,
            min_length=rule.min_length,
        )
        return None
    if rule.max_length is not None and len(value) > rule.max_length:
        _error(
            errors,
            "string_too_long",
            loc,
            f"String should have at most {rule.max_length} "
            f"character{'' if rule.max_length == 1 else 's'}",
            value,
            max_length=rule.max_length,
        )
        return None
    if rule.pattern is not None and re.search(rule.pattern, value) is None:
        _error(
            errors,
            "string_pattern_mismatch",
            loc,
            f"String should match pattern '{rule.pattern}'",
            value,
            pattern=rule.pattern,
        )
        return None
    return value


def _integer(rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    number: int | None = None
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        number = int(value)
    elif rule.strict:
        pass
    elif isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            kind = "finite_number" if not math.isfinite(value) else "int_from_float"
            msg = (
                "Input should be a finite number"
                if kind == "finite_number"
                else "Input should be a valid integer, got a number with a fractional part"
            )
            _error(errors, kind, loc, msg, value)
            return None
        number = int(value)
    elif isinstance(value, str):
        number = _int_of_text(value)
        if number is None:
            _error(
                errors,
                "int_parsing",
                loc,
                "Input should be a valid integer, unable to parse string as an integer",
                value,
            )
            return None
    if number is None:
        _error(errors, "int_type", loc, "Input should be a valid integer", value)
        return None
    return _bounded(rule, number, value, loc, errors)


def _int_of_text(text: str) -> int | None:
    text = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[+-]?[0-9]+\.0*", text):
        return int(text.split(".")[0])
    return None


def _number(rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    number: float | None = None
    if isinstance(value, float):
        number = value
    elif isinstance(value, int) and not (rule.strict and isinstance(value, bool)):
        try:
            number = float(value)
        except OverflowError:
            number = None
    elif isinstance(value, str) and not rule.strict:
        try:
            number = float(value.strip())
        except ValueError:
            _error(
                errors,
                "float_parsing",
                loc,
                "Input should be a valid number, unable to parse string as a number",
                value,
            )
            return None
    if number is None:
        _error(errors, "float_type", loc, "Input should be a valid number", value)
        return None
    if rule.allow_inf_nan is False and not math.isfinite(number):
        _error(errors, "finite_number", loc, "Input should be a finite number", value)
        return None
    return _bounded(rule, number, value, loc, errors, as_float=True)


def _bounded(
    rule: Rule,
    number: float,
    value: Any,
    loc: tuple[Any, ...],
    errors: list[dict[str, Any]],
    *,
    as_float: bool = False,
) -> Any:
    def shown(bound: float) -> float:
        return float(bound) if as_float else bound

    for name, bound, holds, words, kind in (
        ("gt", rule.gt, operator.gt, "greater than", "greater_than"),
        ("ge", rule.ge, operator.ge, "greater than or equal to", "greater_than_equal"),
        ("lt", rule.lt, operator.lt, "less than", "less_than"),
        ("le", rule.le, operator.le, "less than or equal to", "less_than_equal"),
    ):
        if bound is not None and not holds(number, bound):
            _error(
                errors,
                kind,
                loc,
                f"Input should be {words} {_plain(bound)}",
                value,
                **{name: shown(bound)},
            )
            return None
    return number


def _plain(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _boolean(rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if isinstance(value, bool):
        return value
    if not rule.strict:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "yes", "on", "1", "t", "y"):
                return True
            if text in ("false", "no", "off", "0", "f", "n"):
                return False
            _error(
                errors,
                "bool_parsing",
                loc,
                "Input should be a valid boolean, unable to interpret input",
                value,
            )
            return None
    _error(errors, "bool_type", loc, "Input should be a valid boolean", value)
    return None


def _none(rule: Rule, value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if value is not None:
        _error(errors, "none_required", loc, "Input should be None", value)
    return None


_SCALARS: dict[Any, Any] = {
    str: _text,
    int: _integer,
    float: _number,
    bool: _boolean,
    type(None): _none,
}


def as_dict(instance: Any) -> dict[str, Any]:
    """A checked instance as a plain dict (nested dataclasses too), as it was given."""
    return dataclasses.asdict(instance)
