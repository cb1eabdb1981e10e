"""The 👎 modal at the ingress: opened while the click is acknowledged, and its submission queued.

A 👎 click (``block_actions``) is queued as a vote like any button, and the modal asking why is
opened right away with the click's ``trigger_id`` (valid 3 seconds, once): one Slack call on the
ack path, no AWS call. Failing to open it never fails the click (the vote is still queued). The
``view_submission`` becomes a ``feedback_reason`` action queued in the reply's thread group, so it
is stored after the vote (:func:`insightmesh.conversation.feedback.record_vote`); Slack closes the
modal on the empty 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.observability import get_logger
from insightmesh.slack import modals
from insightmesh.slack.events import SlackAction

if TYPE_CHECKING:
    from slack_sdk import WebClient

logger = get_logger("slack_ingress")
MODAL_TIMEOUT_SECONDS: Final = 2  # Slack's trigger_id lives 3 s from the click; the ack must come before that


def open_for(payload: Mapping[str, Any], actions: list[SlackAction]) -> bool:
    """Open the reason modal for a 👎 among ``actions``; whether it was opened."""
    trigger_id = payload.get("trigger_id")
    down = next((action for action in actions if action.action_id == "feedback_down"), None)
    if down is None or down.message_ts is None or not isinstance(trigger_id, str) or not trigger_id:
        return False
    # Loaded only for a 👎: the Web API client is not part of every ingress cold start.
    from slack_sdk.errors import SlackApiError

    from insightmesh.resilience import CircuitOpenError
    from insightmesh.slack.client import SlackNotConfiguredError, SlackRequestRefused, slack_breaker

    view = modals.feedback_view(modals.ReplyRef(channel_id=down.channel_id, message_ts=down.message_ts,
                                                thread_ts=down.thread_ts, request_id=down.action_value))

    def attempt() -> object:
        try:
            return modal_client().views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as error:  # Slack answered: it is up (as call_slack counts it)
            if getattr(error.response, "status_code", 200) >= 500:
                raise
            raise SlackRequestRefused(error) from error

    try:
        slack_breaker().call(attempt)
    except SlackRequestRefused as refused:  # expired_trigger_id, exchanged_trigger_id, ...
        logger.warning("feedback modal not opened", extra={"error": refused.error.response.get("error")})
        return False
    except (SlackApiError, CircuitOpenError, SlackNotConfiguredError, OSError) as error:  # a 5xx, timeout, ...
        logger.warning("feedback modal not opened; Slack unavailable", extra={"error": type(error).__name__})
        return False
    return True


_modal_client: WebClient | None = None


def modal_client() -> WebClient:
    """The ingress's client for ``views.open``: the click's ack waits for it, and its trigger is dead
    after 3 s, so one short attempt (:data:`MODAL_TIMEOUT_SECONDS`, no retries and no Retry-After
    waits, unlike the worker's client); reused by the process."""
    global _modal_client
    if _modal_client is None:
        from insightmesh.slack.client import SlackNotConfiguredError, TracedWebClient, api_url, bot_token

        token = bot_token()
        if not token or token == "not-configured":  # noqa: S105 - the template's placeholder
            raise SlackNotConfiguredError("SLACK_BOT_TOKEN is not configured")
        _modal_client = TracedWebClient(token=token, base_url=api_url(), timeout=MODAL_TIMEOUT_SECONDS,
                                        retry_handlers=[])
    return _modal_client


def reset_for_tests() -> None:
    global _modal_client
    _modal_client = None


def submission_request(payload: Mapping[str, Any], *, correlation_id: str) -> ConversationRequest | None:
    """The modal's ``view_submission`` → a ``feedback_reason`` action (None for another payload)."""
    submitted = modals.parse_submission(payload)
    if submitted is None:
        return None
    reply = submitted.reply
    return ConversationRequest(
        kind=RequestKind.ACTION,
        request_id=f"fbr:{submitted.team_id}:{reply.channel_id}:{reply.message_ts}:{submitted.user_id}:"
                   f"{submitted.view_id}",
        team_id=submitted.team_id,
        channel_id=reply.channel_id,
        user_id=submitted.user_id,
        ts=reply.message_ts,
        thread_ts=reply.thread_ts or reply.message_ts,
        action_id=modals.CALLBACK_ID,
        action_value=reply.request_id,
        text=submitted.comment or "",
        feedback_reason=submitted.reason,
        correlation_id=correlation_id,
    )


__all__ = ["MODAL_TIMEOUT_SECONDS", "modal_client", "open_for", "reset_for_tests", "submission_request"]
