"""One reply in a Slack thread: a "thinking" placeholder, progress on it, then the answer in its place.

Every message of a reply carries message metadata (``event_type`` :data:`REPLY_EVENT_TYPE`, with
the request id and a status: ``placeholder``, ``answered``, ``apology``), so that whoever comes
after a crash — the worker's retry or the dead-letter apology — finds what was already posted in
the thread (:func:`posted_replies`) instead of posting it twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from slack_sdk.errors import SlackApiError

from insightmesh.observability import get_logger
from insightmesh.slack.client import call_slack
from insightmesh.slack.formatting import escape

THINKING: Final = "_Thinking…_"
REPLY_EVENT_TYPE: Final = "insightmesh_reply"
PROGRESS_INTERVAL: Final = 1.0
SECTION_LIMIT: Final = 2900

logger = get_logger("conversation_worker")


def reply_metadata(request_id: str, status: str) -> dict[str, Any]:
    """The message metadata that marks a reply's message: its request and what it is now."""
    return {"event_type": REPLY_EVENT_TYPE, "event_payload": {"request_id": request_id, "status": status}}


def reply_blocks(text: str, request_id: str, *, agent_mode: str | None) -> list[dict[str, Any]]:
    chunks = [text[i:i + SECTION_LIMIT] for i in range(0, len(text), SECTION_LIMIT)] or [" "]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
                                    for chunk in chunks[:20]]
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": "feedback_up", "text": {"type": "plain_text", "text": "👍"},
         "value": request_id[:2000]},
        {"type": "button", "action_id": "feedback_down", "text": {"type": "plain_text", "text": "👎"},
         "value": request_id[:2000]},
    ]
    if agent_mode:
        elements.append({"type": "button", "action_id": "exit_agent", "style": "danger",
                         "text": {"type": "plain_text", "text": "Exit agent mode"}, "value": agent_mode})
    blocks.append({"type": "actions", "block_id": "insightmesh_reply_actions", "elements": elements})
    return blocks


class Progress:
    """Updates the placeholder while an agent works, at most once a second."""

    def __init__(self, channel: str, ts: str) -> None:
        self.channel, self.ts, self.last = channel, ts, 0.0
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            if time.monotonic() - self.last < PROGRESS_INTERVAL:
                return
            self.last = time.monotonic()
        try:
            call_slack(lambda c: c.chat_update(channel=self.channel, ts=self.ts, text=f"_{escape(text)}_"))
        except SlackApiError as error:
            logger.warning("progress update failed", extra={"error": error.response.get("error")})


def posted_replies(channel: str, thread_ts: str | None, request_id: str) -> list[tuple[str, str]]:
    """(status, ts) of the request's messages in its thread, oldest first: conversations.replies
    with metadata. Slack's refusals (``thread_not_found``, ...) propagate."""
    if not thread_ts:
        return []
    response = call_slack(lambda c: c.conversations_replies(channel=channel, ts=thread_ts,
                                                            include_all_metadata=True, limit=200))
    found: list[tuple[str, str]] = []
    for message in response.get("messages") or []:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == REPLY_EVENT_TYPE and payload.get("request_id") == request_id:
            found.append((str(payload.get("status")), str(message["ts"])))
    return found


def find_placeholder(channel: str, thread_ts: str | None, request_id: str) -> str | None:
    """After a crash between posting and recording: the request's first message in the thread."""
    posted = posted_replies(channel, thread_ts, request_id)
    return posted[0][1] if posted else None


def post_placeholder(channel: str, thread_ts: str | None, request_id: str) -> tuple[str, str]:
    """Post "thinking" in the thread: (channel, ts) as Slack answers them."""
    response = call_slack(lambda c: c.chat_postMessage(channel=channel, thread_ts=thread_ts, text=THINKING,
                                                       metadata=reply_metadata(request_id, "placeholder")))
    return str(response.get("channel") or channel), str(response["ts"])


def show_answer(channel: str, ts: str, text: str, request_id: str, *, agent_mode: str | None) -> None:
    """Replace the placeholder with the answer (mrkdwn), its feedback buttons and, in agent mode,
    the button that leaves it."""
    metadata = reply_metadata(request_id, "answered")
    call_slack(lambda c: c.chat_update(channel=channel, ts=ts, text=text, metadata=metadata,
                                       blocks=reply_blocks(text, request_id, agent_mode=agent_mode)))
