"""The JSON Schemas of the MQTT contract, generated from the message and command classes.

A tool for development (``scripts/schemas``, ``python -m watchpost.message_schemas``) and the
tests, never imported by the daemon: it needs pydantic, which evaluates the annotations of
``messages.py`` (stdlib dataclasses and TypedDicts whose keys carry pydantic ``Field``s for
type checkers) and of the command models in ``commands.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, SkipJsonSchema
from pydantic_core import core_schema

from watchpost import messages
from watchpost.messages import (
    ABSENT,
    SCHEMA_BASE,
    SCHEMA_DIALECT,
    SCHEMA_FOLDER,
    STREAMS,
    Envelope,
    Message,
    StoredEnvelope,
)

# The modules of the classes import these names for type checkers only (the daemon never
# loads pydantic); pydantic resolves a class's annotations in its module's namespace, so they
# are put there first.
PYDANTIC_NAMES = {"Field": Field, "SkipJsonSchema": SkipJsonSchema}


def _resolvable(kind: type) -> type:
    for cls in kind.__mro__:
        module = sys.modules.get(cls.__module__)
        if module is not None and module.__name__.startswith("watchpost"):
            vars(module).update(PYDANTIC_NAMES)
    return kind


_resolvable(messages.Message)


class _NoFieldTitles(GenerateJsonSchema):
    """Schemas for people: a field's name is its title, so none is repeated; a key whose
    default is "absent" (not sent unless given) has no default."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> Any:
        if schema.get("default") is ABSENT:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _json_schema(kind: type) -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(_resolvable(kind)).json_schema(
        schema_generator=_NoFieldTitles
    )
    return schema


def stream_schema(model: type[Message]) -> dict[str, Any]:
    """The JSON Schema of a stream's messages: its envelope, then its body's keys.

    The body forbids keys it does not know; the schema allows them, because the contract
    lets new optional keys appear in v1 (platforms ignore what they do not know).
    """
    envelope = StoredEnvelope if model.stored else Envelope
    head = _json_schema(envelope)
    body = _json_schema(model.schema_type())
    properties = dict(head["properties"])
    properties["stream"] = {
        "const": model.stream,
        "description": properties["stream"]["description"],
    }
    properties.update(body["properties"])
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}{model.stream}.json",
        "title": f"watchpost/v1/{{site}}/{{gateway}}/{model.stream}",
        "description": body.get("description", ""),
        "type": "object",
        "required": [*head["required"], *body.get("required", [])],
        "properties": properties,
        "additionalProperties": True,
    }
    if model.stored:
        schema["dependentRequired"] = {"boot_id": ["clock"]}
    if "$defs" in body:
        schema["$defs"] = body["$defs"]
    return schema


def command_schema(name: str, model: type) -> dict[str, Any]:
    """The JSON Schema of a command's request."""
    schema: dict[str, Any] = TypeAdapter(_resolvable(model)).json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}cmd-{name}.json",
        "title": schema.pop("title"),
    } | schema


def schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by file name: the streams', then the commands'."""
    from watchpost.commands import COMMANDS  # noqa: PLC0415 - the daemon's side, only here

    out = {f"{model.stream}.json": stream_schema(model) for model in STREAMS.values()}
    out.update(
        {f"cmd-{name}.json": command_schema(name, model) for name, model in COMMANDS.items()}
    )
    return out


def render(schema: dict[str, Any]) -> str:
    """A schema as it is committed: indented by two, UTF-8, one newline at the end."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m watchpost.message_schemas [--check] [FOLDER]``: write (or compare) them."""
    parser = argparse.ArgumentParser(description="Write the JSON Schemas of the MQTT contract.")
    parser.add_argument("folder", nargs="?", type=Path, default=SCHEMA_FOLDER)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name, schema in schemas().items():
        path = args.folder / name
        text = render(schema)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "differ from the models" if args.check else "written"
    for name in stale:
        print(f"{args.folder / name}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
