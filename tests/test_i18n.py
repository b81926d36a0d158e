"""Chinese for the people at the site, and the guard that keeps it complete.

The catalogue: every msgid in the code has a reviewed Chinese translation with the msgid's
placeholders; argparse's own words are in it; the compiled catalogue is the `.po`'s. The CLI
run as a person runs it, under ``LANG=zh_CN.UTF-8``: no Latin-only sentence in what it
prints (a text that is not wrapped in ``_()`` shows up here), and under ``LANG=C`` English.
"""

from __future__ import annotations

import argparse
import gettext
import html
import io
import json
import os
import re
import select
import string
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.conftest import Broker, Subscriber
from tests.site_run import DEMO, SiteRun
from tests.test_report_browser import CHROMIUM, MEASURE, FakeClock, Health
from tests.test_report_browser import _chromium as chromium
from tests.test_report_browser import _overlap as overlap
from tests.test_report_browser import _samples as browser_samples
from watchpost import i18n
from watchpost.alarms import AlarmEngine
from watchpost.cli import build_parser
from watchpost.config import load_config
from watchpost.history import MINUTE_MS, HistoryRecorder

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "gateway" / "locale" / "zh_CN" / "LC_MESSAGES" / "watchpost.po"
SOURCES = ("gateway", "drivers", "provisioning", "models")  # what scripts/translations reads
T0 = 1_740_816_000_000  # 2025-03-01T08:00:00Z
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
    assert placeholders("{free:.0f} % of the disk") == placeholders("磁盘的 {free:.0f}%")


def test_babel_finds_no_error_in_the_catalogue() -> None:
    """What `pybabel compile` checks: a msgid whose "% o" reads as a printf conversion
    ("on {percent} % of the time") has placeholders its translation cannot have."""
    with PO.open("rb") as file:
        errors = [
            f"{message.id!r}: {'; '.join(str(error) for error in found)}"
            for message, found in read_po(file).check()
        ]
    assert not errors, "\n".join(errors)


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


def test_the_daemon_words_a_bad_config_in_the_configured_language(tmp_path: Path) -> None:
    """`watchpost run` validates in a child process: the child speaks the config's language."""
    config = tmp_path / "gateway.toml"
    config.write_text(BAD_CONFIG.replace('colour = "red"', 'colour = "red"\nlanguage = "zh_CN"'))
    config.chmod(0o640)
    result = watchpost("run", "--config", str(config), lang="C")
    assert result.returncode == 78, result.stderr
    for key_path in ("gateway.id", "gateway.colour", "devices[0].points[0].scale"):
        assert key_path in result.stderr
    for sentence in ("只能包含字母、数字", "不是可识别的配置项", "必须是数值", "个错误"):
        assert sentence in result.stderr, result.stderr


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


# -- the daemon and the crew's commands, with `[gateway] language` ---------------------------


@pytest.fixture(scope="module")
def chinese_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteRun]:
    """The demo site; the gateway's config says `language = "zh_CN"`, and the daemon runs
    under the suite's C locale, as under systemd."""
    broker = Broker(tmp_path_factory.mktemp("broker"))
    broker.start()
    run = SiteRun(tmp_path_factory.mktemp("site"), broker.url)
    text = run.config.read_text()
    assert "\n[uplink]" in text
    run.config.write_text(text.replace("\n[uplink]", '\nlanguage = "zh_CN"\n\n[uplink]', 1))
    run.config.chmod(0o640)
    sub = Subscriber(broker, "watchpost/v1/demo-colliery/gw-01/#")
    try:
        run.start_gateway()
        sub.wait_for("watchpost/v1/demo-colliery/gw-01/telemetry", count=2, timeout=30)
        yield run
    finally:
        sub.close()
        run.close()
        broker.stop()


def crew(run: SiteRun, *args: str, lang: str) -> subprocess.CompletedProcess[str]:
    return watchpost(*args, "--config", str(run.config), lang=lang, cwd=run.folder)


def test_the_daemon_logs_in_the_configured_language(chinese_site: SiteRun) -> None:
    log = chinese_site.log("gateway")
    assert "网关 demo-colliery/gw-01 已启动" in log, log
    assert "started:" not in log


def test_status_against_the_running_daemon_in_chinese(chinese_site: SiteRun) -> None:
    for lang in ("zh_CN.UTF-8", "C"):  # C: the config's language applies
        result = crew(chinese_site, "status", lang=lang)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "守护进程：运行中" in out, out
        assert "上传通道：已连接" in out
        for heading in ("设备", "状态", "总线", "测点", "数值", "单位", "质量"):
            assert heading in out, heading
        assert re.search(r"face-station\s+正常\s+face", out), out
        assert re.search(r"temp_face_1\s+\S+\s+℃\s+正常", out), out  # degC as sites write it
        assert latin_sentences(out) == [], out
    english = crew(chinese_site, "status", lang="en_US.UTF-8")  # a person's own locale wins
    assert "daemon: running" in english.stdout, english.stdout
    assert re.search(r"face-station\s+ok\s+face", english.stdout)
    assert not CJK.search(english.stdout)


def test_selftest_alarms_and_backlog_in_chinese(chinese_site: SiteRun) -> None:
    selftest = crew(chinese_site, "selftest", lang="zh_CN.UTF-8")
    assert selftest.returncode in (0, 1), selftest.stderr
    assert selftest.stdout.startswith("检查项"), selftest.stdout
    assert re.search(r"MQTT 服务器\s+通过\s+\S+：已连接", selftest.stdout), selftest.stdout
    assert re.search(r"设备 face-station\s+通过\s+正常", selftest.stdout)
    assert re.search(r"时钟\s+(通过|警告)\s+\S*[\u4e00-\u9fff]", selftest.stdout)
    for args in (("alarms",), ("backlog",), ("read", "tank-1", "0")):
        result = crew(chinese_site, *args, lang="zh_CN.UTF-8")
        assert result.returncode == 0, (args, result.stderr)
        assert CJK.search(result.stdout), (args, result.stdout)
        assert latin_sentences(result.stdout + result.stderr) == [], (args, result.stdout)
    assert latin_sentences(selftest.stdout) == [], selftest.stdout
    missing = crew(chinese_site, "read", "no-such-device", "0", lang="zh_CN.UTF-8")
    assert missing.returncode != 0
    assert "没有名为 'no-such-device' 的设备" in missing.stderr, missing.stderr


# -- the report --------------------------------------------------------------------------------


def site_history(folder: Path, extra_gateway_keys: str) -> tuple[Path, Path]:
    """The demo config (with ``extra_gateway_keys``) and 30 minutes of history with a
    methane incident: alarms raised, acknowledged and cleared."""
    text = (DEMO / "gateway.toml").read_text()
    text = text.replace('path = "var/buffer.db"', f'path = "{folder}/var/buffer.db"')
    text = text.replace("\n[uplink]", f"\n{extra_gateway_keys}\n\n[uplink]", 1)
    config_file = folder / "gateway.toml"
    config_file.write_text(text)
    config = load_config(config_file)
    clock = FakeClock(T0)
    devices = {"face-station": Health(), "fan-meter": Health(), "tank-1": Health()}
    recorder = HistoryRecorder(folder / "history.db", devices=lambda: devices, now_ms=clock)
    engine = AlarmEngine({p.name: p.alarms for _d, p in config.points()}, clock)
    engine.add_listener(recorder.record_alarm)
    for minute in range(30):
        for second in range(0, 60, 5):
            clock.ms = ts = T0 + minute * MINUTE_MS + second * 1000
            samples = browser_samples(minute, second, ts)
            engine.evaluate(samples)
            recorder.observe(samples)
            for health in devices.values():
                health.polls += 1
            if minute == 12 and second == 30:
                engine.acknowledge("ch4_face_1/high_critical", by="李伟", note="已恢复通风")
        clock.ms = T0 + (minute + 1) * MINUTE_MS + 500
        recorder.write(recorder.take())
    recorder.close()
    return config_file, folder / "history.db"


class PageText(HTMLParser):
    """The page's text nodes, its headings, and the <html> element's lang."""

    def __init__(self) -> None:
        super().__init__()
        self.lang = ""
        self.texts: list[str] = []
        self.headings: list[str] = []
        self._tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang") or ""
        self._tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._tags and self._tags.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._tags and self._tags[-1] in ("style", "script"):
            return
        if data.strip():
            self.texts.append(data.strip())
            if self._tags and self._tags[-1] in ("h1", "h2"):
                self.headings.append(data.strip())


def make_page(tmp_path: Path, lang: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    config, history = site_history(tmp_path, 'timezone = "Asia/Shanghai"')
    out = tmp_path / "report.html"
    result = watchpost(
        "report", "--config", str(config), "--history", str(history), "--out", str(out),
        "--since", "2025-03-01T08:00", lang=lang,
    )  # fmt: skip
    return result, out


def test_the_report_in_chinese_in_the_sites_time_zone(tmp_path: Path) -> None:
    result, out = make_page(tmp_path, "zh_CN.UTF-8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("报告已写入："), result.stdout
    assert "北京时间（UTC+08:00）" in result.stdout  # 08:00 UTC is 16:00 at the site
    assert "2025-03-01 16:00:00 至 2025-03-01 16:30:00" in result.stdout, result.stdout
    page = PageText()
    page.feed(out.read_text(encoding="utf-8"))
    assert page.lang == "zh-CN"
    assert page.headings[0] == "调试报告：demo-colliery / gw-01"
    assert {"网关", "测点概览", "测点", "报警事件", "各设备通讯情况"} <= set(page.headings)
    assert all(CJK.search(h) for h in page.headings), page.headings
    text = "\n".join(page.texts)
    assert "所有时间均为北京时间（UTC+08:00）。" in text
    assert "fan_energy (kW·h)" in text  # units as Chinese sites write them
    assert "temp_face_1 (℃)" in text
    for word in ("报警", "确认", "解除", "李伟", "已恢复通风"):
        assert word in text, word
    assert "2025-03-01 16:12:30" in text  # the acknowledgement, in the site's time
    # the points' descriptions are what the installer typed (English in the demo config)
    typed = [p.description for _d, p in load_config(tmp_path / "gateway.toml").points()]
    ours = [t for t in page.texts if not any(d and t.startswith(d) for d in typed)]
    assert latin_sentences("\n".join(ours)) == [], latin_sentences("\n".join(ours))


def test_the_report_in_english_under_c(tmp_path: Path) -> None:
    result, out = make_page(tmp_path, "C")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("report written:")
    page = PageText()
    page.feed(out.read_text(encoding="utf-8"))
    assert page.lang == "en"
    assert page.headings[0] == "Commissioning report: demo-colliery / gw-01"
    text = "\n".join(page.texts)
    assert "All times are Asia/Shanghai time (UTC+08:00)." not in text
    assert "All times are China Standard Time (UTC+08:00)." in text
    assert "fan_energy (kWh)" in text
    assert not CJK.search(text.replace("李伟", "").replace("已恢复通风", ""))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup)")
def test_the_chinese_report_in_a_browser(tmp_path: Path) -> None:
    """Chromium lays the Chinese page out: no text of a plot overlaps another or leaves its
    plot, the legend's items stand apart; a screenshot is kept for people to look at."""
    result, out = make_page(tmp_path, "zh_CN.UTF-8")
    assert result.returncode == 0, result.stderr
    measured = out.with_name("measured.html")
    measured.write_text(
        out.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8"
    )
    dump = chromium(
        "--window-size=1100,900", "--dump-dom", measured.as_uri(), profile=tmp_path / "p1"
    )
    found = re.search(r'<pre id="layout">(.*?)</pre>', dump.stdout, re.S)
    assert found, dump.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["plots"]
    for plot in layout["plots"]:
        texts = plot["texts"]
        for i, a in enumerate(texts):
            assert plot["box"]["left"] - 0.5 <= a["left"], (plot["label"], a)
            assert a["right"] <= plot["box"]["right"] + 0.5, (plot["label"], a)
            for b in texts[i + 1 :]:
                assert not overlap(a, b), (plot["label"], a, b)
    items = layout["legendItems"]
    assert any(CJK.search(item["text"]) for item in items)
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            assert not overlap(a, b), (a, b)
    shot = tmp_path / "report-zh.png"
    chromium(
        "--window-size=1100,2400", f"--screenshot={shot}", out.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.exists(), "no screenshot"
    assert shot.stat().st_size > 50_000  # plots and Chinese text, not a blank page


# -- scan ---------------------------------------------------------------------------------------


def test_a_scan_progress_line_in_chinese(tmp_path: Path) -> None:
    """`scan` on a real pseudo-terminal line where no unit answers, its progress on a
    terminal (another pseudo-terminal) as an installer sees it."""
    line_master, line_slave = os.openpty()
    screen_master, screen_slave = os.openpty()
    try:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "watchpost", "scan", "--port", os.ttyname(line_slave)),
                *("--baud", "9600", "--parity", "N", "--units", "1-3", "--timeout", "0.05"),
            ],
            env=language_env("zh_CN.UTF-8"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=screen_slave,
        )
        os.close(screen_slave)
        screen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([screen_master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(screen_master, 4096)
                except OSError:  # the scan closed its end
                    break
                if not chunk:
                    break
                screen += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=30)
    finally:
        for fd in (line_master, line_slave, screen_master):
            os.close(fd)
    text = screen.decode("utf-8", errors="replace")
    assert process.returncode != 0  # nothing found
    assert "9600 8N1（第 1/1 组参数）  从站   1（第 1/3 个）  已找到 0" in text, text
    assert "上没有从站应答" in text, text
    lines = [part for line in text.splitlines() for part in line.split("\r")]
    assert latin_sentences("\n".join(lines)) == [], text


# English words of the glossary (docs/zh/glossary.md) and the Chinese every translation of
# a text with that word uses; names, keys, options and placeholders are not words here
GLOSSARY = {
    r"\backnowledg": "确认",
    r"\bshelv|\bshelf": "搁置",
    r"\balarm": "报警",
    r"\bbroker": "MQTT 服务器",
    r"\bbundles?\b": "配置包",
    r"\bmanifest\b": "站点清单",
    r"\bcalibrat": "标定",
    r"\bpoints?\b": "测点",
    r"\buplink": "上传通道",
    r"\bself-test|\bselftest": "自检",
    r"\bdaemon": "守护进程",
}
NOT_THE_TERM = {  # the English word in another sense
    "{path}: others can read this file, which points at credentials (chmod 640)",
}


def words_of(msgid: str) -> str:
    """``msgid`` without placeholders, [sections], `code`, 'quoted', options and names."""
    return re.sub(
        r"\{[^}]*\}|%\([^)]*\)\w|\[[^\]]*\]|`[^`]*`|'[^']*'|--?[\w-]+|\S+[._/]\S+|#.*",
        " ",
        msgid,
    )


def test_the_glossary_is_used_consistently() -> None:
    wrong = [
        f"{chinese}: {msgid!r} -> {msgstr!r}"
        for msgid, (msgstr, _flags) in catalogue().items()
        if msgstr and msgid not in NOT_THE_TERM
        for english, chinese in GLOSSARY.items()
        if re.search(english, words_of(msgid), re.IGNORECASE) and chinese not in msgstr
    ]
    assert not wrong, "not in the glossary's words (docs/zh/glossary.md):\n" + "\n".join(wrong)
