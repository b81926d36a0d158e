"""Log an error once, then stay quiet until it recovers (and say so once when it does).

Every error the gateway survives without stopping goes through one of these: the first
failure is logged with what it costs (``cost``: what is lost or delayed while it lasts), the
repeats are only counted, and the recovery is logged with the count. No failure is swallowed
without a word, and a failure that repeats every second does not flood the journal.
"""

from __future__ import annotations

import logging
from gettext import gettext as _

TEXT_FAILED = _("%s failed: %s; %s")
TEXT_RECOVERED = _("%s works again (%d failure(s) in between)")


class LogOnce:
    """One activity that may fail repeatedly, e.g. "store quota check"."""

    def __init__(
        self, log: logging.Logger, what: str, cost: str, *, level: int = logging.ERROR
    ) -> None:
        self._log = log
        self.what = what
        self.cost = cost
        self.level = level
        self.failures = 0

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed."""
        return self.failures > 0

    def failed(self, error: BaseException | str) -> None:
        """Record a failure; only the first of a run is logged (at ``level``)."""
        if self.failures == 0:
            self._log.log(self.level, TEXT_FAILED, self.what, error, self.cost)
        self.failures += 1

    def succeeded(self) -> None:
        """Record a success; after failures, log the recovery once."""
        if self.failures:
            self._log.warning(TEXT_RECOVERED, self.what, self.failures)
            self.failures = 0
