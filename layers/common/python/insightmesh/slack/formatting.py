"""Markdown (what LLMs write) to Slack mrkdwn (what Slack renders).

The conversion itself is markdown-to-mrkdwn's; before it, ``&``, ``<`` and ``>`` are escaped as
Slack requires, so model output can never smuggle in ``<!channel>``, ``<@U123>`` or a disguised
link — the only links in the result are the ``<url|text>`` ones made from Markdown links.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from markdown_to_mrkdwn import SlackMarkdownConverter

MAX_MESSAGE_CHARS: Final = 3900  # Slack truncates text past 40k and blocks past 3000; stay readable

_AUTOLINK = re.compile(r"&lt;(https?://[^\s&]+)&gt;")


@lru_cache(maxsize=1)
def _converter() -> SlackMarkdownConverter:
    return SlackMarkdownConverter()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    escaped = escape(markdown)
    escaped = _AUTOLINK.sub(r"<\1>", escaped)  # Markdown autolinks <https://...> stay links
    converted: str = _converter().convert(escaped)
    return truncate(converted.strip())


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + "\n… _(truncated)_"
