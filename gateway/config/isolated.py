"""The daemon's config, validated in a short-lived process of its own.

Validating the whole file builds pydantic-core's validator for every section: 0.6 MB of the
daemon's resident memory on the demo site, 0.9 MB at 1,000 points, kept for its lifetime
although it validates one file at start and on a reload (docs/performance.md, "Issue 10:
memory, third pass"). A child process (the same interpreter, the same import path, the same
language; ``config_child``, which `watchpost run` starts before its own imports, so that the
start takes no longer) reads and validates the file with ``load_config`` and hands the
validated ``GatewayConfig`` back pickled; the daemon only unpickles it, which builds no
validator. Config errors come back as the same ``ConfigError``, worded by the same code. If
the child cannot start, dies, or answers something else, the daemon validates the file
itself (logged; it costs that memory and nothing else), so a start never fails for the
child's sake.
"""

from __future__ import annotations

import _pickle  # pickle's C half: the daemon only loads; `pickle` itself is 0.2 MB of code
import logging
import sys
from gettext import gettext as _
from pathlib import Path

from watchpost import config_child
from watchpost.config.base import ConfigError
from watchpost.config.file import GatewayConfig, load_config

log = logging.getLogger(__name__)

# A 5,000-point config takes a few seconds on a Raspberry Pi 3; systemd allows 120 s to start.
CHILD_TIMEOUT_S = 60.0

TEXT_NO_CHILD = _(
    "could not validate the config in a separate process ({error}); validating it in the "
    "daemon itself, which keeps more memory and changes nothing else"
)


def load_config_isolated(path: Path) -> GatewayConfig:
    """``load_config(path)`` done in a child process (the one `watchpost run` started early
    for this file, else a new one); ConfigError as ``load_config`` raises it."""
    child = config_child.take(path)
    answer = child.answer(CHILD_TIMEOUT_S)
    if answer is None:
        return _in_process(path, child.failure)
    try:
        result = _pickle.loads(answer)  # our own child, through a private pipe
    except Exception as exc:  # any unpickling failure: validate here instead
        return _in_process(path, repr(exc))
    if isinstance(result, GatewayConfig):
        return result
    if isinstance(result, list) and all(isinstance(line, str) for line in result):
        raise ConfigError(path, result)
    return _in_process(path, f"unexpected answer {type(result).__name__}")


def child_main(path_text: str) -> None:
    """The child: validate the file, write the config or the list of errors, pickled."""
    import pickle  # noqa: PLC0415 - the child's alone

    path = Path(path_text)
    result: GatewayConfig | list[str]
    try:
        result = load_config(path)
    except ConfigError as exc:
        result = exc.errors
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()


def _in_process(path: Path, error: str) -> GatewayConfig:
    log.warning(TEXT_NO_CHILD.format(error=error))
    return load_config(path)
