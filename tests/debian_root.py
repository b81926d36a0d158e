"""Minimal Debian bookworm roots for the package tests: made once, cached, copied per test.

A base root is ``debootstrap --variant=minbase --include=python3,systemd bookworm``: Debian's
python3 and systemd and nothing of ours, as on a freshly flashed gateway. arm64 roots are made
with ``--foreign`` and finished by the second stage under qemu-user-static (binfmt_misc).
Bases are cached in /var/cache/watchpost-test/<suite>-<arch>/ (``WATCHPOST_TEST_CACHE``
moves it) and kept between runs; each test works on a copy.

``Root.sh`` runs a shell script in the root inside new network, mount and PID namespaces:
no network but a loopback of its own (nothing can be fetched), /proc and /dev mounted for the
script alone, and every process the script left behind ends with it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SUITE = "bookworm"
CACHE = Path(os.environ.get("WATCHPOST_TEST_CACHE", "/var/cache/watchpost-test"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"
QEMU = {"arm64": "qemu-aarch64", "armhf": "qemu-arm"}
APT_SOURCES = Path("/etc/apt")


def mirror(apt: Path = APT_SOURCES) -> str:
    """The Debian mirror apt uses here: enabled sources only (*.list, *.sources), else Debian's.

    Disabled files (``*.disabled``, ``*.list.save``) and other archives (a NodeSource list)
    are not Debian mirrors; only a URL ending in ``/debian`` counts.
    """
    files = [apt / "sources.list"]
    folder = apt / "sources.list.d"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    pattern = re.compile(r"^\s*(?:deb|URIs:)\s+(?:\[[^]]*\]\s*)?(https?://\S+)", re.MULTILINE)
    for path in files:
        if not path.is_file():
            continue
        for url in pattern.findall(path.read_text(errors="replace")):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    return FALLBACK_MIRROR


@functools.cache
def _mount_namespace_problem() -> str | None:
    """Why no private mount namespace can be made here (the roots need one), or None.

    Inside a chroot whose root is not a mount point (a build or CI chroot), unshare cannot
    make the mounts private: the test roots' mounts would leak to the host."""
    probe = subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True, text=True, check=False, timeout=30
    )
    if probe.returncode == 0:
        return None
    return f"no private mount namespace here ({probe.stderr.strip()}); run on the machine itself"


def missing_tools(arch: str) -> str | None:
    """Why roots of ``arch`` cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, unshare)"
    for tool in ("debootstrap", "unshare", "chroot", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: scripts/setup installs it"
    namespace = _mount_namespace_problem()
    if namespace is not None:
        return namespace
    if arch in QEMU:
        name = QEMU[arch]
        if shutil.which(f"{name}-static") is None:
            return f"{name}-static is missing: scripts/setup installs qemu-user-static"
        entry = Path("/proc/sys/fs/binfmt_misc") / name
        if not entry.exists() or "enabled" not in entry.read_text():
            return f"binfmt_misc has no enabled {name} entry: scripts/setup registers it"
    return None


def base_root(arch: str) -> Path:
    """The cached base root of ``arch``, made now if missing (under a lock)."""
    base = CACHE / f"{SUITE}-{arch}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{SUITE}-{arch}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / ".complete").exists():
            _debootstrap(arch, base)
    return base


def prepare_in_background(arches: list[str]) -> list[threading.Thread]:
    """Make the missing base roots while the rest of the suite runs, each in a thread of its
    own (a cold arm64 root takes minutes under emulation, an amd64 root about one: the
    arm64 one need not wait for it). A failure here is logged; the test that needs the root
    then makes it again and fails with the real error."""

    def prepare(arch: str) -> None:
        if missing_tools(arch) is None:
            try:
                base_root(arch)
            except (OSError, subprocess.CalledProcessError) as exc:
                logging.getLogger(__name__).warning("base root %s: %s", arch, exc)

    threads = [
        threading.Thread(target=prepare, args=(arch,), name=f"debian-root-{arch}", daemon=True)
        for arch in arches
    ]
    for thread in threads:
        thread.start()
    return threads


def _debootstrap(arch: str, base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)
    work = base.with_name(base.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    log = CACHE / f"{SUITE}-{arch}.log"
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,systemd",
        f"--arch={arch}",
        "--foreign",
        SUITE,
        str(work),
        mirror(),
    ]
    # dpkg without fsync while the root is made (the second stage under qemu is the slow
    # part); the setting goes again before the root is used
    unsafe_io = work / "etc/dpkg/dpkg.cfg.d/watchpost-test-unsafe-io"
    with log.open("w") as out:
        _run_to_the_end(command, out)
        if arch in QEMU:
            qemu = shutil.which(f"{QEMU[arch]}-static")
            assert qemu is not None
            shutil.copy2(qemu, work / "usr/bin" / Path(qemu).name)
        unsafe_io.parent.mkdir(parents=True, exist_ok=True)
        unsafe_io.write_text("force-unsafe-io\n")
        _run_to_the_end(["chroot", str(work), "/debootstrap/debootstrap", "--second-stage"], out)
    unsafe_io.unlink()
    subprocess.run(["chroot", str(work), "apt-get", "clean"], check=True)
    (work / ".complete").write_text(f"{SUITE} {arch}\n")
    work.rename(base)


_RUNNING: set[subprocess.Popen[bytes]] = set()


def _run_to_the_end(command: list[str], out: IO[str]) -> None:
    """Run a root-making command in its own process group, which ends with this process:
    a test run that stops early leaves no debootstrap writing into the cache."""
    with subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    ) as process:
        _RUNNING.add(process)
        try:
            code = process.wait()
        finally:
            _RUNNING.discard(process)
    if code != 0:
        raise subprocess.CalledProcessError(code, command)


@atexit.register
def _stop_running() -> None:
    for process in list(_RUNNING):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile: nothing to stop
            os.killpg(process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Root:
    """A copy of a base root that one test may change at will."""

    path: Path
    arch: str

    @classmethod
    def fresh(cls, arch: str, dest: Path) -> Root:
        base = base_root(arch)
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True)
        return cls(dest, arch)

    def sh(
        self, script: str, *, timeout: float = 300, broker: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with /bin/sh -e in the root, without network; output captured.

        ``broker``: the host's Mosquitto listens on 127.0.0.1:1883 of the script's own
        network namespace (a loopback nobody else shares), for the gateway's uplink.
        """
        inner = (
            'mount -t proc proc "$ROOT/proc" && mount --rbind /dev "$ROOT/dev" && '
            "ip link set lo up && "
            + (
                '{ mosquitto -c "$ROOT/tmp/mosquitto.conf" >/dev/null 2>&1 & } && '
                if broker
                else ""
            )
            + 'exec chroot "$ROOT" /bin/sh -ec "$SCRIPT"'
        )
        if broker:
            (self.path / "tmp/mosquitto.conf").write_text(
                "listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n"
            )
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ROOT": str(self.path),
            "SCRIPT": script,
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            ["unshare", "--net", "--mount", "--pid", "--fork", "/bin/sh", "-c", inner],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def put(self, source: Path, inside: str) -> Path:
        dest = self.path / inside.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return dest

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Booted:
    """A root booted with systemd as its PID 1 (`systemd-nspawn -b`), with no network but a
    loopback of its own; commands run in it through `nsenter`. Only where the host's kernel
    lets systemd-nspawn boot a container; amd64 roots only (a booted arm64 root under qemu
    would take minutes)."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def __enter__(self) -> Booted:
        log = (self.root.path.parent / "nspawn.log").open("wb")
        self._nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                f"--directory={self.root.path}",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--console=passive",
                "--boot",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):  # up to 60 s for systemd to come up
            children = subprocess.run(
                ["pgrep", "-P", str(self._nspawn.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            if children:
                self.leader = int(children[0])
                state = self.sh("systemctl is-system-running || true").stdout.strip()
                if state in ("running", "degraded"):
                    return self
            if self._nspawn.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the root did not boot: see {log.name}")

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None and self._broker.poll() is None:
            self._broker.kill()
            self._broker.wait()
        if self._nspawn is not None and self._nspawn.poll() is None:
            # the container's PID 1 killed ends every process of its PID namespace at once;
            # an orderly poweroff would wait on the daemons' stop timeouts for nothing
            if self.leader:
                with contextlib.suppress(ProcessLookupError):  # already gone: nothing to kill
                    os.kill(self.leader, signal.SIGKILL)
            try:
                self._nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait()

    def sh(self, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with /bin/sh -e inside the booted root (all its namespaces)."""
        return subprocess.run(
            [*self._enter(), "/bin/sh", "-ec", script],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _enter(self) -> list[str]:
        return ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--"]

    def start_broker(self) -> None:
        """The host's Mosquitto on 127.0.0.1:1883 of the booted root's own network."""
        conf = self.root.path.parent / "mosquitto.conf"
        conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self._broker = subprocess.Popen(
            ["nsenter", "-t", str(self.leader), "-n", "mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
