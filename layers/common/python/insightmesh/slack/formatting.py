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

# No "|" in an autolink: <https://evil|innocent> would be a link disguised as other text.
_AUTOLINK = re.compile(r"&lt;(https?://[^\s&|]+)&gt;")
_SLACK_LINK = re.compile(r"<([^<>|]*)((?:\|[^<>]*)?)>")
_WEB_TARGET = re.compile(r"(?:https?://|mailto:)\S+")


@lru_cache(maxsize=1)
def _converter() -> SlackMarkdownConverter:
    return SlackMarkdownConverter()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    escaped = escape(markdown)
    escaped = _AUTOLINK.sub(r"<\1>", escaped)  # Markdown autolinks <https://...> stay links
    converted: str = _converter().convert(escaped)
    return truncate(_web_links_only(converted).strip())


def _web_links_only(mrkdwn: str) -> str:
    """The converter makes ``[text](target)`` and ``![alt](target)`` into ``<target|text>`` and
    ``<target>`` whatever the target: ``[x](!channel)`` would become a ``<!channel|x>`` mention.
    Only web and mail links stay links; any other ``<...>`` is escaped back to text."""

    def keep_or_escape(link: re.Match[str]) -> str:
        if _WEB_TARGET.fullmatch(link.group(1)):
            return link.group(0)
        return f"&lt;{link.group(1)}{link.group(2)}&gt;"

    return _SLACK_LINK.sub(keep_or_escape, mrkdwn)


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + "\n… _(truncated)_"
