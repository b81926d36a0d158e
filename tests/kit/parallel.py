"""How pytest-xdist shares the suite among its workers (scripts/test runs it with ``-n``).

Most tests wait on real brokers, daemons, serial lines and clocks rather than on a core, so
the suite runs on more workers than the machine has cores. Each test goes to whichever
worker is free next, in the order the workers collected them (tests/conftest.py puts the
long ones first), except the tests of the files in ``TOGETHER``: one worker runs all of a
file's tests, one after the other, because they share something made once per module or
per run (the Debian packages' builds, a daemon, a browser page). A new module- or
session-scoped fixture that is costly to make twice belongs to a file listed here.

pytest-xdist's own ``--dist loadgroup`` would do this with ``xdist_group`` marks, but it
renames the tests' node ids to say so, which pytest 9.2 no longer allows: the marks are
silently ignored there.
"""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

TOGETHER = frozenset(
    {
        "tests/test_packages.py",  # the builds of `debs` (session), made once per worker
        "tests/test_broker_probe.py",  # a certificate authority and a TLS broker (module)
        "tests/test_crew_cli.py",  # a running daemon (module)
        "tests/test_i18n.py",  # a running Chinese site (module)
        "tests/test_report_browser.py",  # a report rendered in Chromium (module)
        "tests/test_simulator.py",  # a running simulator (module)
        "tests/test_simulator_serial.py",  # a simulator on pseudo-terminals (module)
    }
)


class TogetherOrAlone(LoadScopeScheduling):
    """One work unit per test, or per file for the files in ``TOGETHER``; units go out in
    collection order (not biggest first, xdist's default for scopes)."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return path if path in TOGETHER else nodeid
