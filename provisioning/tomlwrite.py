"""Write the TOML that provisioning generates (the standard library only reads TOML).

Covers what a gateway config holds: tables, arrays of tables, strings, numbers, booleans
and arrays of those. Scalars of a table come before its sub-tables, as TOML requires.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(document: Mapping[str, Any]) -> str:
    """``document`` as TOML text."""
    lines: list[str] = []
    _table(document, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(item, Mapping) for item in value)
    )


def _table(table: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    tables = []
    for key, value in table.items():
        if value is None:
            continue  # TOML has no null: an absent key means the default
        if isinstance(value, Mapping) or _is_table_array(value):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {value_text(value)}")
    for key, value in tables:
        sub = (*path, _key(key))
        if isinstance(value, Mapping):
            lines += ["", f"[{'.'.join(sub)}]"]
            _table(value, sub, lines)
        else:
            for item in value:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                _table(item, sub, lines)


def value_text(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no place for {value!r} here")
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, Sequence):
        if any(isinstance(item, Mapping) for item in value):
            raise ValueError("an array mixing tables and values cannot be written")
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
