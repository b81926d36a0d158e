"""How the commands print: aligned tables for people, strict JSON for scripts.

Tables are plain columns separated by two spaces (no library: a dozen lines, no box
characters that a serial console or a log would garble). JSON is strict (RFC 8259): a
value that is not a finite number (a float32 register holding NaN, say) becomes ``null``,
never ``NaN`` or ``Infinity``, which most JSON parsers refuse.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Sequence
from typing import Any


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    """``text`` padded with spaces to ``columns`` terminal columns."""
    return text + " " * max(0, columns - width(text))


def rpad(text: str, columns: int) -> str:
    """``text`` right-aligned in ``columns`` terminal columns."""
    return " " * max(0, columns - width(text)) + text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell on a terminal."""
    widths = [max([width(h), *(width(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(pad(cell, columns) for cell, columns in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print(table(headers, rows))


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON of ``value``; objects JSON does not know are written as strings."""
    return json.dumps(
        strict(value), indent=indent, ensure_ascii=False, allow_nan=False, default=str
    )


def print_json(value: Any, *, indent: int | None = 2) -> None:
    print(dumps(value, indent=indent), flush=True)
