"""Build `dist/watchpost-gateway_<version>_<arch>.deb` for Debian bookworm / Raspberry Pi OS.

Run through `scripts/package --arch amd64|arm64|armhf`. Cross-building needs no emulation:
the target's wheels are fetched for its platform tags (`pip install --target --platform ...
--only-binary=:all: --python-version 3.11`), and every wheel the gateway needs is either pure
Python or published for that platform. The exceptions are numpy and cffi on armhf (armv7l):
PyPI has no wheel of either for it, so that package depends on Debian's `python3-numpy` (1.24,
below 2 as tflite-runtime 2.14 needs) and `python3-cffi-backend` (1.15, which cryptography
up to 45 accepts).

What the package holds, and where (see docs/installer-guide.md, "What the package installs"):

    /usr/bin/watchpost                          launcher: runs the tree /usr/lib/watchpost/current
    /usr/lib/watchpost/shipped/<version>/lib/   the gateway and its libraries for <arch>
    /usr/lib/watchpost/update-guard             switches trees, confirms or rolls back updates
    /lib/systemd/system/*.service               the daemon, first boot, the update guard
    /usr/lib/sysusers.d/watchpost.conf          user and group watchpost (in dialout)
    /etc/watchpost/update.toml                  the update guard's settings (a conffile)
    /usr/share/doc/watchpost/                   the guides, the examples
    /usr/share/watchpost/{schemas,profiles,models}  links into the running tree

Only the standard library: it runs before the virtual environment is of any use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "watchpost-gateway"
PYTHON_VERSION = "3.11"  # Debian bookworm's and Raspberry Pi OS's python3
GLIBC = (2, 36)  # bookworm
LITERT = "tflite-runtime==2.14.0"
LITERT_NAMES = ("tflite-runtime", "ai-edge-litert")  # chosen per architecture below
INSTALLED_COMMAND = "/usr/bin/watchpost"
UNIT_COMMAND = "/usr/local/bin/watchpost"  # what the repository's unit files say (manual install)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Target:
    """One Debian architecture and what its wheels are called."""

    deb_arch: str
    machine: str  # the wheel platform's machine name
    # distributions PyPI has no wheel of for this machine: left out, and the Debian package
    # that provides them is a dependency instead
    from_debian: tuple[tuple[str, str], ...] = ()
    # installed without their dependencies (those come from Debian), pinned where needed
    without_deps: tuple[str, ...] = ()

    def platforms(self) -> list[str]:
        """Every manylinux tag bookworm's glibc can run, newest first."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(GLIBC[1], 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]


TARGETS = {
    "amd64": Target("amd64", "x86_64"),
    "arm64": Target("arm64", "aarch64"),
    # armv7l: no numpy and no cffi wheels on PyPI. Debian's numpy is 1.24 (below 2, as
    # tflite-runtime 2.14 needs); Debian's cffi backend is 1.15, which cryptography up to 45
    # accepts (46 and later want cffi 2).
    "armhf": Target(
        "armhf",
        "armv7l",
        from_debian=(("numpy", "python3-numpy (<< 1:2)"), ("cffi", "python3-cffi-backend")),
        without_deps=(LITERT, "cryptography>=41,<46"),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/package", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(TARGETS))
    parser.add_argument("--source", type=Path, required=True, help="the repository")
    parser.add_argument("--out", type=Path, help="output folder (default: SOURCE/dist)")
    parser.add_argument(
        "--version", help="stamp this version instead of the one in gateway/__init__.py"
    )
    parser.add_argument(
        "--deps-cache",
        type=Path,
        help="reuse the libraries' tree kept here by an earlier build with the same "
        "requirements (default: resolve afresh)",
    )
    parser.add_argument(
        "--compression",
        choices=("xz", "gzip"),
        default="xz",
        help="xz (default: smallest, for slow links) or gzip (faster to build and unpack)",
    )
    args = parser.parse_args(argv)
    target = TARGETS[args.arch]
    source = args.source.resolve()
    out = (args.out or source / "dist").resolve()
    with tempfile.TemporaryDirectory(prefix="watchpost-package-") as tmp:
        deb = build(
            target,
            source,
            out,
            Path(tmp),
            version=args.version,
            compression=args.compression,
            cache=args.deps_cache,
        )
    size = deb.stat().st_size / 1e6
    print(f"package: {deb} ({size:.1f} MB)")
    return 0


def build(
    target: Target,
    source: Path,
    out: Path,
    tmp: Path,
    *,
    version: str | None,
    compression: str,
    cache: Path | None = None,
) -> Path:
    copy = tmp / "src"
    version = stage_source(source, copy, version)
    if not re.fullmatch(r"[0-9][A-Za-z0-9.+~-]*", version):
        raise SystemExit(f"package: {version!r} is not a Debian version")
    root = tmp / "root"
    tree = root / f"usr/lib/watchpost/shipped/{version}"
    install_python_tree(target, copy, tree / "lib", tmp / "wheels", cache)
    write_buildinfo(tree / "lib/watchpost/buildinfo.json", version, target)
    install_files(copy, root, version)
    write_control(root, copy, target, version)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{PACKAGE}_{version}_{target.deb_arch}.deb"
    level = ["-Zxz", "-z6"] if compression == "xz" else ["-Zgzip", "-z6"]
    run(["dpkg-deb", "--root-owner-group", *level, "--build", str(root), str(deb)])
    return deb


def stage_source(source: Path, copy: Path, version: str | None) -> str:
    """A copy of what the wheel is built from, with the version stamped if asked.

    From a git checkout: the tracked files only (nothing a working tree left behind, such as
    compiled catalogues or a local store); setup.py compiles the catalogues into the wheel.
    """
    copy.mkdir()
    if (source / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(source), "ls-files", "-z"], capture_output=True, check=True
        ).stdout.decode()
        for name in filter(None, listed.split("\0")):
            path, dest = source / name, copy / name
            if not path.exists() and not path.is_symlink():
                continue  # deleted in the working tree, not yet committed
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                dest.symlink_to(path.readlink())
            else:
                shutil.copy2(path, dest)
    else:
        shutil.copytree(
            source,
            copy,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".venv", "dist", "__pycache__", "*.pyc", "*.mo"),
        )
    init = copy / "gateway/__init__.py"
    text = init.read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"package: no __version__ in {init}")
    if version is not None:
        init.write_text(text.replace(found.group(0), f'__version__ = "{version}"'))
        return version
    return found.group(1)


def requirements(copy: Path, target: Target) -> tuple[list[str], list[str]]:
    """(resolved with their dependencies, installed without) for the target.

    pip evaluates environment markers for the machine it runs on, not the target, so the
    LiteRT choice of pyproject.toml is made here: tflite-runtime 2.14 has wheels for all three
    architectures on Python 3.11. On armhf numpy comes from Debian, so tflite-runtime is
    installed without its dependencies there.
    """
    project = tomllib.loads((copy / "pyproject.toml").read_text())["project"]
    left_out = (*LITERT_NAMES, *(name for name, _ in target.from_debian))
    left_out += tuple(re.split(r"[<>=!~ ;]", r, maxsplit=1)[0] for r in target.without_deps)
    deps = [d for d in project["dependencies"] if not d.replace("_", "-").startswith(left_out)]
    if target.without_deps:
        return deps, list(target.without_deps)
    return [*deps, LITERT], []


def install_python_tree(
    target: Target, copy: Path, lib: Path, wheels: Path, cache: Path | None
) -> None:
    """The gateway's wheel and its libraries for the target, installed into ``lib``.

    ``cache``: keep the libraries' tree there, keyed by the target and the requirements, and
    reuse it for the next build with the same requirements (tests build several versions of
    one tree). Without it every build resolves afresh.
    """
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(copy)])
    (wheel,) = wheels.glob("watchpost_gateway-*.whl")
    with_deps, without_deps = requirements(copy, target)
    key = hashlib.sha256(json.dumps([target.deb_arch, with_deps, without_deps]).encode())
    kept = cache / f"{target.deb_arch}-{key.hexdigest()[:16]}" if cache else None
    if kept is not None and kept.is_dir():
        shutil.copytree(kept, lib, symlinks=True)
    else:
        run([*pip_install(target, lib), *with_deps])
        if without_deps:
            # a second pass into the same folder adds packages, it replaces none of the first's
            run([*pip_install(target, lib), "--upgrade", "--no-deps", *without_deps])
        shutil.rmtree(lib / "bin", ignore_errors=True)  # console scripts for the build machine
        if kept is not None:
            tmp = kept.with_name(kept.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(lib, tmp, symlinks=True)
            tmp.rename(kept)
    run([*pip_install(target, lib), "--upgrade", "--no-deps", str(wheel)])


def pip_install(target: Target, lib: Path) -> list[str]:
    """`pip install --target lib` for the target's platform, wheels only."""
    return [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "install",
        "-q",
        "--target",
        str(lib),
        *(f"--platform={tag}" for tag in target.platforms()),
        f"--python-version={PYTHON_VERSION}",
        "--implementation=cp",
        "--only-binary=:all:",
        "--no-warn-script-location",
    ]


def write_buildinfo(path: Path, version: str, target: Target) -> None:
    """What `watchpost version` reports about the package (the rest it reads at run time)."""
    info = {
        "package": PACKAGE,
        "version": version,
        "architecture": target.deb_arch,
        "python": PYTHON_VERSION,
        "from_debian": [name for name, _ in target.from_debian],
    }
    path.write_text(json.dumps(info, indent=2) + "\n")


def install_files(copy: Path, root: Path, version: str) -> None:
    debian = HERE / "debian"
    put(debian / "watchpost", root / "usr/bin/watchpost", 0o755)
    put(debian / "update-guard", root / "usr/lib/watchpost/update-guard", 0o755)
    put(debian / "update.toml", root / "etc/watchpost/update.toml", 0o644)
    (root / "etc/watchpost").chmod(0o750)  # postinst gives it to group watchpost
    units = root / "lib/systemd/system"
    for unit in (copy / "systemd").glob("*.service"):
        text = unit.read_text().replace(UNIT_COMMAND, INSTALLED_COMMAND)
        put_text(text, units / unit.name, 0o644)
    put(debian / "watchpost-update-guard.service", units / "watchpost-update-guard.service", 0o644)
    put(copy / "systemd/watchpost.sysusers", root / "usr/lib/sysusers.d/watchpost.conf", 0o644)
    doc = root / "usr/share/doc/watchpost"
    for page in [copy / "README.md", copy / "CHANGELOG.md", *(copy / "docs").rglob("*.md")]:
        put(page, doc / page.relative_to(copy).as_posix().removeprefix("docs/"), 0o644)
    for folder, _dirs, files in os.walk(copy / "examples", followlinks=True):  # demo is a link
        for name in files:
            example = Path(folder) / name
            put(example, doc / example.relative_to(copy), 0o644)
    share = root / "usr/share/watchpost"
    share.mkdir(parents=True)
    running = Path("/usr/lib/watchpost/current/lib/watchpost")
    for name, inside in (
        ("schemas", "schemas"),
        ("profiles", "drivers/profiles"),
        ("models", "models"),
    ):
        (share / name).symlink_to(running / inside)
    for name in ("preinst", "postinst", "prerm", "postrm"):
        text = (debian / name).read_text().replace("@VERSION@", version)
        put_text(text, root / "DEBIAN" / name, 0o755)
    put_text("/etc/watchpost/update.toml\n", root / "DEBIAN/conffiles", 0o644)


def write_control(root: Path, copy: Path, target: Target, version: str) -> None:
    depends = ["python3 (>= 3.11)", "python3 (<< 3.12)", "systemd"]
    depends += [dependency for _, dependency in target.from_debian]
    size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    description = tomllib.loads((copy / "pyproject.toml").read_text())["project"]["description"]
    control = "\n".join(
        [
            f"Package: {PACKAGE}",
            f"Version: {version}",
            f"Architecture: {target.deb_arch}",
            "Maintainer: Watchpost <watchpost@localhost>",
            f"Depends: {', '.join(depends)}",
            "Section: misc",
            "Priority: optional",
            f"Installed-Size: {size_kib}",
            "Description: Watchpost safety gateway",
            f" {description}",
            " Bundles its Python libraries (numpy, LiteRT, pymodbus, paho-mqtt, ...) for the",
            " architecture; updates that do not come up roll back by themselves.",
            "",
        ]
    )
    put_text(control, root / "DEBIAN/control", 0o644)


def put(source: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    dest.chmod(mode)


def put_text(text: str, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    dest.chmod(mode)


def run(command: list[str]) -> None:
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"package: failed ({result.returncode}): {' '.join(command[:6])} ...")


if __name__ == "__main__":
    sys.exit(main())
