"""Every folder of the `watchpost` package is in the wheel (and so in the Debian packages).

setuptools ships only the packages that pyproject.toml lists; a new subpackage left out of
the list works from the repository and fails on a gateway (ModuleNotFoundError at start).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_python_folder_is_a_listed_package() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    src = REPO / "src"
    found = set()
    for folder, _dirs, files in os.walk(src / "watchpost", followlinks=True):
        if "__pycache__" not in folder and any(f.endswith(".py") for f in files):
            found.add(".".join(Path(folder).relative_to(src).parts))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
