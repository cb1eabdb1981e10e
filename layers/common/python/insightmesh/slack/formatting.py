"""Markdown (what LLMs write) to Slack mrkdwn (what Slack renders).

The conversion itself is markdown-to-mrkdwn's; before it, ``&``, ``<`` and ``>`` are escaped as
Slack requires, so model output can never smuggle in ``<!channel>``, ``<@U123>`` or a disguised
link — the only links in the result are the ``<url|text>`` ones made from Markdown links. A
Markdown link whose text reads as an address on another host than its target's is rewritten to
show the target's real host.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from markdown_to_mrkdwn import SlackMarkdownConverter

MAX_MESSAGE_CHARS: Final = 3900  # Slack truncates text past 40k and blocks past 3000; stay readable

# No "|" in an autolink: <https://evil|innocent> would be a link disguised as other text.
_AUTOLINK = re.compile(r"&lt;(https?://[^\s&|]+)&gt;")
_SLACK_LINK = re.compile(r"<([^<>|]*)((?:\|[^<>]*)?)>")
_WEB_TARGET = re.compile(r"(?:https?://|mailto:)\S+")
# Link text that reads as an address: an optional scheme, a dotted host (TLD of letters, or an IPv4
# address), an optional port and path. "google.com", "https://www.google.com/login", "10.0.0.1".
_LOOKS_LIKE_URL = re.compile(
    r"(?:[a-z][a-z0-9+.-]*:/*)?(?:[^\s/@:|]+@)?"
    r"(?P<host>(?:[^\s/:?#|.]+\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+|\d{1,3})\.?)"
    r"(?::\d{1,5})?(?:[/?#]\S*)?",
    re.IGNORECASE,
)


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
            return _undisguised(link.group(1), link.group(2))
        return f"&lt;{link.group(1)}{link.group(2)}&gt;"

    return _SLACK_LINK.sub(keep_or_escape, mrkdwn)


def _host(value: str) -> str:
    host = value.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _undisguised(target: str, label: str) -> str:
    """``<target|label>``, unless the label reads as an address on another host than the target's
    (``[https://bank.example](https://evil.example)``): then the label becomes the real host."""
    text = label[1:].strip().strip("*_~`")
    shown = _LOOKS_LIKE_URL.fullmatch(text) if text else None
    if shown is None:
        return f"<{target}{label}>"
    if target.lower().startswith("mailto:"):
        real = target[len("mailto:"):].split("?", 1)[0]
        return f"<{target}|{real}>" if text.lower() != real.lower() else f"<{target}{label}>"
    real_host = urlsplit(target).hostname or ""
    if _host(shown.group("host")) == _host(real_host):
        return f"<{target}{label}>"
    return f"<{target}|{real_host}>"


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + "\n… _(truncated)_"
