"""Agent mode in shared threads: only the person who started it can end it.

The thread state records who started agent mode (``ThreadState.sticky_by``). An exit word or the
"Exit agent mode" button from anyone else changes nothing and gets them a short ephemeral note;
the thread sees nothing. Agent mode started before the owner was recorded can be ended by anyone.

The button reads the owner with one ``GetItem`` of three attributes of the thread item.
"""

from __future__ import annotations

import time
from typing import Final

from slack_sdk.errors import SlackApiError

from insightmesh.conversation import gate
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.conversation.threads import ThreadState
from insightmesh.observability import get_logger
from insightmesh.slack.client import call_slack

NOT_YOURS: Final = "Only <@{owner}> can end *{agent}* mode in this thread: they started it."


def may_end(thread: ThreadState, user_id: str) -> bool:
    return not thread.sticky_agent or not thread.sticky_by or thread.sticky_by == user_id


def owner_after_turn(thread: ThreadState, route_by: str, user_id: str) -> str | None:
    """Who owns agent mode after this turn: the starter while it continues, this user when the turn
    started it, nobody when it is off."""
    if not thread.sticky_agent:
        return None
    if route_by == "sticky" and thread.sticky_by:
        return thread.sticky_by
    return user_id


def load_owner(thread_key: str) -> ThreadState:
    """The thread's agent mode and its owner only (one GetItem of three attributes)."""
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    try:
        record = ThreadRecord.get(thread_pk(thread_key), "thread", consistent_read=True,
                                  attributes_to_get=["sticky_agent", "sticky_until", "sticky_by"])
    except ThreadRecord.DoesNotExist:
        return ThreadState(key=thread_key)
    sticky: str | None = record.sticky_agent
    if sticky and record.sticky_until is not None and record.sticky_until < time.time():
        sticky = None
    return ThreadState(key=thread_key, sticky_agent=sticky, sticky_by=record.sticky_by if sticky else None)


def refuse_exit(request: ConversationRequest, thread: ThreadState, *, channel: str | None = None,
                placeholder_ts: str | None = None) -> None:
    """Tell someone who did not start agent mode, privately, that they cannot end it (and remove
    the "Thinking…" placeholder posted for their message, if any)."""
    if placeholder_ts and channel:
        try:
            call_slack(lambda client: client.chat_delete(channel=channel, ts=placeholder_ts))
        except SlackApiError as error:
            get_logger().warning("placeholder not deleted", extra={"error": error.response.get("error")})
    gate.tell(request, NOT_YOURS.format(owner=thread.sticky_by, agent=thread.sticky_agent))
