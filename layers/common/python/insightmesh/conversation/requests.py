"""The compact request that slack_ingress queues and conversation_worker processes.

One shape for the three kinds of Slack input (a message, a slash command, a block action), built
by :mod:`insightmesh.conversation.intake` from what :mod:`insightmesh.slack.events` parsed. It
carries only what the worker needs — never the raw webhook — and the correlation id travels
with it (and as an SQS message attribute).
"""

from __future__ import annotations

import hashlib
import time
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from insightmesh.slack.files import MAX_FILES, SlackFileRef
from insightmesh.slack.urls import slack_response_url

MAX_TEXT_CHARS: Final = 12_000


class RequestKind(StrEnum):
    MESSAGE = "message"
    COMMAND = "command"
    ACTION = "action"
    ASSISTANT_THREAD = "assistant_thread"  # the AI app container opened, or its context changed
    HOME = "home"  # app_home_opened: publish the user's Home tab (conversation.app_home)


class ConversationRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: RequestKind
    request_id: str = Field(min_length=1, max_length=200)  # the dedupe key (see ids below)
    event_id: str | None = None
    team_id: str = Field(min_length=1, max_length=64)
    channel_id: str = Field(min_length=1, max_length=64)
    channel_type: str | None = None  # im, channel, group, mpim
    user_id: str = Field(min_length=1, max_length=64)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)
    ts: str | None = None  # the message's own ts
    thread_ts: str | None = None  # the thread to answer in: the event's thread_ts, or its ts
    response_url: str | None = None
    action_id: str | None = None
    action_value: str | None = None
    feedback_reason: str | None = Field(default=None, max_length=32)  # the 👎 modal's (conversation.feedback_modal)
    correlation_id: str = ""
    received_at: float = Field(default_factory=time.time)
    files: tuple[SlackFileRef, ...] = Field(default=(), max_length=MAX_FILES)
    # A top-level channel message that ends in "?" without a mention: answered only where the
    # channel's settings say "questions" (conversation.channel_settings; the worker decides).
    unaddressed: bool = False
    # ASSISTANT_THREAD: the event (assistant_thread_started or …_context_changed; in action_id)
    # and the channel the user is looking at.
    context_channel_id: str | None = Field(default=None, max_length=64)

    @field_validator("response_url")
    @classmethod
    def _slack_response_url(cls, value: str | None) -> str | None:
        """Only Slack's (``https://hooks.slack.com``): whoever posts an answer there never posts
        to an address a request body chose."""
        return slack_response_url(value)

    @property
    def thread_key(self) -> str | None:
        return thread_key(self.team_id, self.channel_id, self.thread_ts) if self.thread_ts else None

    @property
    def message_group_id(self) -> str:
        """FIFO group: one thread is answered in order; different threads in parallel."""
        return _fit(f"{self.team_id}:{self.channel_id}:{self.thread_ts or self.request_id}")

    @property
    def deduplication_id(self) -> str:
        return _fit(self.request_id)


def _fit(value: str) -> str:
    """SQS ids: at most 128 characters of [A-Za-z0-9] and punctuation, without '#'. A longer
    value is replaced by its hash rather than truncated, so two ids never collide by their tails."""
    value = value.replace("#", "-")
    if len(value) <= 128:
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()


def thread_key(team_id: str, channel_id: str, thread_ts: str) -> str:
    return f"{team_id}#{channel_id}#{thread_ts}"


def message_request_id(team_id: str, channel_id: str, ts: str) -> str:
    """A message is identified by where and when it was posted, not by the event that carried it:
    a mention arrives both as app_mention and as a message event, with two event ids."""
    return f"msg:{team_id}:{channel_id}:{ts}"
