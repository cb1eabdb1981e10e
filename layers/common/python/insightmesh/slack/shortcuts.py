"""The message shortcut "Ask InsightMesh about this message" (a ``message_action`` payload).

The manifest declares it under ``features.shortcuts`` (``type: message``, ``callback_id``
:data:`CALLBACK_ID`); Slack posts a ``message_action`` to the interactivity URL with the
message (text, ts, thread_ts), the channel, the user and a ``response_url``
(docs.slack.dev/interactivity/implementing-shortcuts). The answer goes in the message's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from insightmesh.slack.events import MalformedPayload
from insightmesh.slack.urls import slack_response_url

CALLBACK_ID: Final = "ask_about_message"


@dataclass(frozen=True)
class MessageAsk:
    team_id: str
    channel_id: str
    user_id: str
    message_ts: str
    thread_ts: str  # the message's thread, or the message itself (a new thread under it)
    text: str
    author: str | None
    response_url: str | None
    action_ts: str


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def message_ask(payload: Mapping[str, Any]) -> MessageAsk | None:
    """The shortcut's ``message_action`` (None for any other payload or callback)."""
    if payload.get("type") != "message_action" or payload.get("callback_id") != CALLBACK_ID:
        return None
    message = _mapping(payload.get("message"))
    team = _mapping(payload.get("team")).get("id") or _mapping(payload.get("user")).get("team_id")
    channel, user = _mapping(payload.get("channel")).get("id"), _mapping(payload.get("user")).get("id")
    ts = message.get("ts") or payload.get("message_ts")
    if not all(isinstance(value, str) and value for value in (team, channel, user, ts)):
        raise MalformedPayload("message_action without team, channel, user or message ts")
    thread = message.get("thread_ts")
    text, author, url = message.get("text"), message.get("user"), payload.get("response_url")
    action_ts = payload.get("action_ts") or payload.get("trigger_id") or ""
    return MessageAsk(team_id=str(team), channel_id=str(channel), user_id=str(user), message_ts=str(ts),
                      thread_ts=thread if isinstance(thread, str) and thread else str(ts),
                      text=text if isinstance(text, str) else "", author=author if isinstance(author, str) else None,
                      response_url=slack_response_url(url if isinstance(url, str) else None),
                      action_ts=str(action_ts))


__all__ = ["CALLBACK_ID", "MessageAsk", "message_ask"]
