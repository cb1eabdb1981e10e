"""Who can read a Slack conversation: its kind and its members, asked of Slack and cached.

``conversation_readers(channel_id)`` answers with one ``conversations.info`` (with
``include_num_members``) and, for a conversation of at most ``max_members`` people,
``conversations.members`` paged 200 at a time. A larger conversation is not paged at all: its
``members`` is ``None`` and the caller falls back to what everyone may see. Answers are cached per
process for ``ttl`` seconds (a short TTL: a member who joins or leaves is seen within a minute),
so a busy channel costs Slack one or two calls a minute, not one per message.

Scopes: ``channels:read``, ``groups:read``, ``im:read`` and ``mpim:read`` (by conversation kind).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from insightmesh.slack.client import call_slack

MEMBERS_PAGE: Final = 200  # Slack recommends no more than 200 per page
DEFAULT_TTL_SECONDS: Final = 60.0


@dataclass(frozen=True)
class ConversationReaders:
    """Who may read what the bot posts in one conversation."""

    channel_id: str
    kind: str  # "im" (with the bot), "mpim", "private", "public"
    im_user: str | None  # the person an im is with
    externally_shared: bool  # Slack Connect: people of another organisation can read it
    num_members: int
    members: tuple[str, ...] | None  # None: more than the bound, not resolved


_cache: dict[tuple[str, int], tuple[float, ConversationReaders]] = {}
_lock = threading.Lock()


def _kind(channel: dict[str, Any]) -> str:
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    if channel.get("is_private") or channel.get("is_group"):
        return "private"
    return "public"


def conversation_readers(channel_id: str, *, max_members: int,
                         ttl: float = DEFAULT_TTL_SECONDS) -> ConversationReaders:
    """The readers of ``channel_id`` (see the module docstring). Slack errors propagate
    (``SlackApiError``): the caller decides what failing closed means for it."""
    key = (channel_id, max_members)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    info = call_slack(lambda c: c.conversations_info(channel=channel_id, include_num_members=True))
    channel: dict[str, Any] = info.get("channel") or {}
    kind = _kind(channel)
    im_user = str(channel.get("user") or "") or None
    members: tuple[str, ...] | None
    if kind == "im":
        members = tuple(member for member in (im_user,) if member)
        count = len(members) + 1
    else:
        count = int(channel.get("num_members") or 0)
        members = None if count > max_members else _members(channel_id, max_members)
        if members is not None:
            count = len(members)
    readers = ConversationReaders(channel_id=channel_id, kind=kind, im_user=im_user,
                                  externally_shared=bool(channel.get("is_ext_shared")),
                                  num_members=count, members=members)
    with _lock:
        _cache[key] = (now + ttl, readers)
    return readers


def _members(channel_id: str, bound: int) -> tuple[str, ...] | None:
    """Every member, or ``None`` once there are more than ``bound`` (the count can be stale)."""
    found: list[str] = []
    cursor = ""
    def page_after(after: str) -> Any:
        return call_slack(lambda c: c.conversations_members(channel=channel_id, limit=MEMBERS_PAGE,
                                                            cursor=after or None))

    while True:
        page = page_after(cursor)
        found += [str(member) for member in page.get("members") or []]
        if len(found) > bound:
            return None
        cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            return tuple(dict.fromkeys(found))


def reset_for_tests() -> None:
    with _lock:
        _cache.clear()
