"""Watchpost: the safety gateway daemon of a hazard site."""

from watchpost import i18n

__version__ = "0.1.0"

# Before any module takes its texts: `_()` everywhere reads the package's catalogues
# (docs/architecture.md, "Language").
i18n.bind()
