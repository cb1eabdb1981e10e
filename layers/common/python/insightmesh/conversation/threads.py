"""Thread state: did the bot reply here, the sticky agent, the memory window, agents' state.

Every access is one GetItem or one write on the thread's key (see conversation.models).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the ingress reads threads too: keep the LLM package out of its cold start
    from insightmesh.llm.base import ChatMessageDict

THREAD_TTL: Final = timedelta(days=30)
STICKY_SECONDS: Final = 60 * 60 * 4  # agent mode ends after 4 h without a message


@dataclass
class ThreadState:
    key: str
    exists: bool = False
    bot_replied: bool = False
    sticky_agent: str | None = None
    history: list[ChatMessageDict] = field(default_factory=list)
    summary: str | None = None
    agent_state: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)  # shared in the thread: {"id", "name", "text"}

    def active_sticky_agent(self) -> str | None:
        return self.sticky_agent


def bot_replied_in(thread_key: str) -> bool:
    """Whether the bot has replied in this thread (ingress, for follow-ups without a mention).
    Strongly consistent: a follow-up right after the bot's first reply must see it."""
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    try:
        record = ThreadRecord.get(thread_pk(thread_key), "thread", consistent_read=True,
                                  attributes_to_get=["bot_replied"])
    except ThreadRecord.DoesNotExist:
        return False
    return bool(record.bot_replied)


def load_thread(thread_key: str) -> ThreadState:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    try:
        record = ThreadRecord.get(thread_pk(thread_key), "thread", consistent_read=True)
    except ThreadRecord.DoesNotExist:
        return ThreadState(key=thread_key)
    sticky: str | None = record.sticky_agent
    if sticky and record.sticky_until is not None and record.sticky_until < time.time():
        sticky = None
    return ThreadState(
        key=thread_key,
        exists=True,
        bot_replied=bool(record.bot_replied),
        sticky_agent=sticky,
        history=list(record.history or []),
        summary=record.summary,
        agent_state=dict(record.agent_state or {}),
        files=list(record.files or []),
    )


def mark_bot_replied(thread_key: str) -> None:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    now = datetime.now(UTC)
    ThreadRecord(thread_pk(thread_key), "thread").update(actions=[
        ThreadRecord.bot_replied.set(True),
        ThreadRecord.updated_at.set(now),
        ThreadRecord.expires_at.set(now + THREAD_TTL),
    ])


def save_thread(state: ThreadState) -> None:
    """Write the whole thread state after a turn (threads are processed one message at a time:
    the FIFO group serialises them, so there is no concurrent writer to lose an update to)."""
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    now = datetime.now(UTC)
    ThreadRecord(
        thread_pk(state.key),
        "thread",
        bot_replied=state.bot_replied,
        sticky_agent=state.sticky_agent,
        sticky_until=int(time.time()) + STICKY_SECONDS if state.sticky_agent else None,
        history=list(state.history),
        summary=state.summary,
        agent_state=state.agent_state,
        files=list(state.files),
        updated_at=now,
        expires_at=now + THREAD_TTL,
    ).save()


def clear_sticky_agent(thread_key: str) -> None:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    ThreadRecord(thread_pk(thread_key), "thread").update(actions=[
        ThreadRecord.sticky_agent.remove(),
        ThreadRecord.sticky_until.remove(),
    ])
