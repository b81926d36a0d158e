"""The language people read: English msgids, one compiled catalogue per other language.

Every user-facing text is an English msgid in ``_()`` (``from gettext import gettext as _``),
most of them module constants (``TEXT_*``) evaluated when their module is imported. So the
language is a property of the process, settled before any module with texts is imported:

1. Importing the ``watchpost`` package calls :func:`bind`: gettext's process domain becomes
   ``watchpost``, read from the catalogues inside the package
   (``locale/<lang>/LC_MESSAGES/watchpost.mo``, compiled from the ``.po`` at build time).
   Every ``_()`` looks there, and so do argparse's own words ("usage: ", "options"), which
   argparse asks of the process domain too (:data:`ARGPARSE_WORDS`).
2. gettext picks the language from ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` (the
   first one set), as every Linux program does; it reads the variables itself, so no C
   library locale needs to exist.
3. ``cli.main`` calls :func:`apply_configured_language` before it imports a command's
   module: when the environment names no language (unset, ``C``, ``POSIX``), the config's
   ``[gateway] language`` becomes the process's ``LANGUAGE``. A daemon under systemd (whose
   locale is C) thus writes its log sentences, and ``status``/``report`` their texts, in the
   site's language. A change of ``[gateway] language`` takes effect at the next start.

MQTT payloads carry codes, never texts from here.
"""

from __future__ import annotations

import gettext
import os
import tomllib
from collections.abc import MutableMapping
from pathlib import Path

DOMAIN = "watchpost"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "zh_CN")  # what `[gateway] language` accepts; en is the msgids themselves
ENVIRONMENT = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # gettext's order of precedence
NO_LANGUAGE = ("C", "POSIX")


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it here."""
    return message


# argparse's words that users meet (help, usage, errors). argparse translates them through
# gettext's process domain, which is ours: listed so that extraction puts them into the
# catalogue. tests/test_i18n.py checks that the running Python's argparse has no others.
ARGPARSE_WORDS = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("unrecognized arguments: %s"),
    N_("the following arguments are required: %s"),
    N_("one of the arguments %s is required"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("unexpected option string: %s"),
    N_("invalid %(type)s value: %(value)r"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
)


def bind() -> None:
    """Make ``watchpost`` gettext's process domain, read from the package's catalogues."""
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)


def current_language() -> str:
    """The language ``_()`` speaks in this process, as HTML writes it (``en``, ``zh-CN``)."""
    catalogue = gettext.find(DOMAIN, str(LOCALE_DIR))
    return Path(catalogue).parts[-3].replace("_", "-") if catalogue else "en"


def environment_language(environ: MutableMapping[str, str]) -> str | None:
    """The language the environment names, or None for unset, ``C`` and ``POSIX``."""
    for name in ENVIRONMENT:
        value = environ.get(name)
        if value:
            first = value.split(":")[0]
            return None if first.split(".")[0] in NO_LANGUAGE else first
    return None


def configured_language(config_path: Path) -> str | None:
    """``[gateway] language`` of the config file, read before the rest is validated.

    An unreadable or invalid file gives None: the command that reads it reports the error
    itself, in the environment's language, once the language is settled.
    """
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None
    section = data.get("gateway")
    language = section.get("language") if isinstance(section, dict) else None
    return language if language in LANGUAGES else None


def apply_configured_language(
    config_path: Path, environ: MutableMapping[str, str] | None = None
) -> str | None:
    """Use the config's language when the environment names none; return it if applied.

    Call before importing any module with texts: module constants keep the language they
    were evaluated in.
    """
    environ = os.environ if environ is None else environ
    if environment_language(environ) is not None:
        return None
    language = configured_language(config_path)
    if language is not None:
        environ["LANGUAGE"] = language
    return language
