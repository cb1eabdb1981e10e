"""What Slack says around a question, for the prompt: the thread above it, or a channel's day.

The worker asks :func:`for_prompt` once per turn, where it builds the agent's context:

* **Mentioned inside a thread it has not been part of** (a reply in a thread whose memory is
  empty): the thread is read with ``conversations.replies`` (:func:`insightmesh.slack.history.read_thread`),
  bounded to the last ``THREAD_CONTEXT_MAX_MESSAGES`` messages (default 50) and
  ``THREAD_CONTEXT_MAX_CHARS`` characters (default 12000), with people's names, and given to
  the agent as the conversation so far, so "what did we decide above?" and "summarise this
  thread" work. **In a thread it has been part of, thread memory stays the source**: nothing is
  re-read. A thread Slack will not give (an error, the breaker open) is answered without it.
* **"summarise #channel today"** (``summarise``/``summarize``/``summary`` and a channel link
  ``<#C…>``): ``conversations.history`` of that channel since midnight UTC ("today") or over the
  last 24 hours, with the same bounds — only when **both the bot and the asker are members** of
  it (``conversations.members``, :mod:`insightmesh.slack.conversations`). In the assistant
  container, "summarise this channel" means the channel the user is looking at (the thread's
  ``context_channel``, from ``assistant_thread_context_changed``).

**Where a channel summary may be answered** (who reads an answer decides what it may use): where
every reader may see the source messages — in that channel itself; in a DM with the bot or an
answer only the asker sees (the asker is a member); in another conversation only when every one
of its members is also a member of the summarised channel. Anywhere else the request is refused
in place, with a pointer ("ask me in a DM or in #channel"); nothing is posted elsewhere, so the
request still ends in exactly one reply. A channel whose members cannot be listed (larger than
``CHANNEL_SUMMARY_MAX_MEMBERS``, 1000, or Slack unreachable) is refused: fail closed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from slack_sdk.errors import SlackApiError

from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.threads import ThreadState
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitOpenError
from insightmesh.slack import history
from insightmesh.slack.client import SlackNotConfiguredError, bot_identity
from insightmesh.slack.conversations import conversation_readers

DEFAULT_MAX_MESSAGES: Final = 50
DEFAULT_MAX_CHARS: Final = 12_000
CHANNEL_SUMMARY_MAX_MEMBERS: Final = 1000
_SUMMARY = re.compile(r"\bsummar(?:ise|ize|y)\b.*?<#([CG][A-Z0-9]+)(?:\|([^>]*))?>", re.IGNORECASE | re.DOTALL)
_THIS_CHANNEL = re.compile(r"\bsummar(?:ise|ize|y)\b.*?\bth(?:is|e) channel\b", re.IGNORECASE | re.DOTALL)
_SLACK_DOWN = (SlackApiError, CircuitOpenError, SlackNotConfiguredError)

logger = get_logger("conversation_worker")


def _number(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        number = int(value) if value else default
    except ValueError as error:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from error
    if number < 1:
        raise ValueError(f"{name} must be at least 1")
    return number


def bounds() -> history.Bounds:
    """``THREAD_CONTEXT_MAX_MESSAGES`` and ``THREAD_CONTEXT_MAX_CHARS`` (template parameters)."""
    return history.Bounds(max_messages=_number("THREAD_CONTEXT_MAX_MESSAGES", DEFAULT_MAX_MESSAGES),
                          max_chars=_number("THREAD_CONTEXT_MAX_CHARS", DEFAULT_MAX_CHARS))


@dataclass(frozen=True)
class PromptContext:
    summary: str | None  # what the agent gets as the conversation so far
    refusal: str | None = None  # the whole answer instead (a channel summary that may not be given here)


def for_prompt(request: ConversationRequest, thread: ThreadState, *, private: bool) -> PromptContext:
    """The context for this turn (see the module docstring); thread memory's summary otherwise."""
    asked = _SUMMARY.search(request.text or "") if request.kind is not RequestKind.ACTION else None
    if asked is not None:
        return _channel_summary(request, asked.group(1), asked.group(2) or asked.group(1), private=private)
    if thread.context_channel and _THIS_CHANNEL.search(request.text or ""):  # in the assistant container
        return _channel_summary(request, thread.context_channel, thread.context_channel, private=private)
    if _new_thread(request, thread):
        return PromptContext(_thread_above(request) or thread.summary)
    return PromptContext(thread.summary)


def _new_thread(request: ConversationRequest, thread: ThreadState) -> bool:
    """A reply inside a thread (not its first message) that thread memory knows nothing of."""
    return (request.kind is RequestKind.MESSAGE and bool(request.thread_ts) and bool(request.ts)
            and request.thread_ts != request.ts and not thread.history and not thread.summary)


def _thread_above(request: ConversationRequest) -> str | None:
    assert request.thread_ts is not None
    started = time.monotonic()
    try:
        bot = bot_identity().user_id
        transcript = history.read_thread(request.channel_id, request.thread_ts, bounds(),
                                         history.profile_names(request.team_id),
                                         skip_user=bot, skip_ts=(request.ts or "",))
    except _SLACK_DOWN as error:
        logger.warning("thread not read; answering without it",
                       extra={"error": type(error).__name__, "request_id": request.request_id})
        return None
    logger.info("thread read", extra={"messages": len(transcript.lines), "omitted": transcript.omitted,
                                      "seconds": round(time.monotonic() - started, 3),
                                      "request_id": request.request_id})
    if not transcript.lines:
        return None
    return ("You were just mentioned in a Slack thread you had not been part of. What was said in it "
            "before the question, oldest first (\"name: message\"):\n" + transcript.render())


def _since(text: str) -> tuple[str, str]:
    """(oldest ts, how to say it): midnight UTC for "today", else the last 24 hours."""
    now = datetime.now(UTC)
    if "today" in text.lower():
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return f"{start.timestamp():.6f}", "today (since 00:00 UTC)"
    return f"{(now - timedelta(hours=24)).timestamp():.6f}", "in the last 24 hours"


def _channel_summary(request: ConversationRequest, channel: str, label: str, *, private: bool) -> PromptContext:
    name = f"#{label}"
    try:
        bot = bot_identity().user_id
        source = conversation_readers(channel, max_members=CHANNEL_SUMMARY_MAX_MEMBERS)
    except _SLACK_DOWN as error:
        logger.info("channel summary refused: channel unreadable", extra={"error": type(error).__name__})
        return PromptContext(None, f"I can't read {name}. Invite me there (`/invite @InsightMesh`) and ask again.")
    members = set(source.members or ())
    if source.members is None:
        return PromptContext(None, f"{name} is too large for me to check who is in it, so I won't summarise it.")
    if bot not in members:
        return PromptContext(None, f"I'm not a member of {name}. Invite me there and ask again.")
    if request.user_id not in members:
        return PromptContext(None, f"You're not a member of {name}, so I won't summarise it for you.")
    if not _readable_here(request, channel, members, bot, private=private):
        return PromptContext(None, f"Not everyone in this conversation can read {name}, so I won't summarise "
                                   f"it here. Ask me in a direct message or in {name}.")
    oldest, period = _since(request.text)
    try:
        transcript = history.read_channel(channel, oldest, bounds(), history.profile_names(request.team_id),
                                          skip_user=bot, skip_ts=(request.ts or "",))
    except _SLACK_DOWN as error:
        logger.warning("channel history not read", extra={"error": type(error).__name__})
        return PromptContext(None, f"I couldn't read {name} just now; please try again in a minute.")
    logger.info("channel read for a summary", extra={"messages": len(transcript.lines),
                                                     "omitted": transcript.omitted})
    if not transcript.lines:
        return PromptContext(f"No messages were posted in {name} {period}.")
    return PromptContext(f"The messages posted in {name} {period}, oldest first (\"name: message\"):\n"
                         + transcript.render())


def _readable_here(request: ConversationRequest, channel: str, members: set[str], bot: str, *,
                   private: bool) -> bool:
    """Every reader of the answer is a member of ``channel`` (see the module docstring)."""
    if private or channel == request.channel_id or request.channel_type == "im":
        return True
    from insightmesh.conversation.audience import cache_seconds, max_members

    try:
        here = conversation_readers(request.channel_id, max_members=max_members(), ttl=cache_seconds())
    except _SLACK_DOWN:
        return False
    if here.kind == "im":
        return here.im_user == request.user_id
    return here.members is not None and all(member in members for member in here.members if member != bot)
