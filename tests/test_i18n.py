"""Chinese for the people at the site, and the guard that keeps it complete.

The catalogue: every msgid in the code has a reviewed Chinese translation with the msgid's
placeholders; argparse's own words are in it; the compiled catalogue is the `.po`'s. The CLI
run as a person runs it, under ``LANG=zh_CN.UTF-8``: no Latin-only sentence in what it
prints (a text that is not wrapped in ``_()`` shows up here), and under ``LANG=C`` English.
"""

from __future__ import annotations

import argparse
import gettext
import io
import os
import re
import string
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from watchpost import i18n
from watchpost.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "gateway" / "locale" / "zh_CN" / "LC_MESSAGES" / "watchpost.po"
SOURCES = ("gateway", "drivers", "provisioning", "models")  # what scripts/translations reads
HOW = "scripts/translations update, translate the entry (docs/zh/glossary.md)"

# four Latin words in a row, and not one Chinese character on the line: an English sentence
LATIN_SENTENCE = re.compile(r"[A-Za-z]{2,}[,;:.]?(?: [A-Za-z]{2,}[,;:.]?){3,}")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")

# argparse's messages that only a programmer meets (a parser built wrongly)
ARGPARSE_INTERNAL = {
    ".__call__() not defined",
    "conflicting subparser: %s",
    "conflicting subparser alias: %s",
    'argument "-" with mode %r',
    "cannot merge actions - two groups are named %r",
    "'required' is an invalid argument for positionals",
    "invalid option string %(option)r: must start with a character %(prefix_chars)r",
    "dest= is required for options like %r",
    "invalid conflict_resolution value: %r",
    "conflicting option string: %s",
    "mutually exclusive arguments must be optional",
    "cannot have multiple subparser arguments",
    "%r is not callable",
    "expected %s argument",  # nargs=N > 1: no command of ours has one
}


def latin_sentences(text: str) -> list[str]:
    """Lines of ``text`` that read as an English sentence."""
    return [
        line for line in text.splitlines() if LATIN_SENTENCE.search(line) and not CJK.search(line)
    ]


def language_env(lang: str, **extra: str) -> dict[str, str]:
    """The environment of a person whose locale is ``lang``."""
    env = {k: v for k, v in os.environ.items() if k not in i18n.ENVIRONMENT}
    env.update(LANG=lang, PYTHONUTF8="1", COLUMNS="100", **extra)
    return env


def watchpost(
    *args: str, lang: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchpost", *args],
        env=language_env(lang),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the catalogue ---------------------------------------------------------------------------


def catalogue() -> dict[str, tuple[str, set[str]]]:
    """msgid -> (msgstr, flags) of the zh_CN catalogue."""
    with PO.open("rb") as file:
        catalog = read_po(file)
    return {
        message.id: (message.string, set(message.flags))
        for message in catalog
        if message.id and isinstance(message.id, str) and isinstance(message.string, str)
    }


def code_msgids() -> dict[str, str]:
    """Every msgid that extraction finds in the code (babel.cfg), with where it is."""
    with (ROOT / "babel.cfg").open() as file:
        method_map, options_map = parse_mapping_cfg(file)
    found: dict[str, str] = {}
    for folder in SOURCES:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map, options_map
        ):
            msgid = message if isinstance(message, str) else message[0]
            found.setdefault(msgid, f"{folder}/{filename}:{lineno}")
    return found


def placeholders(text: str) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """The ``{}`` fields (sorted), positional ``%`` conversions (in order), named ones (sorted)."""
    try:
        fields = sorted(
            (name, conversion or "", spec or "")
            for _literal, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        )
    except ValueError:
        fields = [("<unbalanced braces>", "", "")]
    # a text with {} fields is formatted with str.format: its % signs are literal
    pattern = r"%(\([^)]*\))?([-+ #0]*\d*(?:\.\d+)?[sdrifgeExXoc%])"
    percent = [] if fields else re.findall(pattern, text)
    positional = [conversion for name, conversion in percent if not name]
    named = sorted(name + conversion for name, conversion in percent if name)
    return fields, positional, named


def test_every_text_in_the_code_has_a_reviewed_translation() -> None:
    zh = catalogue()
    missing = [f"{where}: {msgid!r}" for msgid, where in code_msgids().items() if msgid not in zh]
    untranslated = [
        f"{where}: {msgid!r}"
        for msgid, where in code_msgids().items()
        if msgid in zh and (not zh[msgid][0] or "fuzzy" in zh[msgid][1])
    ]
    assert not missing, f"not in the catalogue ({HOW}):\n" + "\n".join(missing)
    assert not untranslated, f"untranslated or fuzzy ({HOW}):\n" + "\n".join(untranslated)


def test_translations_keep_the_placeholders() -> None:
    wrong = [
        f"{msgid!r} -> {msgstr!r}"
        for msgid, (msgstr, _flags) in catalogue().items()
        if msgstr and placeholders(msgid) != placeholders(msgstr)
    ]
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


def test_the_placeholder_check_sees_a_difference() -> None:
    assert placeholders("{path}: {count} error(s)") != placeholders("{path}：{n} 个错误")
    assert placeholders("device %s on bus %s") != placeholders("设备 %s 总线 %d")
    assert placeholders("%(prog)s: error") != placeholders("%(prg)s：错误")
    assert placeholders("{free:.0f} MB") != placeholders("{free} MB")
    assert placeholders("{name!r}") != placeholders("{name}")
    assert placeholders("on {percent:.0f} % of the time") == placeholders("{percent:.0f}% 为开")


def test_argparse_words_are_in_the_catalogue() -> None:
    words = {
        message if isinstance(message, str) else message[0]
        for _line, message, _comments, _context in extract_from_file("python", argparse.__file__)
    }
    assert words - ARGPARSE_INTERNAL <= set(i18n.ARGPARSE_WORDS), (
        "argparse of this Python has words that people meet and watchpost.i18n does not list: "
        f"{sorted(words - ARGPARSE_INTERNAL - set(i18n.ARGPARSE_WORDS))}"
    )


def test_the_compiled_catalogue_is_the_po() -> None:
    mo = gettext.find(i18n.DOMAIN, str(i18n.LOCALE_DIR), ["zh_CN"])
    assert mo is not None, (
        "no compiled catalogue: run scripts/setup (or scripts/translations compile)"
    )
    with Path(mo).open("rb") as file:
        compiled = gettext.GNUTranslations(file)
    stale = [
        msgid
        for msgid, (msgstr, flags) in catalogue().items()
        if msgstr and "fuzzy" not in flags and compiled.gettext(msgid) != msgstr
    ]
    assert not stale, (
        f"{mo} is older than the .po: run scripts/setup (or scripts/translations compile): "
        f"{stale[:5]}"
    )


def test_the_latin_sentence_check_sees_english() -> None:
    assert latin_sentences("  --json     print JSON for scripts instead of tables")
    assert not latin_sentences("  --json     输出供脚本使用的 JSON，而不是表格")
    assert not latin_sentences("用法：watchpost status [-h] [--config CONFIG] [--json]")
    assert not latin_sentences("  ch4_face_1   0.42   %CH4   good")


# -- the CLI, as a person runs it ------------------------------------------------------------


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command and sub-command of `watchpost`, e.g. ("alarms", "ack")."""

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*path, name))

    yield from walk(build_parser(), ())


@pytest.mark.parametrize("path", list(command_paths()), ids=lambda p: " ".join(p) or "watchpost")
def test_help_in_chinese(path: tuple[str, ...]) -> None:
    result = watchpost(*path, "--help", lang="zh_CN.UTF-8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("用法：watchpost"), result.stdout
    assert "显示此帮助信息并退出" in result.stdout
    assert latin_sentences(result.stdout) == [], result.stdout


def test_help_in_english_under_c() -> None:
    result = watchpost("--help", lang="C")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: watchpost")
    assert "show this help message and exit" in result.stdout
    assert "Watchpost safety gateway: sensors, local alarms" in result.stdout
    assert not CJK.search(result.stdout)
    unset = subprocess.run(
        [sys.executable, "-m", "watchpost", "--help"],
        env={k: v for k, v in language_env("C").items() if k != "LANG"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert unset.stdout == result.stdout  # no locale at all: English too


def test_a_usage_error_in_chinese() -> None:
    result = watchpost("status", "--no-such-flag", lang="zh_CN.UTF-8")
    assert result.returncode == 2
    assert "watchpost：错误：无法识别的参数：--no-such-flag" in result.stderr, result.stderr


BAD_CONFIG = """\
[gateway]
site = "mine-7"
id = "gw 1"
colour = "red"

[uplink]
broker = "mqtt://127.0.0.1:1883"

[store]
path = "var/buffer.db"

[[buses]]
name = "tcp1"
type = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "d1"
bus = "tcp1"

[[devices.points]]
name = "ch4"
address = 0
scale = "abc"
"""


@pytest.mark.parametrize(
    ("lang", "sentences"),
    [
        ("zh_CN.UTF-8", ["只能包含字母、数字", "不是可识别的配置项", "必须是数值", "个错误"]),
        ("C", ["may hold only letters, digits", "is not a known key", "must be a number"]),
    ],
)
def test_a_bad_config(tmp_path: Path, lang: str, sentences: list[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(BAD_CONFIG)
    result = watchpost("config", "check", str(config), lang=lang)
    assert result.returncode == 78, result.stderr
    for key_path in ("gateway.id", "gateway.colour", "devices[0].points[0].scale"):
        assert key_path in result.stderr  # the key path stays as it is
    assert "'abc'" in result.stderr  # and so does the value
    for sentence in sentences:
        assert sentence in result.stderr, result.stderr
    if lang.startswith("zh"):
        assert latin_sentences(result.stderr) == [], result.stderr
    else:
        assert not CJK.search(result.stderr)


def test_the_environment_names_the_language() -> None:
    assert i18n.environment_language({"LANG": "zh_CN.UTF-8"}) == "zh_CN.UTF-8"
    assert i18n.environment_language({"LANGUAGE": "zh_CN:en", "LANG": "C"}) == "zh_CN"
    assert i18n.environment_language({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}) is None
    assert i18n.environment_language({"LC_MESSAGES": "en_GB.UTF-8"}) == "en_GB.UTF-8"
    assert i18n.environment_language({"LANGUAGE": "", "LANG": "POSIX"}) is None
    assert i18n.environment_language({}) is None


def test_the_config_language_applies_only_where_the_environment_names_none(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nsite = "s"\nid = "g"\nlanguage = "zh_CN"\n')
    c_locale = {"LANG": "C.UTF-8"}
    assert i18n.apply_configured_language(config, c_locale) == "zh_CN"
    assert c_locale["LANGUAGE"] == "zh_CN"
    english = {"LANG": "en_US.UTF-8"}
    assert i18n.apply_configured_language(config, english) is None
    assert "LANGUAGE" not in english
    (tmp_path / "broken.toml").write_text("[gateway\n")
    assert i18n.apply_configured_language(tmp_path / "broken.toml", {}) is None
    assert i18n.apply_configured_language(tmp_path / "absent.toml", {}) is None


def test_the_wheel_carries_the_compiled_catalogue(tmp_path: Path) -> None:
    """`pip install .` and the packages install a wheel: the build compiles the catalogue."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        mo = archive.read("watchpost/locale/zh_CN/LC_MESSAGES/watchpost.mo")
    assert not [name for name in names if name.endswith(".po")]  # compiled, not the sources
    compiled = gettext.GNUTranslations(io.BytesIO(mo))
    assert compiled.gettext("usage: ") == "用法："
