"""The child process that validates the daemon's config (``config.isolated``), started early.

This module imports no pydantic and no config module, so that `watchpost run` can start the
child first thing (``start_early``, from ``cli.main``): the child validates the file while
the daemon imports its own modules, and the start takes no longer than before. The daemon
takes the answer with ``take(path).answer()``; a reload starts a child of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        if self.process.returncode != 0:
            tail = " ".join(err.decode(errors="replace").strip().splitlines()[-1:])
            self.failure = f"exit status {self.process.returncode}: {tail}"
            return None
        return out


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
