"""What people said in a Slack thread or channel, read back for a prompt: bounded, with names.

:func:`read_thread` pages ``conversations.replies`` (oldest first, 200 a page, at most
``MAX_PAGES`` pages: Slack has no newest-first order for replies, so the newest messages of a
thread are reached by paging through it; a thread longer than 2000 messages is read up to its
2000th — benchmarks/thread_context.py prints the cost by size); :func:`read_channel` pages
``conversations.history`` (newest first) from an
``oldest`` timestamp. Both return a :class:`Transcript` bounded by :class:`Bounds`:

* **N messages** (``max_messages``) and **M characters** (``max_chars``, the rendered lines).
* **What is cut first:** the oldest replies. A thread's parent (the message that started it, which
  frames it) is kept — it is the last thing cut, and is shortened to a third of the budget at most;
  then the newest messages are taken, newest first, while they fit. The first that does not fit
  whole is shortened to what is left (its start kept, ``…``) when that is at least
  ``MIN_PARTIAL_CHARS``; everything older is left out and counted in ``omitted``.
* **Names:** each author's name (real name, else display name: unambiguous in a prompt) comes
  from ``users.info`` through the profile cache (:func:`insightmesh.slack.profiles.slack_profile`),
  once per distinct author;
  ``<@U…>`` mentions in the text become ``@name`` the same way. A bot's message is named by its
  ``bot_profile`` or ``username``. The reading bot's own messages (its placeholder) are skipped.

Scopes: ``channels:history``, ``groups:history``, ``im:history``, ``mpim:history`` (by kind).
Slack errors (``SlackApiError``) propagate: the caller decides what an unreadable thread means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk import WebClient

from insightmesh.slack.client import call_slack

PAGE_SIZE: Final = 200
MAX_PAGES: Final = 10
MIN_PARTIAL_CHARS: Final = 80
ELLIPSIS: Final = "…"
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<(https?://[^|>]+)(?:\|([^>]*))?>")

NameOf = Callable[[str], str]


@dataclass(frozen=True)
class Bounds:
    max_messages: int
    max_chars: int


@dataclass(frozen=True)
class Line:
    ts: str
    author: str
    text: str

    def render(self) -> str:
        return f"{self.author}: {self.text}"


@dataclass(frozen=True)
class Transcript:
    lines: tuple[Line, ...]
    omitted: int  # messages left out by the bounds (older replies, or the rest of a page cap)

    def body(self) -> str:
        """The messages, one per line: what ``Bounds.max_chars`` bounds."""
        return "\n".join(line.render() for line in self.lines)

    def render(self) -> str:
        """:meth:`body`, after a note of how many messages were left out, if any."""
        return (f"({self.omitted} earlier message(s) not shown)\n" if self.omitted else "") + self.body()


def _pages(method: Callable[[WebClient], Callable[..., Any]], **arguments: Any) -> Iterator[list[dict[str, Any]]]:
    """Pages of a cursor-paginated method's ``messages``, at most ``MAX_PAGES`` of them."""
    cursor = ""

    def page_after(after: str) -> Any:
        return call_slack(lambda c: method(c)(limit=PAGE_SIZE, cursor=after or None, **arguments))

    for _ in range(MAX_PAGES):
        page = page_after(cursor)
        yield [m for m in page.get("messages") or [] if isinstance(m, dict)]
        cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor or not page.get("has_more", True):
            return


def plain_text(text: str, name_of: NameOf) -> str:
    """Slack's markup made readable: ``<@U1>`` → ``@Name``, ``<#C1|general>`` → ``#general``,
    links to their label (or address), ``&lt;`` ``&gt;`` ``&amp;`` unescaped."""
    text = _MENTION.sub(lambda m: "@" + name_of(m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _author(message: dict[str, Any], name_of: NameOf) -> str:
    profile = message.get("bot_profile")
    if isinstance(profile, dict) and profile.get("name"):
        return f"{profile['name']} (app)"
    if message.get("bot_id") and not message.get("user"):
        return f"{message.get('username') or 'an app'} (app)"
    user = str(message.get("user") or "")
    return name_of(user) if user else "someone"


def _shorten(text: str, budget: int) -> str:
    return text if len(text) <= budget else text[: max(budget - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS


def bound(lines: Sequence[Line], bounds: Bounds, *, keep_first: bool) -> Transcript:
    """The newest lines that fit ``bounds`` (oldest first), and how many were left out; with
    ``keep_first`` the first line (a thread's parent) is kept ahead of the others (see the module
    docstring for the order of cuts)."""
    if not lines or bounds.max_messages < 1 or bounds.max_chars < 1:
        return Transcript((), len(lines))
    budget, slots = bounds.max_chars, bounds.max_messages
    first: Line | None = None
    rest = list(lines)
    if keep_first and len(lines) > 1:
        first = rest.pop(0)
        prefix = len(first.author) + 2
        first = Line(first.ts, first.author, _shorten(first.text, max(bounds.max_chars // 3 - prefix, 1)))
        budget -= len(first.render()) + 1
        slots -= 1
    kept: list[Line] = []
    for line in reversed(rest):
        if slots <= 0 or budget <= 0:
            break
        size = len(line.render()) + 1
        if size <= budget:
            kept.append(line)
            budget -= size
            slots -= 1
            continue
        room = budget - len(line.author) - 3
        if room >= MIN_PARTIAL_CHARS:
            kept.append(Line(line.ts, line.author, _shorten(line.text, room)))
        break
    kept.reverse()
    chosen = ([first] if first is not None else []) + kept
    return Transcript(tuple(chosen), len(lines) - len(chosen))


class Names:
    """Slack user id → a person's name, each asked once (``lookup``: the profile cache)."""

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self.lookup = lookup
        self.known: dict[str, str] = {}

    def __call__(self, user_id: str) -> str:
        if user_id not in self.known:
            self.known[user_id] = self.lookup(user_id) or user_id
        return self.known[user_id]


def profile_names(team_id: str) -> Names:
    """Names from ``users.info`` through the profile cache (:mod:`insightmesh.slack.profiles`)."""
    from insightmesh.slack.profiles import slack_profile

    def lookup(user_id: str) -> str | None:
        profile = slack_profile(team_id, user_id)
        return (profile.real_name or profile.display_name) if profile is not None else None

    return Names(lookup)


def _lines(messages: Sequence[dict[str, Any]], name_of: NameOf, skip_user: str | None,
           skip_ts: Sequence[str]) -> list[Line]:
    lines = []
    for message in messages:
        ts = str(message.get("ts") or "")
        if ts in skip_ts or (skip_user and message.get("user") == skip_user) or message.get("subtype") in (
                "channel_join", "channel_leave", "bot_add", "bot_remove"):
            continue
        text = plain_text(str(message.get("text") or ""), name_of).strip()
        if text:
            lines.append(Line(ts, _author(message, name_of), text))
    return lines


def read_thread(channel: str, thread_ts: str, bounds: Bounds, name_of: NameOf, *,
                skip_user: str | None = None, skip_ts: Sequence[str] = ()) -> Transcript:
    """The thread ``thread_ts`` in ``channel`` as a bounded transcript (its parent kept first),
    without ``skip_user``'s messages (the reading bot) and those in ``skip_ts`` (the question)."""
    messages: list[dict[str, Any]] = []
    for page in _pages(lambda c: c.conversations_replies, channel=channel, ts=thread_ts):
        messages += page
    return bound(_lines(messages, name_of, skip_user, skip_ts), bounds, keep_first=True)


def read_channel(channel: str, oldest: str, bounds: Bounds, name_of: NameOf, *,
                 skip_user: str | None = None, skip_ts: Sequence[str] = ()) -> Transcript:
    """The channel's top-level messages since ``oldest``, as a bounded transcript (oldest first).
    ``conversations.history`` answers newest first, so no more pages are read than the bounds
    can use."""
    messages: list[dict[str, Any]] = []
    for page in _pages(lambda c: c.conversations_history, channel=channel, oldest=oldest):
        messages += page
        if len(messages) >= bounds.max_messages:
            break
    messages.sort(key=lambda m: _ts_key(str(m.get("ts") or "0")))
    return bound(_lines(messages, name_of, skip_user, skip_ts), bounds, keep_first=False)


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return (int(seconds or 0), int((micros or "0").ljust(6, "0")[:6])) if seconds.isdigit() else (0, 0)
