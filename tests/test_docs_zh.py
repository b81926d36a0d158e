"""The Chinese twins in docs/zh/ keep what an installer types exactly as the English has it.

Each ``docs/zh/NAME.md`` (but the glossary) follows ``docs/NAME.md``: it names the English
document on its first lines, every backquoted key, command, topic or value of the English
appears backquoted in it too, and its code blocks are the English's with only the ``#``
comments translated. A key renamed in one language and not in the other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
ZH = DOCS / "zh"
NOT_TWINS = {"glossary.md"}
TWINS = sorted(p.name for p in ZH.glob("*.md") if p.name not in NOT_TWINS)

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CHECKED_BLOCKS = {"toml", "json"}  # output shown to people is translated, settings are not
SPAN = re.compile(r"(`+)(.+?)\1")
# what a person types: a command, a [section] or [section] key, a key or a dotted key path
TYPED = re.compile(
    r"(watchpost|scripts/)\S.*"
    r"|\[\[?[a-z_.]+\]\]?( [a-z_]+)?( = .*)?"
    r"|[a-z][a-z0-9]*(_[a-z0-9]+)+(\.[a-z0-9_]+)*( = .*)?"
)
DESCRIPTION = re.compile(r'description = ".*"')  # free text for people, may be translated
LINK = re.compile(r"\]\((?:\.\./)?([\w./-]+\.md)\)")
# a comment: '#' at the start of a line or after a space, outside quotes
COMMENT = re.compile(r"""^((?:[^"'#]|"[^"\n]*"|'[^'\n]*')*?)(?:^|\s)#.*$""")


def code_blocks(text: str) -> list[str]:
    """The toml and json blocks of ``text``: lines without comments, descriptions blanked."""
    return [
        "\n".join(
            DESCRIPTION.sub("description = ...", line)
            for raw in block.splitlines()
            if (line := COMMENT.sub(r"\1", raw).rstrip()) or raw.strip() == ""
        ).strip("\n")
        for language, block in FENCE.findall(text)
        if language.strip() in CHECKED_BLOCKS
    ]


def typed(text: str) -> set[str]:
    """Backquoted commands, sections and keys outside the fenced blocks."""
    return {
        span.strip()
        for _ticks, span in SPAN.findall(FENCE.sub("", text))
        if TYPED.fullmatch(span.strip())
    }


def linked(text: str) -> set[str]:
    """The documents ``text`` links, as `docs/NAME.md` (a zh twin also stands for its original)."""
    names = {name.removeprefix("zh/") for name in LINK.findall(text)}
    return {f"docs/{name}" for name in names} | {f"docs/zh/{name}" for name in names}


def differences(english: str, chinese: str) -> list[str]:
    """What the Chinese text lacks of the English one, one line each; empty if nothing."""
    have = typed(chinese) | {span for _ticks, span in SPAN.findall(chinese)} | linked(chinese)
    wrong = [f"missing `{span}`" for span in sorted(typed(english) - have)]
    zh_blocks = code_blocks(chinese)
    wrong += [
        f"code block {number} not in the Chinese (or changed):\n{block}"
        for number, block in enumerate(code_blocks(english), start=1)
        if block not in zh_blocks
    ]
    return wrong


def test_every_zh_document_has_an_english_original() -> None:
    assert TWINS, "no Chinese documents found in docs/zh/"
    lone = [name for name in TWINS if not (DOCS / name).is_file()]
    assert not lone, f"docs/zh/ documents without docs/ original: {lone}"


@pytest.mark.parametrize("name", TWINS)
def test_the_twin_names_its_english_document(name: str) -> None:
    head = "\n".join((ZH / name).read_text(encoding="utf-8").splitlines()[:6])
    assert f"](../{name})" in head, f"docs/zh/{name} does not link docs/{name} at the top"


@pytest.mark.parametrize("name", TWINS)
def test_the_twin_keeps_keys_commands_and_code(name: str) -> None:
    english = (DOCS / name).read_text(encoding="utf-8")
    chinese = (ZH / name).read_text(encoding="utf-8")
    wrong = differences(english, chinese)
    assert not wrong, f"docs/zh/{name} against docs/{name}:\n" + "\n".join(wrong)


def test_the_check_sees_a_renamed_key_and_a_changed_block() -> None:
    english = "Set `on_delay`.\n\n```toml\nlatch = true   # stays\n```\n"
    same = "设置 `on_delay`。\n\n```toml\nlatch = true   # 保持\n```\n"
    renamed = "设置 `delay`。\n\n```toml\nlatch = false  # 保持\n```\n"
    assert differences(english, same) == []
    wrong = differences(english, renamed)
    assert "missing `on_delay`" in wrong
    assert any(line.startswith("code block 1 not in the Chinese") for line in wrong)
    assert differences(english, "设置 `on_delay`。\n")[0].startswith("code block 1 not in")
