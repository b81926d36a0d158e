"""Watchpost: the safety gateway daemon of a hazard site."""

__version__ = "0.1.0"
