"""The 👎 reason modal: its view (``views.open``) and its ``view_submission`` payload.

Slack's rules (docs.slack.dev/surfaces/modals, reference/methods/views.open): a modal is opened
with the ``trigger_id`` of the interaction, which expires 3 seconds after it was issued and can be
exchanged once (``expired_trigger_id``, ``exchanged_trigger_id``). So slack_ingress opens it while
acknowledging the click, with one Web API call and no AWS call; the worker could not be sure to
reach Slack in time through the queue. The modal's ``private_metadata`` (at most 3,000
characters) carries the reply it is about, so its submission needs no lookup to find it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from insightmesh.slack.events import MalformedPayload

CALLBACK_ID: Final = "feedback_reason"
REASON_BLOCK, REASON_ACTION = "reason", "reason"
COMMENT_BLOCK, COMMENT_ACTION = "comment", "comment"
REASONS: Final = {
    "wrong": "Wrong",
    "outdated": "Outdated",
    "not_helpful": "Not helpful",
    "unsafe": "Unsafe",
    "other": "Other",
}
MAX_COMMENT_CHARS: Final = 2_000
MAX_METADATA_CHARS: Final = 3_000  # Slack's limit on private_metadata


@dataclass(frozen=True)
class ReplyRef:
    """The reply a 👎 is about: where it is and which request produced it."""

    channel_id: str
    message_ts: str
    thread_ts: str | None
    request_id: str | None


@dataclass(frozen=True)
class FeedbackSubmission:
    team_id: str
    user_id: str
    view_id: str
    reply: ReplyRef
    reason: str
    comment: str | None


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def feedback_view(reply: ReplyRef) -> dict[str, Any]:
    """The modal: a required reason (radio buttons) and optional text."""
    metadata = json.dumps({"c": reply.channel_id, "m": reply.message_ts, "t": reply.thread_ts,
                           "r": reply.request_id}, separators=(",", ":"))
    if len(metadata) > MAX_METADATA_CHARS:
        raise ValueError("the reply reference does not fit in private_metadata")
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": {"type": "plain_text", "text": "What went wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": metadata,
        "blocks": [
            {"type": "input", "block_id": REASON_BLOCK, "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "radio_buttons", "action_id": REASON_ACTION,
                         "options": [_option(value, text) for value, text in REASONS.items()]}},
            {"type": "input", "block_id": COMMENT_BLOCK, "optional": True,
             "label": {"type": "plain_text", "text": "Anything to add? (optional)"},
             "element": {"type": "plain_text_input", "action_id": COMMENT_ACTION, "multiline": True,
                         "max_length": MAX_COMMENT_CHARS}},
        ],
    }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_submission(payload: Mapping[str, Any]) -> FeedbackSubmission | None:
    """A ``view_submission`` of the 👎 modal (None for any other payload); MalformedPayload if it
    lacks what Slack always sends or carries a reason the modal does not offer."""
    if payload.get("type") != "view_submission":
        return None
    view = _mapping(payload.get("view"))
    if view.get("callback_id") != CALLBACK_ID:
        return None
    team = _mapping(payload.get("team")).get("id") or _mapping(payload.get("user")).get("team_id")
    user = _mapping(payload.get("user")).get("id")
    try:
        metadata = json.loads(str(view.get("private_metadata") or ""))
    except json.JSONDecodeError as error:
        raise MalformedPayload("view_submission without its private_metadata") from error
    if not isinstance(team, str) or not isinstance(user, str) or not isinstance(metadata, dict) or \
            not isinstance(metadata.get("c"), str) or not isinstance(metadata.get("m"), str):
        raise MalformedPayload("view_submission without team, user or the reply it is about")
    values = _mapping(_mapping(view.get("state")).get("values"))
    selected = _mapping(_mapping(_mapping(values.get(REASON_BLOCK)).get(REASON_ACTION)).get("selected_option"))
    reason = selected.get("value")
    if reason not in REASONS:
        raise MalformedPayload("view_submission without a reason the modal offers")
    comment = _mapping(_mapping(values.get(COMMENT_BLOCK)).get(COMMENT_ACTION)).get("value")
    thread, request = metadata.get("t"), metadata.get("r")
    return FeedbackSubmission(
        team_id=team, user_id=user, view_id=str(view.get("id") or ""),
        reply=ReplyRef(channel_id=metadata["c"], message_ts=metadata["m"],
                       thread_ts=thread if isinstance(thread, str) else None,
                       request_id=request if isinstance(request, str) else None),
        reason=str(reason),
        comment=comment.strip()[:MAX_COMMENT_CHARS] or None if isinstance(comment, str) else None,
    )


__all__ = ["CALLBACK_ID", "REASONS", "FeedbackSubmission", "ReplyRef", "feedback_view", "parse_submission"]
