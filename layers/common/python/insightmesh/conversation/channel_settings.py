"""Per-channel settings: how the bot behaves in one Slack channel, set by admins (``/api/channels``).

* **mode** — ``mentions`` (the default: @mentions, and follow-ups in threads it answered),
  ``questions`` (also every top-level message that ends in ``?``, without a mention) or ``off``
  (the bot answers nothing in that channel: no mention, no follow-up, no question; a slash command
  there is told so, privately).
* **default_agent** — the agent that answers when the message names none (else the assistant).
* **allowed_agents** — when set, only these agents answer there; asking another one gets a clear
  refusal. ``None``: every agent the asker may use.
* **knowledge_sources** — when set, retrieval there searches only documents of these sources
  (``gdrive:<folder id>``, ``local:<path>``: the sweep scope a document was ingested with).
* **tools** — when set, only these of the answering agent's tools may run there (the agent's
  ``tools`` ∩ the channel's; ``[]``: none there). ``None``: the agent's tools. DMs: the agent's.
* **reply** — ``thread`` (the default) or ``ephemeral`` (``chat.postEphemeral``: only the asker
  sees the answer, so it uses the asker's own access and is not kept in the thread's memory).

Where the mode is applied: the ingress never reads settings on its ack path. It forwards a
question-shaped top-level channel message (``unaddressed``) to the queue — the one SQS send a
mention costs — and the worker drops it unless the channel's cached settings say ``questions``.
An ``off`` channel is dropped by the worker the same way. So the ack path keeps at most one AWS
call, and the cost of "every question" (one SQS message per question in channels the bot is in)
is paid off the ack path.

Storage: items in the conversations table (``CONVERSATIONS_TABLE``), pk ``channel_settings``,
sk the channel id — the table already holds the workspace states the same way, every function
that needs them can read it, and a deployment has at most a few thousand configured channels, so
no new table (and no new IAM grant for the worker or ingress) is needed. A channel without an
item has the defaults. Access patterns:

* worker: one ``GetItem`` per channel, cached in the process for ``CHANNEL_SETTINGS_CACHE_SECONDS``
  (default 30; DMs read nothing);
* ingress, ``/insightmesh settings`` only: one ``GetItem`` (instead of the SQS send);
* admin API: list — one ``Query(pk = "channel_settings")`` per page; show — one ``GetItem``;
  PUT / PATCH / DELETE — one ``GetItem`` and one ``TransactWriteItems`` (the item, conditional on
  the version read, and its audit entry); validating agents reads the catalog (one ``Query``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from pynamodb.attributes import (
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.routing import Route
from insightmesh.observability import get_logger

SETTINGS_PK: Final = "channel_settings"
DEFAULT_CACHE_SECONDS: Final = 30.0
CACHE_ENV: Final = "CHANNEL_SETTINGS_CACHE_SECONDS"


class ResponseMode(StrEnum):
    MENTIONS = "mentions"
    QUESTIONS = "questions"
    OFF = "off"


class ReplyStyle(StrEnum):
    THREAD = "thread"
    EPHEMERAL = "ephemeral"


class ChannelSettingsRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True, default=SETTINGS_PK)
    sk = UnicodeAttribute(range_key=True)  # the Slack channel id
    mode = UnicodeAttribute(default=ResponseMode.MENTIONS.value)
    default_agent = UnicodeAttribute(null=True)
    allowed_agents: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    knowledge_sources: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    reply = UnicodeAttribute(default=ReplyStyle.THREAD.value)
    tools: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    version = NumberAttribute(default=1)
    updated_at = UTCDateTimeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # the table's TTL attribute: never set, settings are kept


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's settings; a channel never configured has these defaults."""

    channel_id: str
    mode: ResponseMode = ResponseMode.MENTIONS
    default_agent: str | None = None
    allowed_agents: tuple[str, ...] | None = None
    knowledge_sources: tuple[str, ...] | None = None
    reply: ReplyStyle = ReplyStyle.THREAD
    tools: tuple[str, ...] | None = None  # None: the agent's tools; else only these of them
    version: int = 0  # 0: not stored
    updated_at: datetime | None = None
    updated_by: str | None = None
    configured: bool = field(default=False)

    @classmethod
    def of(cls, record: ChannelSettingsRecord) -> ChannelSettings:
        return cls(
            channel_id=str(record.sk),
            mode=ResponseMode(record.mode or ResponseMode.MENTIONS.value),
            default_agent=record.default_agent or None,
            allowed_agents=tuple(record.allowed_agents) if record.allowed_agents is not None else None,
            knowledge_sources=tuple(record.knowledge_sources) if record.knowledge_sources is not None else None,
            reply=ReplyStyle(record.reply or ReplyStyle.THREAD.value),
            tools=tuple(record.tools) if record.tools is not None else None,
            version=int(record.version or 1),
            updated_at=record.updated_at,
            updated_by=record.updated_by,
            configured=True,
        )

    def allows(self, agent: str) -> bool:
        return self.allowed_agents is None or agent in self.allowed_agents

    def enabled_tools(self, agent_tools: Iterable[str]) -> frozenset[str]:
        """The agent's tools that may run here: all of them, or those the channel also names."""
        tools = frozenset(agent_tools)
        return tools if self.tools is None else tools & frozenset(self.tools)


_cache: dict[str, tuple[float, ChannelSettings]] = {}
_lock = threading.Lock()


def cache_seconds() -> float:
    """``CHANNEL_SETTINGS_CACHE_SECONDS``: how long a worker remembers a channel's settings (0: not)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_CACHE_SECONDS
    except ValueError as error:
        raise ValueError(f"{CACHE_ENV} must be a number of seconds, not {value!r}") from error
    if seconds < 0:
        raise ValueError(f"{CACHE_ENV} must be at least 0")
    return seconds


def read(channel_id: str) -> ChannelSettings:
    """The stored settings of ``channel_id`` (one GetItem), or the defaults."""
    try:
        return ChannelSettings.of(ChannelSettingsRecord.get(SETTINGS_PK, channel_id))
    except ChannelSettingsRecord.DoesNotExist:
        return ChannelSettings(channel_id=channel_id)


def is_direct(channel_id: str, channel_type: str | None) -> bool:
    """A DM with the bot: per-channel settings do not apply (nothing is read)."""
    return channel_type == "im" or channel_id.startswith("D")


def cached(channel_id: str, channel_type: str | None = None) -> ChannelSettings:
    """The settings of ``channel_id``, remembered for :func:`cache_seconds` (DMs: the defaults)."""
    if is_direct(channel_id, channel_type):
        return ChannelSettings(channel_id=channel_id)
    now = time.monotonic()
    ttl = cache_seconds()
    with _lock:
        hit = _cache.get(channel_id)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    settings = read(channel_id)
    if ttl > 0:
        with _lock:
            _cache[channel_id] = (now, settings)
    return settings


def forget(channel_id: str | None = None) -> None:
    """Drop this process's cached settings (one channel, or all)."""
    with _lock:
        if channel_id is None:
            _cache.clear()
        else:
            _cache.pop(channel_id, None)


def describe(settings: ChannelSettings) -> str:
    """The settings as Slack mrkdwn, for ``/insightmesh settings``."""
    modes = {ResponseMode.MENTIONS: "answers @mentions (and follow-ups in its threads)",
             ResponseMode.QUESTIONS: "answers @mentions and every message that ends in a question mark",
             ResponseMode.OFF: "off — it answers nothing in this channel"}
    agents = ", ".join(f"`{name}`" for name in settings.allowed_agents) if settings.allowed_agents is not None \
        else "every agent you may use"
    sources = ", ".join(f"`{source}`" for source in settings.knowledge_sources) \
        if settings.knowledge_sources is not None else "all (what every reader may see)"
    lines = [
        f"*InsightMesh in <#{settings.channel_id}>*" + ("" if settings.configured else " (defaults)"),
        f"• Response mode: {modes[settings.mode]}",
        f"• Default agent: `{settings.default_agent}`" if settings.default_agent else "• Default agent: the assistant",
        f"• Allowed agents: {agents}",
        f"• Knowledge sources: {sources}",
        "• Tools: " + (", ".join(f"`{name}`" for name in settings.tools) or "none"
                       if settings.tools is not None else "the agent's"),
        "• Replies: " + ("only the asker sees them (ephemeral)" if settings.reply is ReplyStyle.EPHEMERAL
                         else "in a thread"),
    ]
    return "\n".join(lines)


def refusal(agent: str, settings: ChannelSettings) -> str | None:
    """The reply when ``agent`` may not answer in this channel; ``None`` when it may."""
    if settings.allows(agent):
        return None
    allowed = ", ".join(f"`{name}`" for name in settings.allowed_agents or ())
    return (f"**{agent}** is not available in this channel. Agents here: {allowed}. "
            "Ask in a direct message, or ask an InsightMesh admin to change this channel's settings.")


OFF_TEXT: Final = "InsightMesh is turned off in this channel. Ask in a direct message instead."


def for_request(request: ConversationRequest) -> ChannelSettings:
    """The settings of the conversation ``request`` came from (cached; DMs: the defaults)."""
    return cached(request.channel_id, request.channel_type)


def admits(request: ConversationRequest) -> bool:
    """Whether the worker answers ``request`` in its channel: never in an ``off`` channel; an
    unaddressed question only in a ``questions`` channel."""
    settings = for_request(request)
    if settings.mode is ResponseMode.OFF:
        return False
    return settings.mode is ResponseMode.QUESTIONS if request.unaddressed else True


def with_default(route: Route, request: ConversationRequest) -> Route:
    """The channel's default agent answers a message that named none (and is in no agent mode)."""
    if route.by != "default" or route.exit:
        return route
    default = for_request(request).default_agent
    return replace(route, agent_name=default, by="channel") if default else route


def refused_here(request: ConversationRequest, agent: str) -> str | None:
    """The refusal when ``agent`` is not among the channel's allowed agents; ``None`` when it may answer."""
    return refusal(agent, for_request(request))


def replies_ephemerally(request: ConversationRequest) -> bool:
    """A message in a channel whose settings say ``ephemeral``: no placeholder, no stream, and the
    answer goes to the asker alone (``chat.postEphemeral``), made with the asker's own access."""
    return request.kind is RequestKind.MESSAGE and for_request(request).reply is ReplyStyle.EPHEMERAL


def post_ephemeral(request: ConversationRequest, text: str) -> None:
    """The answer to the asker alone: in the thread it was asked in, or — for a top-level message,
    since Slack shows an ephemeral message in a thread only when the thread already exists — in
    the channel. Slack does not deliver one to someone who is not in the channel
    (``user_not_in_channel``): that is logged, as there is nobody else it could be shown to."""
    from slack_sdk.errors import SlackApiError

    from insightmesh.slack.client import call_slack

    in_thread = request.thread_ts if request.thread_ts and request.thread_ts != request.ts else None
    try:
        call_slack(lambda client: client.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                            thread_ts=in_thread, text=text))
    except SlackApiError as error:
        if error.response.get("error") != "user_not_in_channel":
            raise
        get_logger().warning("ephemeral answer not delivered: the asker left the channel",
                             extra={"request_id": request.request_id})
