"""Slack's AI app surface (the assistant container): its events and its ``assistant.threads.*`` methods.

Events (docs.slack.dev/reference/events/assistant_thread_started, ``…_context_changed``), both
shaped ``{"type", "assistant_thread": {"user_id", "channel_id", "thread_ts", "context":
{"channel_id", "team_id", "enterprise_id"}}, "event_ts"}``: the container opened (a new thread in
the app's DM), and the channel the user is looking at changed. Messages the user types in the
container arrive as ``message.im`` events with the thread's ``thread_ts``, answered as DMs are.

Methods, through slack_sdk's helpers: ``assistant.threads.setStatus`` (``chat:write``),
``assistant.threads.setSuggestedPrompts`` and ``assistant.threads.setTitle`` (``assistant:write``).
A status is cleared with an empty string, and by Slack when the app posts in the thread.

The ingress parses the events here: the Web API client is imported only by the calls, so its
cold start stays without it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk.errors import SlackApiError

from insightmesh.observability import get_logger

THREAD_STARTED: Final = "assistant_thread_started"
CONTEXT_CHANGED: Final = "assistant_thread_context_changed"
ASSISTANT_EVENTS: Final = frozenset({THREAD_STARTED, CONTEXT_CHANGED})
MAX_PROMPTS: Final = 4  # Slack shows up to four suggested prompts
MAX_TITLE_CHARS: Final = 100
MAX_STATUS_CHARS: Final = 100
MAX_STATUS_CALLS: Final = 20  # per turn: progress past this is not worth a Web API call

logger = get_logger("conversation_worker")


class MalformedAssistantEvent(ValueError):
    """An assistant event without its thread, user or team (→ 400)."""


@dataclass(frozen=True)
class AssistantThreadEvent:
    """``assistant_thread_started`` or ``assistant_thread_context_changed``, as the worker needs it."""

    kind: str  # THREAD_STARTED or CONTEXT_CHANGED
    event_id: str | None
    team_id: str
    user_id: str
    channel_id: str  # the app's DM with the user, where the thread is
    thread_ts: str
    context_channel_id: str | None  # the channel the user is viewing, if any


@dataclass(frozen=True)
class Prompt:
    title: str
    message: str


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def assistant_event(payload: Mapping[str, Any]) -> AssistantThreadEvent | None:
    """The assistant event an ``event_callback`` carries, or None for any other event."""
    event = payload.get("event")
    if not isinstance(event, Mapping) or not isinstance(event.get("type"), str) \
            or event["type"] not in ASSISTANT_EVENTS:
        return None
    thread = event.get("assistant_thread")
    if not isinstance(thread, Mapping):
        raise MalformedAssistantEvent(f"{event['type']} without assistant_thread")
    context = thread.get("context")
    context = context if isinstance(context, Mapping) else {}
    team = _text(payload.get("team_id")) or _text(context.get("team_id"))
    user, channel, thread_ts = _text(thread.get("user_id")), _text(thread.get("channel_id")), \
        _text(thread.get("thread_ts"))
    if not team or not user or not channel or not thread_ts:
        raise MalformedAssistantEvent(f"{event['type']} without team, user, channel or thread_ts")
    return AssistantThreadEvent(kind=str(event["type"]), event_id=_text(payload.get("event_id")), team_id=team,
                                user_id=user, channel_id=channel, thread_ts=thread_ts,
                                context_channel_id=_text(context.get("channel_id")))


def set_suggested_prompts(channel_id: str, thread_ts: str, prompts: Sequence[Prompt], *,
                          title: str | None = None) -> None:
    """``assistant.threads.setSuggestedPrompts``: at most :data:`MAX_PROMPTS`, each a title and a message."""
    from insightmesh.slack.client import call_slack

    chosen = [{"title": p.title[:75], "message": p.message} for p in prompts[:MAX_PROMPTS]]
    if chosen:
        call_slack(lambda c: c.assistant_threads_setSuggestedPrompts(channel_id=channel_id, thread_ts=thread_ts,
                                                                      prompts=chosen, title=title))


def set_title(channel_id: str, thread_ts: str, question: str) -> None:
    """``assistant.threads.setTitle`` from the thread's first question (one line, bounded)."""
    from insightmesh.slack.client import call_slack

    title = " ".join(question.split())
    if len(title) > MAX_TITLE_CHARS:
        title = title[:MAX_TITLE_CHARS - 1].rstrip() + "…"
    if title:
        call_slack(lambda c: c.assistant_threads_setTitle(channel_id=channel_id, thread_ts=thread_ts, title=title))


def set_status(channel_id: str, thread_ts: str, status: str) -> None:
    """``assistant.threads.setStatus`` (an empty status clears it)."""
    from insightmesh.slack.client import call_slack

    call_slack(lambda c: c.assistant_threads_setStatus(channel_id=channel_id, thread_ts=thread_ts,
                                                        status=status[:MAX_STATUS_CHARS]))


class ThreadStatus:
    """Progress as the assistant thread's status: each new text once (repeats skipped), at most
    :data:`MAX_STATUS_CALLS` a turn. Best effort: a refused call is logged, never raised."""

    def __init__(self, channel_id: str, thread_ts: str) -> None:
        self.channel_id, self.thread_ts = channel_id, thread_ts
        self.last: str | None = None
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        status = " ".join(text.split())[:MAX_STATUS_CHARS]
        with self.lock:
            if status == self.last or (self.calls >= MAX_STATUS_CALLS and status):
                return
            self.last, self.calls = status, self.calls + 1
        try:
            set_status(self.channel_id, self.thread_ts, status)
        except SlackApiError as error:
            logger.warning("assistant status not set", extra={"error": error.response.get("error")})

    def clear(self) -> None:
        if self.last:
            self("")


__all__ = ["ASSISTANT_EVENTS", "CONTEXT_CHANGED", "THREAD_STARTED", "AssistantThreadEvent",
           "MalformedAssistantEvent", "Prompt", "ThreadStatus", "assistant_event", "set_status",
           "set_suggested_prompts", "set_title"]
