"""The config layer's side of the daemon's config validated in a child process.

``config_child.load`` (no pydantic) starts the child and takes its answer; the child runs
``child_main``: ``load_config`` (pydantic), then ``plain``, a copy of the validated config
made of the plain classes of ``watchpost.settings`` (every model is a subclass of its plain
class, so the copy keeps every field and the methods), pickled. Unpickling it needs neither
pydantic nor this package. ``validate_here`` is the daemon's fallback when the child cannot
run (docs/performance.md, "memory, fourth pass").
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from functools import cache
from gettext import gettext as _
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from watchpost import settings
from watchpost.config.base import ConfigError
from watchpost.config.file import GatewayConfig, load_config

log = logging.getLogger(__name__)

TEXT_NO_CHILD = _(
    "could not validate the config in a separate process ({error}); validating it in the "
    "daemon itself, which keeps more memory and changes nothing else"
)


def child_main(path_text: str) -> None:
    """The child: validate the file; write the plain config or the list of errors, and the
    versions of the installed libraries (``version.libraries``: ``importlib.metadata`` is
    loaded here anyway, the daemon need not load it), pickled as a pair."""
    import pickle  # noqa: PLC0415 - the child's alone

    from watchpost.version import libraries  # noqa: PLC0415 - the child's alone

    path = Path(path_text)
    result: settings.GatewayConfig | list[str]
    try:
        result = plain_config(load_config(path))
    except ConfigError as exc:
        result = exc.errors
    answer = (result, libraries())
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()


def validate_here(path: Path, error: str) -> settings.GatewayConfig:
    """The daemon's fallback: validate in this process (it loads pydantic), say why."""
    log.warning(TEXT_NO_CHILD.format(error=error))
    return plain_config(load_config(path))


def plain_config(config: GatewayConfig) -> settings.GatewayConfig:
    """The validated config as plain objects."""
    copy = plain(config)
    assert isinstance(copy, settings.GatewayConfig)
    return copy


def plain(value: Any) -> Any:
    """``value`` with every config model in it replaced by its plain class's copy."""
    if isinstance(value, BaseModel):
        cls = plain_class(type(value))
        return cls(**{f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(cls)})
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


@cache
def plain_class(model: type[BaseModel]) -> Any:
    """The plain class a config model extends (``config.points.PointConfig`` ->
    ``settings.PointConfig``); TypeError for a model that has none."""
    for cls in model.__mro__:
        if "__dataclass_fields__" in vars(cls) and not issubclass(cls, BaseModel):
            return cls
    raise TypeError(f"{model.__name__} has no plain class in watchpost.settings")
