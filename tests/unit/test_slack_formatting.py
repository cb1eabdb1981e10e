"""Markdown (LLM output) to Slack mrkdwn, without mention or link injection — insightmesh.slack.formatting."""

from __future__ import annotations

import re

import pytest

from insightmesh.slack.formatting import MAX_MESSAGE_CHARS, escape, to_mrkdwn, truncate

# Anything Slack would parse as a special token: <!channel>, <!here>, <@U...>, <#C...>, <url|text>.
SLACK_TOKEN = re.compile(r"<[^<>]*>")


def slack_tokens(mrkdwn: str) -> list[str]:
    return SLACK_TOKEN.findall(mrkdwn)


# -- conversion ---------------------------------------------------------------------------------------
def test_bold_becomes_single_asterisks() -> None:
    assert to_mrkdwn("this is **important**") == "this is *important*"


def test_italic_becomes_underscores() -> None:
    assert to_mrkdwn("this is *subtle*") == "this is _subtle_"


def test_markdown_link_becomes_a_slack_link() -> None:
    result = to_mrkdwn("see [the handbook](https://example.com/handbook)")

    assert result == "see <https://example.com/handbook|the handbook>"


@pytest.mark.parametrize("level", range(1, 7))
def test_headers_become_bold_lines(level: int) -> None:
    assert to_mrkdwn(f"{'#' * level} Next steps\nbody") == "*Next steps*\nbody"


def test_unordered_lists_become_bullets() -> None:
    assert to_mrkdwn("- one\n- two\n* three") == "• one\n• two\n• three"


def test_ordered_lists_stay_numbered() -> None:
    assert to_mrkdwn("1. one\n2. two") == "1. one\n2. two"


def test_inline_code_is_kept() -> None:
    assert to_mrkdwn("run `make test` now") == "run `make test` now"


def test_code_blocks_are_kept_and_not_reformatted_inside() -> None:
    result = to_mrkdwn("Try:\n```python\nx = a**b * c\n```")

    assert "```" in result
    assert "x = a**b * c" in result


def test_strikethrough_becomes_single_tildes() -> None:
    assert to_mrkdwn("~~old~~ new") == "~old~ new"


# -- escaping and injection -----------------------------------------------------------------------------
def test_ampersand_and_angle_brackets_are_escaped() -> None:
    assert to_mrkdwn("R&D < sales > ops") == "R&amp;D &lt; sales &gt; ops"


def test_escape_escapes_the_three_special_characters() -> None:
    assert escape("<a & b>") == "&lt;a &amp; b&gt;"


@pytest.mark.parametrize("special", ["<!channel>", "<!here>", "<!everyone>", "<!subteam^S123|@team>",
                                     "<@U123>", "<@U123|boss>", "<#C123|general>"])
def test_mentions_in_model_output_are_not_mentions(special: str) -> None:
    result = to_mrkdwn(f"Attention {special} please")

    assert slack_tokens(result) == []
    assert special.replace("<", "&lt;").replace(">", "&gt;") in result


def test_a_disguised_raw_link_is_not_a_link() -> None:
    result = to_mrkdwn("click <https://evil.example|innocent.example> to log in")

    assert slack_tokens(result) == []
    assert "&lt;https://evil.example|innocent.example&gt;" in result


@pytest.mark.parametrize("markdown", ["[x](!channel)", "[x](@U123)", "[x](#C123)", "![img](!here)",
                                      "[urgent](!subteam^S123)"])
def test_markdown_links_to_slack_tokens_are_not_mentions(markdown: str) -> None:
    result = to_mrkdwn(f"see {markdown}")

    assert slack_tokens(result) == []


def test_markdown_autolinks_are_kept_as_links() -> None:
    assert to_mrkdwn("docs: <https://example.com/docs?page=2>") == "docs: <https://example.com/docs?page=2>"


def test_mailto_links_are_kept() -> None:
    assert slack_tokens(to_mrkdwn("[mail us](mailto:help@example.com)")) == ["<mailto:help@example.com|mail us>"]


def test_the_only_links_in_mixed_output_are_the_web_links() -> None:
    markdown = ("**Summary** <!channel>: read [the doc](https://example.com/doc) and <https://example.com/faq>; "
                "ignore <https://evil.example|safe> and [ping](@U999).")

    result = to_mrkdwn(markdown)

    assert slack_tokens(result) == ["<https://example.com/doc|the doc>", "<https://example.com/faq>"]


# -- length ---------------------------------------------------------------------------------------------
def test_short_text_is_not_truncated() -> None:
    text = "a" * MAX_MESSAGE_CHARS

    assert to_mrkdwn(text) == text


def test_text_over_the_limit_is_truncated_with_a_marker() -> None:
    result = to_mrkdwn("word " * 2000)

    assert len(result) <= MAX_MESSAGE_CHARS
    assert result.endswith("_(truncated)_")
    assert result.startswith("word word")


def test_truncate_respects_a_custom_limit() -> None:
    result = truncate("x" * 500, limit=100)

    assert len(result) <= 100
    assert result.endswith("_(truncated)_")
    assert truncate("short", limit=100) == "short"


# -- disguised links (issue 10 §4) ---------------------------------------------------------------------
@pytest.mark.parametrize(("markdown", "expected"), [
    ("[https://bank.example/login](https://evil.example/phish)", "<https://evil.example/phish|evil.example>"),
    ("[bank.example](https://evil.example)", "<https://evil.example|evil.example>"),
    ("[www.bank.example/account](http://10.0.0.5/steal)", "<http://10.0.0.5/steal|10.0.0.5>"),
    ("[**paypal.com**](https://paypa1.com/x)", "<https://paypa1.com/x|paypa1.com>"),
    ("[support@corp.example](mailto:attacker@evil.example)",
     "<mailto:attacker@evil.example|attacker@evil.example>"),
])
def test_link_text_that_reads_as_another_host_shows_the_real_host(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


@pytest.mark.parametrize(("markdown", "expected"), [
    ("[example.com/handbook](https://www.example.com/handbook)",
     "<https://www.example.com/handbook|example.com/handbook>"),
    ("[https://Example.com](https://example.com/a)", "<https://example.com/a|https://Example.com>"),
    ("[the handbook](https://example.com/handbook)", "<https://example.com/handbook|the handbook>"),
    ("[version 2.5 notes](https://example.com/v2)", "<https://example.com/v2|version 2.5 notes>"),
    ("[alice@corp.example](mailto:alice@corp.example)", "<mailto:alice@corp.example|alice@corp.example>"),
])
def test_honest_links_keep_their_text(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected
