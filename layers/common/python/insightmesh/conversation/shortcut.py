"""The message shortcut, queued as a question about that message, answered in its thread.

"Ask InsightMesh about this message" (:mod:`insightmesh.slack.shortcuts`) becomes a request
answered like the slash command: the message's text is the context of the question, the reply
goes in the message's thread (a new thread under a top-level message) with the access of everyone
who reads that thread, and where the bot cannot post (a channel it is not in) the answer goes to
the shortcut's ``response_url``, for the asker alone and with their access only. One SQS send on
the ack path, no AWS read.
"""

from __future__ import annotations

from typing import Final

from insightmesh.conversation.requests import MAX_TEXT_CHARS, ConversationRequest, RequestKind
from insightmesh.slack.shortcuts import MessageAsk

QUOTED_CHARS: Final = MAX_TEXT_CHARS - 500


def question_about(ask: MessageAsk) -> str:
    """The question the agent gets: the message quoted, as the context to explain or answer."""
    author = f" from <@{ask.author}>" if ask.author else ""
    quoted = "\n".join(f"> {line}" for line in ask.text[:QUOTED_CHARS].splitlines()) or "> (no text)"
    # Its first word is no agent's name or alias, so the question goes to the thread's agent or the
    # assistant ("Help …" went to the help agent).
    return f"Explain this message{author}, and answer it if it asks something:\n\n{quoted}"


def shortcut_request(ask: MessageAsk, *, correlation_id: str) -> ConversationRequest:
    return ConversationRequest(
        kind=RequestKind.COMMAND,  # as a slash command: where the bot may not post, the answer goes to response_url
        request_id=f"sc:{ask.team_id}:{ask.channel_id}:{ask.message_ts}:{ask.user_id}:{ask.action_ts}",
        team_id=ask.team_id,
        channel_id=ask.channel_id,
        channel_type="im" if ask.channel_id.startswith("D") else None,
        user_id=ask.user_id,
        text=question_about(ask),
        ts=ask.message_ts,
        thread_ts=ask.thread_ts,
        response_url=ask.response_url,
        correlation_id=correlation_id,
    )


__all__ = ["question_about", "shortcut_request"]
