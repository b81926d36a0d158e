"""A small file system that fills up for real, and can never outlive the test.

``SmallDisk`` mounts a tmpfs of a few MiB at a folder inside a mount namespace of its own,
held by a helper process (``unshare`` running ``sh``, which waits on its stdin). The mount
exists only in that namespace: nothing is mounted in the test's own namespace, and when the
helper and every process started inside it (``prefix``) have exited, the kernel takes the
mount down by itself, also when the test run is killed (the helper's stdin closes with it).

    with SmallDisk(tmp_path / "disk", size="3m") as disk:
        Watchpost("run", ..., prefix=disk.prefix(tmp_path))  # the daemon sees the tmpfs
        disk.path("buffer.db").read_bytes()         # the test reads it through /proc
        disk.fill(leave=64 * 1024)                  # a filler file: the disk is all but full

Where no private mount namespace can be made (not root, no ``unshare``), or where a mount
made there would reach the test's own namespace (a chroot on a host whose mounts are
shared), ``problem()`` says why and the test skips with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

# `read` returns when the test closes the helper's stdin (or dies): the namespace goes then
HOLD = 'mount -t tmpfs -o "size=$1,mode=0755" tmpfs "$2" && echo mounted && read _'


class NoSmallDisk(Exception):
    """No tmpfs could be mounted in a private namespace here; the text says why."""


class SmallDisk:
    """A tmpfs of ``size`` (``mount``'s syntax: ``3m``) at ``folder``, private to the test."""

    def __init__(self, folder: Path, size: str = "3m") -> None:
        self.folder = folder.resolve()
        self.size = size
        self._holder: subprocess.Popen[str] | None = None

    # -- making it ----------------------------------------------------------------------------

    def start(self) -> SmallDisk:
        """Mount it; NoSmallDisk (with the reason) when that is impossible here."""
        if os.geteuid() != 0:
            raise NoSmallDisk("mounting a tmpfs needs root (CI runs as root)")
        for tool in ("unshare", "nsenter", "mount"):
            if shutil.which(tool) is None:
                raise NoSmallDisk(f"{tool} is missing (util-linux, mount)")
        self.folder.mkdir(parents=True, exist_ok=True)
        problem = self._hold("private")
        if problem is not None and "propagation" in problem:
            # inside a chroot whose root is not a mount point, unshare cannot make the
            # namespace's mounts private; they are private already unless the host shares
            # them, which the leak check below finds out
            problem = self._hold("unchanged")
        if problem is not None:
            raise NoSmallDisk(f"no private mount namespace here: {problem}")
        if self._visible_here():
            # the mount propagated to the test's own namespace: take it down at once
            subprocess.run(["umount", str(self.folder)], check=False)
            self.close()
            raise NoSmallDisk(
                "mounts here propagate to the host's namespace (a chroot on shared mounts); "
                "run the test on the machine itself"
            )
        return self

    def _hold(self, propagation: str) -> str | None:
        """Start the helper; None once the tmpfs is mounted, else unshare's complaint."""
        holder = subprocess.Popen(
            [
                *("unshare", "--mount", "--propagation", propagation),
                *("sh", "-c", HOLD, "hold", self.size, str(self.folder)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        if line == "mounted":
            self._holder = holder
            return None
        holder.kill()
        _out, err = holder.communicate(timeout=10)
        return err.strip() or f"unshare exited {holder.returncode}"

    def _visible_here(self) -> bool:
        with Path("/proc/self/mountinfo").open(encoding="utf-8") as mounts:
            return any(line.split()[4] == str(self.folder) for line in mounts)

    # -- using it -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._holder is None:
            raise RuntimeError("the small disk is not mounted")
        return self._holder.pid

    def prefix(self, cwd: Path) -> list[str]:
        """Put before a command to run it, in ``cwd``, where the tmpfs is mounted. Entering a
        mount namespace resets the working directory, and ``nsenter --wd=DIR`` would open
        DIR as the test sees it: the command starts in the helper's directory and ``cd``
        runs inside."""
        enter = ["nsenter", f"--target={self.pid}", "--mount", "--root", "--wd", "--"]
        return [*enter, "sh", "-c", 'cd "$0" && exec "$@"', str(cwd)]

    def path(self, *parts: str) -> Path:
        """A path on the tmpfs as the test can open it (through the helper's root)."""
        return Path(f"/proc/{self.pid}/root") / str(self.folder).lstrip("/") / Path(*parts)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path()).free

    def fill(self, *, leave: int, name: str = "filler") -> None:
        """Write a file that leaves about ``leave`` bytes free (the disk is the one left full
        by other programs on a gateway: logs, a core dump)."""
        size = max(0, self.free_bytes() - leave)
        with self.path(name).open("ab") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self, name: str = "filler") -> None:
        """Delete a file on the tmpfs (the crew frees the disk)."""
        self.path(name).unlink()

    def remount_read_only(self) -> None:
        """Make the tmpfs read-only (a card that failed into read-only mode)."""
        command = ["mount", "-o", "remount,ro", str(self.folder)]
        subprocess.run([*self.prefix(Path("/")), *command], check=True, timeout=30)

    # -- ending it ----------------------------------------------------------------------------

    def close(self) -> None:
        """Let the helper go: the mount ends with the last process in its namespace."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> SmallDisk:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()
