"""The stream buffer (issue 14): how often a streamed answer reaches Slack, and where it is cut."""

from __future__ import annotations

import pytest

from insightmesh.slack.stream_buffer import StreamBuffer, safe_cut


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(text: str, *, interval: float = 1.0, per_second: int = 50, min_chars: int = 1) -> list[str]:
    """Feed ``text`` a word at a time at ``per_second`` words a second; what ``take`` handed out."""
    clock = Clock()
    buffer = StreamBuffer(interval=interval, min_chars=min_chars, clock=clock)
    parts: list[str] = []
    for word in text.split(" "):
        buffer.add(word + " ")
        clock.now += 1 / per_second
        if part := buffer.take():
            parts.append(part)
    while part := buffer.take(final=True):
        parts.append(part)
    assert "".join(parts) == text + " "
    return parts


def test_the_first_text_goes_out_at_once_then_at_most_once_per_interval() -> None:
    clock = Clock()
    buffer = StreamBuffer(interval=1.0, clock=clock)
    buffer.add("Hello ")
    assert buffer.take() == "Hello "  # no wait for the first words
    buffer.add("there ")
    clock.now = 0.5
    assert buffer.take() == ""
    clock.now = 1.0
    assert buffer.take() == "there "


def test_400_tokens_at_50_a_second_make_about_one_call_a_second() -> None:
    parts = stream(" ".join(f"word{i}" for i in range(400)))  # 8 seconds of streaming
    assert 8 <= len(parts) <= 10


def test_min_chars_holds_back_small_parts() -> None:
    parts = stream(" ".join(f"w{i}" for i in range(400)), min_chars=400)
    assert all(len(part) >= 400 for part in parts[1:-1])


@pytest.mark.parametrize("text", [
    "This is *very important* to know",
    "Say _hello there_ to everyone",
    "A **strong claim about** things",
    "Run `make test all` first",
    "See <https://example.com/a b|the docs> now",
    "See [the docs page](https://example.com/x y) now",
    "~gone for good~ mostly",
])
def test_a_part_never_ends_inside_a_markdown_construct(text: str) -> None:
    for part_end in _ends(stream(text, interval=0.0)):
        head = (text + " ")[:part_end]
        assert head.count("*") % 2 == 0 and head.count("_") % 2 == 0 and head.count("`") % 2 == 0
        assert head.count("<") == head.count(">") and head.count("[") == head.count("]")
        assert head.count("(") == head.count(")") and head.count("~") % 2 == 0


def test_a_code_fence_goes_out_whole() -> None:
    text = "Here:\n```\nline one\nline two\n```\nDone."
    clock = Clock()
    buffer = StreamBuffer(interval=0.0, clock=clock)
    parts = []
    for char in text:
        buffer.add(char)
        if part := buffer.take():
            parts.append(part)
    parts.append(buffer.take(final=True))
    assert "".join(parts) == text
    assert any(part.startswith("```") or "```\nline one\nline two\n```" in part for part in parts)
    for end in _ends(parts[:-1]):
        assert text[:end].count("```") % 2 == 0


def test_words_and_snake_case_are_not_split() -> None:
    assert safe_cut("snake_case_name and more", 0) == len("snake_case_name and ")
    assert safe_cut("unfinished wor", 0) == len("unfinished ")


def test_a_construct_open_too_long_is_cut_at_a_newline_within_slacks_limit() -> None:
    text = "```\n" + "x = 1\n" * 50
    buffer = StreamBuffer(interval=0.0, max_chars=100)
    buffer.add(text)
    part = buffer.take()
    assert 0 < len(part) <= 100 and part.endswith("\n")


def _ends(parts: list[str]) -> list[int]:
    ends, total = [], 0
    for part in parts:
        total += len(part)
        ends.append(total)
    return ends
