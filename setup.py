"""Compiles the message catalogues (``.po`` -> ``.mo``) as part of every build.

Everything else about the package is in pyproject.toml. ``pip install .``, ``python -m
build`` and the Debian packages put the compiled catalogues into the wheel; ``pip install
-e .`` (scripts/setup) writes them next to their ``.po`` in the source tree, where the
editable install reads them. Compiled files are never committed (.gitignore).
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LOCALE = HERE / "src" / "watchpost" / "locale"  # gateway/locale in the repository


def compile_catalogues(target: Path) -> list[Path]:
    """Compile every ``LOCALE/<lang>/LC_MESSAGES/*.po`` into ``target/<lang>/...*.mo``."""
    written = []
    for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
        with po.open("rb") as file:
            catalog = read_po(file, locale=po.parts[-3])
        mo = target / po.relative_to(LOCALE).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as file:
            write_mo(file, catalog, use_fuzzy=False)  # an entry to review is not shipped
        written.append(mo)
    return written


class BuildWithCatalogues(build_py):
    """build_py that also compiles the catalogues into the package being built."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            compile_catalogues(LOCALE)
        else:
            compile_catalogues(Path(self.build_lib) / "watchpost" / "locale")


setup(cmdclass={"build_py": BuildWithCatalogues})
