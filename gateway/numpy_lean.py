"""numpy for the daemon's anomaly runner, without the subpackages the scoring never uses.

``import numpy`` (1.x) imports ``numpy.random``, ``numpy.polynomial``, ``numpy.fft`` and
``numpy.ctypeslib`` whatever the caller needs: 3 to 4 MB of resident memory (their code, and
the nine extension libraries of ``numpy.random``), while the runner and LiteRT use numpy's
arrays, reductions and ``numpy.linalg`` only (docs/performance.md, "Issue 10: memory, fifth
pass"). ``numpy.ma`` stays: ``numpy.median`` asks it whether its input is a masked array.

``defer_unused`` puts a stand-in for each of them into ``sys.modules`` before numpy is
imported, so numpy's own ``from . import random`` binds the stand-in instead of loading the
package. The first use of a stand-in (any attribute, ``__path__`` for a submodule import
included) imports the real package and answers from it, so code that does use one still
works, only without the saving. ``importlib.util.LazyLoader`` cannot do this: the import
system reads the module's ``__spec__`` when numpy binds it, which loads it at once.

It changes nothing once numpy is loaded; the CLI's tools and the tests import numpy whole.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

# the subpackages ``numpy/__init__.py`` imports that neither the runner nor LiteRT touches
UNUSED = ("numpy.random", "numpy.polynomial", "numpy.fft", "numpy.ctypeslib")

_loading = threading.RLock()  # a package loading may load another stand-in


class _Deferred(types.ModuleType):
    """A subpackage not loaded yet: the first attribute asked for loads it."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(_load(self), attr)


def _load(stand_in: _Deferred) -> types.ModuleType:
    name = stand_in.__name__
    with _loading:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return importlib.import_module(name)


def defer_unused() -> bool:
    """Stand-ins for ``UNUSED`` before numpy is imported; False (and nothing done) when
    numpy is loaded already."""
    if "numpy" in sys.modules:
        return False
    for name in UNUSED:
        sys.modules.setdefault(name, _Deferred(name))
    return True


def deferred() -> list[str]:
    """The subpackages still standing in (not loaded by any use)."""
    return [name for name in UNUSED if isinstance(sys.modules.get(name), _Deferred)]
