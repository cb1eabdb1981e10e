"""Slack's ``conversations.history`` in the sandbox, answered from the messages it holds (what
people posted through ``/_sandbox/messages`` and what the bot posted), as Slack answers it:

* the conversation's top-level messages (thread parents included, replies not), **newest first**;
  ephemeral and deleted messages never appear;
* ``oldest`` / ``latest`` bound the range, exclusive unless ``inclusive``; ``limit`` defaults to
  100 and is capped at 999; ``has_more`` and ``response_metadata.next_cursor`` page onwards;
* errors: ``channel_not_found`` (no such conversation, or a private one the bot is not in),
  ``not_in_channel`` (a public channel the bot is not a member of — a bot token reads only the
  conversations it is in), ``invalid_cursor``, ``invalid_limit``, ``invalid_ts_oldest`` /
  ``invalid_ts_latest``.

A conversation registered with ``/_sandbox/channels`` and ``"bot_member": false`` is one the bot
is not in; an unregistered ``D`` id is the bot's DM with that person.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_sandbox.state import SandboxError, _flag, _text, _ts_key

if TYPE_CHECKING:
    from insightmesh_local.slack_sandbox.web_api import SandboxState

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 999
_CURSOR: Final = "next_ts:"


def readable(state: SandboxState, channel: str | None) -> str | None:
    """Slack's error when the bot may not read ``channel``'s messages, else None."""
    if channel and channel.startswith("D") and channel not in state._channels:
        return None  # the bot's DM with a person
    found = state._conversation(channel)
    if found is None:
        return "channel_not_found"
    if state.bot_user_id not in found["members"]:
        return "not_in_channel" if found["kind"] == "public" else "channel_not_found"
    return None


def _bound(args: dict[str, Any], key: str) -> tuple[int, int] | None:
    value = _text(args, key)
    if value is None:
        return None
    return _ts_key(value)


def conversations_history(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    channel = state._channel(args)
    refused = readable(state, channel)
    if refused:
        return {"ok": False, "error": refused}
    try:
        limit = int(args.get("limit") or DEFAULT_LIMIT)
    except (TypeError, ValueError):
        return {"ok": False, "error": "invalid_limit"}
    if limit < 1:
        return {"ok": False, "error": "invalid_limit"}
    limit = min(limit, MAX_LIMIT)
    try:
        oldest = _bound(args, "oldest")
    except SandboxError:
        return {"ok": False, "error": "invalid_ts_oldest"}
    try:
        latest = _bound(args, "latest")
    except SandboxError:
        return {"ok": False, "error": "invalid_ts_latest"}
    inclusive = _flag(args, "inclusive")
    cursor = str(args.get("cursor") or "")
    below: tuple[int, int] | None = None
    if cursor:
        try:
            decoded = base64.b64decode(cursor.encode("ascii"), validate=True).decode()
            if not decoded.startswith(_CURSOR):
                raise ValueError(decoded)
            below = _ts_key(decoded[len(_CURSOR):])
        except (ValueError, UnicodeError, SandboxError):
            return {"ok": False, "error": "invalid_cursor"}
    include_metadata = _flag(args, "include_all_metadata")
    with state._lock:
        chosen = []
        for message in state._messages:
            if message.channel != channel or message.deleted or message.ephemeral_for is not None:
                continue
            if message.thread_ts and message.thread_ts != message.ts:
                continue  # a reply: in conversations.replies, not the channel's history
            key = _ts_key(message.ts)
            if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
                continue
            if latest is not None and (key > latest or (key == latest and not inclusive)):
                continue
            if below is not None and key > below:
                continue
            chosen.append(message)
        chosen.sort(key=lambda m: _ts_key(m.ts), reverse=True)
        page, rest = chosen[:limit], chosen[limit:]
        views = []
        for message in page:
            view = message.api_view(include_metadata=include_metadata)
            replies = [m for m in state._messages if m.channel == channel and m.thread_ts == message.ts
                       and m.ts != message.ts and not m.deleted and m.ephemeral_for is None]
            if replies:
                view.update({"thread_ts": message.ts, "reply_count": len(replies),
                             "latest_reply": max((m.ts for m in replies), key=_ts_key)})
            views.append(view)
    next_cursor = base64.b64encode(f"{_CURSOR}{rest[0].ts}".encode()).decode("ascii") if rest else ""
    return {"ok": True, "messages": views, "has_more": bool(rest), "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor}}


METHODS: Final = {"conversations.history": conversations_history}
