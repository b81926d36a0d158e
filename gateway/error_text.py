"""Validation errors said the way people read them: key path, message, the value given.

pydantic's error details (``type``, ``loc``, ``msg``, ``input``, ``ctx``), from pydantic itself
(the config layer) or from ``checks`` (what the daemon receives, checked without pydantic),
worded once, here. This module imports no pydantic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from gettext import gettext as _
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

# pydantic's error types, said the way an installer reads them
_PLAIN_MESSAGES = {
    "missing": _("is required"),
    "extra_forbidden": _("is not a known key"),
    "float_parsing": _("must be a number"),
    "float_type": _("must be a number"),
    "finite_number": _("must be a finite number"),
    "int_parsing": _("must be a whole number"),
    "int_type": _("must be a whole number"),
    "int_from_float": _("must be a whole number"),
    "string_type": _("must be a text string"),
    "bool_type": _("must be true or false"),
    "bool_parsing": _("must be true or false"),
    "list_type": _("must be a list"),
    "model_type": _("must be a table"),
    "model_attributes_type": _("must be a table"),
    "less_than_equal": _("must be at most {le}"),
    "less_than": _("must be below {lt}"),
    "greater_than_equal": _("must be at least {ge}"),
    "greater_than": _("must be above {gt}"),
    "literal_error": _("must be one of {expected}"),
    "enum": _("must be one of {expected}"),
    "string_pattern_mismatch": _("may hold only letters, digits, '_', '.' and '-'"),
    "too_short": _("must have at least {min_length} item(s)"),
    "too_long": _("must have at most {max_length} item(s)"),
    "string_too_short": _("must have at least {min_length} character(s)"),
    "string_too_long": _("must have at most {max_length} character(s)"),
    "tuple_type": _("must be a list"),
    "dict_type": _("must be a table"),
    "union_tag_invalid": _("{discriminator} must be one of {expected_tags} (got {tag!r})"),
    "union_tag_not_found": _("{discriminator} is required"),
}
TEXT_GOT = _("{message} (got {value})")
TEXT_OR = _("{choices} or {last}")
TEXT_A_TABLE = _("a table")


def describe_error(
    error: ErrorDetails | Mapping[str, Any], union_tags: Collection[str] = ()
) -> str:
    """``devices[1].points[3].scale: must be a number (got 'abc')``.

    ``union_tags`` are the discriminator values pydantic puts into an error's location for
    a member of a tagged union; they are not keys in the file and are left out of the path.
    """
    path = _key_path(error["loc"], union_tags)
    kind = error["type"]
    template = _PLAIN_MESSAGES.get(kind)
    context = dict(error.get("ctx", {}))
    if isinstance(context.get("expected"), str) and " or " in context["expected"]:
        choices, _or, last = context["expected"].rpartition(" or ")  # pydantic's English "or"
        context["expected"] = TEXT_OR.format(choices=choices, last=last)
    try:
        message = template.format(**context) if template else None
    except (KeyError, IndexError):
        message = None
    message = message or _strip_prefix(error["msg"])
    # a rule on a whole table names the table's path; its input is the whole table
    if (
        kind not in ("missing", "extra_forbidden", "model_type")
        and "input" in error
        and not isinstance(error["input"], dict)
    ):
        message = TEXT_GOT.format(message=message, value=_show(error["input"]))
    return f"{path}: {message}" if path else message


def _key_path(loc: tuple[int | str, ...], union_tags: Collection[str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in union_tags or item.startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _strip_prefix(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[:1].lower() + message[1:]


_URL_PASSWORD = re.compile(r"(://[^/@:]*):[^/@]*@")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return TEXT_A_TABLE
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    # a password in a URL is never shown, nor in a list of URLs ([uplink] backup_brokers)
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(r"\1:***@", value)
    elif isinstance(value, list):
        value = [_URL_PASSWORD.sub(r"\1:***@", v) if isinstance(v, str) else v for v in value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
