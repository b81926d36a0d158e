"""The daemon's config, validated in a short-lived process of its own.

Validating the whole file builds pydantic-core's validator for every section, about 1 MB of
the daemon's resident memory, kept for the daemon's lifetime although it validates one file
at start and on a reload (docs/performance.md, "Issue 10: memory, third pass"). A child
process (the same interpreter, the same import path, the same language) reads and validates
the file with ``load_config`` and hands the validated ``GatewayConfig`` back pickled; the
daemon only unpickles it, which builds no validator. Config errors come back as the same
``ConfigError``, worded by the same code. If the child cannot start, dies, or answers
something else, the daemon validates the file itself (logged; it costs that megabyte and
nothing else), so a start never fails for the child's sake.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from gettext import gettext as _
from pathlib import Path

from watchpost.config.base import ConfigError
from watchpost.config.file import GatewayConfig, load_config

log = logging.getLogger(__name__)

# A 5,000-point config takes a few seconds on a Raspberry Pi 3; systemd allows 120 s to start.
CHILD_TIMEOUT_S = 60.0

# Runs in the child: the parent's import path, then the same loader.
CHILD_CODE = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[1])\n"
    "from watchpost.config.isolated import child_main\n"
    "child_main(sys.argv[2])\n"
)

TEXT_NO_CHILD = _(
    "could not validate the config in a separate process ({error}); validating it in the "
    "daemon itself, which keeps more memory and changes nothing else"
)


def load_config_isolated(path: Path) -> GatewayConfig:
    """``load_config(path)`` done in a child process; ConfigError as ``load_config`` raises it."""
    command = [
        sys.executable,
        *_interpreter_flags(),
        "-c",
        CHILD_CODE,
        json.dumps(sys.path),
        str(path),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=CHILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return _in_process(path, str(exc))
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return _in_process(path, f"exit status {done.returncode}: {' '.join(tail)}")
    try:
        result = pickle.loads(done.stdout)  # our own child, through a private pipe
    except Exception as exc:  # any unpickling failure: validate here instead
        return _in_process(path, repr(exc))
    if isinstance(result, GatewayConfig):
        return result
    if isinstance(result, list) and all(isinstance(line, str) for line in result):
        raise ConfigError(path, result)
    return _in_process(path, f"unexpected answer {type(result).__name__}")


def child_main(path_text: str) -> None:
    """The child: validate the file, write the config or the list of errors, pickled."""
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


def _interpreter_flags() -> list[str]:
    """The flags that make the child load the same byte code (-O, -OO) and ignore PYTHON*
    variables (-I: the import path is the parent's, given explicitly)."""
    flags = ["-I"]
    if sys.flags.optimize:
        flags.append("-" + "O" * sys.flags.optimize)
    return flags
