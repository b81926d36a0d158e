"""The daemon's config, validated in a short-lived child process, and the child itself.

Validating `gateway.toml` takes pydantic (8.3 MB of library, about 2 MB of validators), and
a daemon that imports it keeps it for its lifetime. So the daemon never does: ``load`` has a
child (the same interpreter and import path, ``config.isolated.child_main``) read and
validate the file with ``load_config`` and hand back a copy made of the plain classes of
``watchpost.settings``, pickled, or the list of errors; the daemon unpickles it, which needs
neither pydantic nor the config layer (docs/performance.md, "memory, fourth pass"). With it
come the versions of the installed libraries that `health` and `status` report: the child has
``importlib.metadata`` loaded for pydantic anyway, and the daemon then never loads it (with
``zipfile`` and ``csv``, 1 MB; "memory, fifth pass"). Config
errors come back as the same ``ConfigError``, worded by the same code. If the child cannot
start, dies, or answers something else, the daemon validates the file itself
(``config.isolated.validate_here``: logged; it loads pydantic and changes nothing else), so a
start never fails for the child's sake.

This module imports no pydantic and no config module, so that `watchpost run` can start the
child first thing (``start_early``, from ``cli.main``): the child validates the file while
the daemon imports its own modules, and the start takes no longer than before. A reload
starts a child of its own.
"""

from __future__ import annotations

import _pickle  # pickle's C half: the daemon only loads; `pickle` itself is 0.2 MB of code
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.settings import GatewayConfig

# A 5,000-point config takes a few seconds on a Raspberry Pi 3; systemd allows 120 s to start.
CHILD_TIMEOUT_S = 60.0

# Runs in the child: the parent's import path, then the loader of `config.isolated`.
CHILD_CODE = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[1])\n"
    "from watchpost.config.isolated import child_main\n"
    "child_main(sys.argv[2])\n"
)


class ConfigChild:
    """One child validating one config file; ``answer`` waits for what it wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen[bytes] | None = None
        self.failure = ""
        command = [sys.executable, *_interpreter_flags(), "-c", CHILD_CODE, json.dumps(sys.path)]
        try:
            self.process = subprocess.Popen(
                [*command, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.failure = str(exc)

    def answer(self, timeout: float) -> bytes | None:
        """The child's pickled answer; None if it did not give one (then ``failure`` says
        why: it could not start, it timed out and was killed, or it failed)."""
        if self.process is None:
            return None
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            self.failure = f"no answer in {timeout:g} s"
            return None
        except OSError as exc:  # the wait itself failed (a sleep the system refused: EINVAL)
            self.process.kill()
            self.process.wait()  # a blocking waitpid: no timed sleep
            self.failure = f"waiting for it failed: {exc}"
            return None
        if self.process.returncode != 0:
            tail = " ".join(err.decode(errors="replace").strip().splitlines()[-1:])
            self.failure = f"exit status {self.process.returncode}: {tail}"
            return None
        return out


def load(path: Path) -> GatewayConfig:
    """The validated config of ``path`` as plain objects, validated by a child process (the
    one `watchpost run` started early for this file, else a new one); ``ConfigError`` as
    ``load_config`` raises it."""
    from watchpost import settings, version  # noqa: PLC0415 - after start_early, not before

    child = take(path)
    answer = child.answer(CHILD_TIMEOUT_S)
    if answer is None:
        return _in_process(path, child.failure)
    try:
        # our own child, through a private pipe: (config or errors, library versions)
        result, libraries = _pickle.loads(answer)
    except Exception as exc:  # any unpickling failure: validate here instead
        return _in_process(path, repr(exc))
    if isinstance(libraries, dict):
        version.know_libraries(libraries)
    if isinstance(result, settings.GatewayConfig):
        return result
    if isinstance(result, list) and all(isinstance(line, str) for line in result):
        raise settings.ConfigError(path, result)
    return _in_process(path, f"unexpected answer {type(result).__name__}")


def _in_process(path: Path, error: str) -> GatewayConfig:
    from watchpost.config.isolated import validate_here  # noqa: PLC0415 - pydantic: last resort

    return validate_here(path, error)


_early: list[ConfigChild] = []  # the child `watchpost run` started, until the daemon takes it


def start_early(path: Path) -> None:
    """Start validating ``path`` now; the next ``take(path)`` returns this child."""
    _early[:] = [ConfigChild(path)]


def take(path: Path) -> ConfigChild:
    """The child started early for ``path``, else a new one."""
    child = _early.pop() if _early else None
    if child is not None and child.path == path:
        return child
    if child is not None and child.process is not None:
        child.process.kill()  # started for another file: not needed
        child.process.communicate()
    return ConfigChild(path)


def _interpreter_flags() -> list[str]:
    """The flags that make the child load the same byte code (-O, -OO) and ignore PYTHON*
    variables (-I: the import path is the parent's, given explicitly)."""
    flags = ["-I"]
    if sys.flags.optimize:
        flags.append("-" + "O" * sys.flags.optimize)
    return flags
