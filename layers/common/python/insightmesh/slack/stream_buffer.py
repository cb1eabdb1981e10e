"""How a streamed answer is cut into Slack calls: not too often, and never inside Markdown.

An LLM streams its answer a few characters at a time; Slack would rate-limit a call per piece
(``chat.appendStream`` and ``chat.update`` are tiered per workspace). ``StreamBuffer`` collects the
pieces (``add``) and ``take`` hands back the text that is due: the first text as soon as there is
any (the reader sees the answer start at once), then at most once per ``interval`` seconds and only
when at least ``min_chars`` are waiting, and ``take(final=True)`` everything that is left.

Text is only ever cut where no Markdown construct is open — not inside ``*bold*``, ``_italic_``,
``~strike~``, ``**bold**``, inline ``code``, a code fence, ``<link|label>`` or ``[label](url)`` —
and after whitespace, so a word is never split either. A construct that stays open longer than
``max_chars`` (an endless code block) is cut anyway, at a newline when it can be, because a
Slack call holds at most 12,000 characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

APPEND_LIMIT: Final = 12_000  # characters of markdown_text one chat.appendStream takes
_EMPHASIS: Final = "*_~"


def safe_cut(text: str, start: int = 0) -> int:
    """The largest position ``>= start`` after which ``text[:position]`` has no open Markdown
    construct and which follows whitespace; ``start`` when there is none. The scan covers the
    whole text (a construct opened before ``start`` counts)."""
    best = start
    fence = code = angle = bracket = paren = False
    emphasis: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if fence:
            if text.startswith("```", i):
                fence = False
                i += 3
                continue
        elif code:
            code = char != "`"
        elif angle:
            angle = char != ">"
        elif paren:
            paren = char != ")"
        elif text.startswith("```", i):
            fence = True
            i += 3
            continue
        elif char == "`":
            code = True
        elif char == "<" and i + 1 < n and not text[i + 1].isspace():
            angle = True
        elif char == "[":
            bracket = True
        elif char == "]" and bracket:
            bracket = False
            paren = text.startswith("(", i + 1)
            if paren:
                i += 2
                continue
        elif char in _EMPHASIS:
            run = char * 2 if text.startswith(char * 2, i) else char
            before = text[i - 1] if i else " "
            after = text[i + len(run)] if i + len(run) < n else " "
            if emphasis and emphasis[-1] == run and not before.isspace():
                emphasis.pop()
            elif not after.isspace() and not before.isalnum():
                emphasis.append(run)
            i += len(run)
            continue
        i += 1
        if i > start and text[i - 1].isspace() and not (fence or code or angle or bracket or paren or emphasis):
            best = i
    return best


class StreamBuffer:
    """Pieces of a streamed answer in, Slack-sized and Markdown-safe parts out (module docstring)."""

    def __init__(self, *, interval: float, min_chars: int = 1, max_chars: int = APPEND_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.min_chars, self.max_chars, self.clock = interval, min_chars, max_chars, clock
        self.text = ""  # everything added so far
        self.sent = 0  # how much of it take() has handed out
        self.last: float | None = None  # when take() last handed something out
        self.takes = 0

    @property
    def shown(self) -> str:
        """The text handed out so far."""
        return self.text[:self.sent]

    @property
    def pending(self) -> int:
        return len(self.text) - self.sent

    def add(self, piece: str) -> None:
        self.text += piece

    def due(self) -> bool:
        if self.pending <= 0:
            return False
        if self.last is None:
            return True
        return self.clock() - self.last >= self.interval and self.pending >= self.min_chars

    def take(self, *, final: bool = False) -> str:
        """The next part to show ('' when nothing is due, or nothing can be cut safely yet)."""
        if final:
            cut = min(len(self.text), self.sent + self.max_chars)
        elif not self.due():
            return ""
        else:
            cut = safe_cut(self.text, self.sent)
            if cut - self.sent > self.max_chars or (cut == self.sent and self.pending > self.max_chars):
                window = self.text[self.sent:self.sent + self.max_chars]
                newline = window.rfind("\n")
                cut = self.sent + (newline + 1 if newline > 0 else len(window))
        part = self.text[self.sent:cut]
        if part:
            self.sent = cut
            self.last = self.clock()
            self.takes += 1
        return part
