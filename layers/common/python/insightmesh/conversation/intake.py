"""slack_ingress: verify, filter, enqueue, acknowledge — in well under Slack's 3 seconds.

What is accepted, checked and queued is decided here; Slack's side (the body, its signature, the
payloads' shapes) is :mod:`insightmesh.slack.webhook` and :mod:`insightmesh.slack.events`, and
each accepted input becomes a :class:`~insightmesh.conversation.requests.ConversationRequest`.

The ack path makes as few AWS calls as exactly-once allows: a DM or a mention costs one SQS
send (its deduplication id drops retries); a follow-up without a mention costs one GetItem on
the thread first. Nothing is queued or stored for a request that fails verification (401) or
is malformed (400). A top-level channel message that ends in "?" without a mention costs one SQS
send too: whether its channel answers every question is the worker's to decide, from its cached
settings (:mod:`insightmesh.conversation.channel_settings`), so the ack path reads no settings.
``/insightmesh settings`` costs one GetItem and no send. If the queue cannot be reached the
answer is 503, so Slack retries it later
and nothing is lost. ``app_uninstalled`` and ``tokens_revoked`` (bot tokens) cost one
TransactWriteItems: the workspace is recorded inactive, with its audit entry
(:mod:`insightmesh.conversation.workspaces`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.event_handler import Response

from insightmesh import tracing
from insightmesh.api import InsightMeshResolver
from insightmesh.api.errors import BadRequestError, ServiceUnavailableError
from insightmesh.conversation import app_home, feedback_modal, shortcut
from insightmesh.conversation.queue import enqueue
from insightmesh.conversation.requests import (
    MAX_TEXT_CHARS,
    ConversationRequest,
    RequestKind,
    message_request_id,
)
from insightmesh.conversation.threads import bot_replied_in
from insightmesh.observability import get_logger
from insightmesh.slack import assistant, events, home, shortcuts, webhook
from insightmesh.slack.assistant import AssistantThreadEvent
from insightmesh.slack.events import Decision, MalformedPayload, WorkspaceEvent, workspace_event

USAGE: Final = (
    "*Usage:* `/insightmesh <question>` asks the assistant; `/insightmesh <agent> <text>` asks an agent "
    "(for example `/insightmesh meddic <call notes>`); `/insightmesh help` lists the agents you may use."
)

logger = get_logger("slack_ingress")


@dataclass(frozen=True)
class Classified:
    """An ``event_callback``'s message: answer, check the thread, or ignore (with the reason)."""

    decision: Decision
    reason: str
    request: ConversationRequest | None = None


def classify_event(payload: Mapping[str, Any], *, correlation_id: str) -> Classified:
    """An ``event_callback`` payload → the request to answer or check, or why it is ignored."""
    classified = events.classify_event(payload)
    message = classified.message
    if message is None:
        return Classified(classified.decision, classified.reason)
    request = ConversationRequest(
        kind=RequestKind.MESSAGE,
        request_id=message_request_id(message.team_id, message.channel_id, message.ts),
        event_id=message.event_id,
        team_id=message.team_id,
        channel_id=message.channel_id,
        channel_type=message.channel_type,
        user_id=message.user_id,
        text=message.text[:MAX_TEXT_CHARS],
        ts=message.ts,
        thread_ts=message.thread_ts,
        correlation_id=correlation_id,
        files=message.files,
        unaddressed=classified.decision is Decision.QUESTION,
    )
    return Classified(classified.decision, classified.reason, request)


def assistant_request(opened: AssistantThreadEvent, *, correlation_id: str) -> ConversationRequest:
    """The AI app container opened (one greeting per thread, whatever the redeliveries), or the
    channel its user looks at changed: queued in the thread's FIFO group, ahead of its messages."""
    started = opened.kind == assistant.THREAD_STARTED
    suffix = "" if started else f":{opened.context_channel_id or '-'}:{opened.event_id or correlation_id}"
    return ConversationRequest(
        kind=RequestKind.ASSISTANT_THREAD,
        request_id=f"{'ast' if started else 'actx'}:{opened.team_id}:{opened.channel_id}:{opened.thread_ts}{suffix}",
        event_id=opened.event_id,
        team_id=opened.team_id,
        channel_id=opened.channel_id,
        channel_type="im",
        user_id=opened.user_id,
        thread_ts=opened.thread_ts,
        action_id=opened.kind,
        context_channel_id=opened.context_channel_id,
        correlation_id=correlation_id,
    )


def command_request(form: Mapping[str, str], *, correlation_id: str) -> ConversationRequest:
    """A slash command (form fields as Slack posts them) → a request answered in its channel."""
    command = events.parse_command(form)
    return ConversationRequest(
        kind=RequestKind.COMMAND,
        request_id=f"cmd:{command.trigger}",
        team_id=command.team_id,
        channel_id=command.channel_id,
        channel_type=command.channel_type,
        user_id=command.user_id,
        text=command.text[:MAX_TEXT_CHARS],
        response_url=command.response_url,
        correlation_id=correlation_id,
    )


def action_requests(payload: Mapping[str, Any], *, correlation_id: str) -> list[ConversationRequest]:
    """``block_actions`` → one request per InsightMesh button pressed (other actions ignored)."""
    return [ConversationRequest(
        kind=RequestKind.ACTION,
        request_id=f"act:{action.team_id}:{action.channel_id}:{action.message_ts}:{action.user_id}:"
                   f"{action.action_id}:{action.action_ts}",
        team_id=action.team_id,
        channel_id=action.channel_id,
        user_id=action.user_id,
        ts=action.message_ts,
        thread_ts=action.thread_ts,
        response_url=action.response_url,
        action_id=action.action_id,
        action_value=action.action_value,
        correlation_id=correlation_id,
    ) for action in events.parse_actions(payload)]


def describe_span(payload: Mapping[str, Any]) -> None:
    """What Slack sent, on the request's server span when tracing: the payload's type, the
    event's type and id (never a message's text)."""
    span = tracing.current_span()
    if not span.is_recording():
        return
    event = payload.get("event")
    attributes = {"slack.payload.type": payload.get("type"), "slack.event.id": payload.get("event_id"),
                  "slack.event.type": event.get("type") if isinstance(event, dict) else None,
                  "slack.team.id": payload.get("team_id")}
    span.set_attributes({key: value for key, value in attributes.items() if isinstance(value, str) and value})


def _queue(request: ConversationRequest) -> None:
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded by then: free

    try:
        message_id = enqueue(request)
    except (BotoCoreError, ClientError) as error:
        logger.error("could not enqueue; Slack will retry", extra={"error": type(error).__name__})
        raise ServiceUnavailableError("the request could not be queued; retry later") from error
    logger.info("queued", extra={"kind": request.kind.value, "request_id": request.request_id,
                                 "message_id": message_id})


def handle_events(app: InsightMeshResolver) -> Response[Any]:
    body = webhook.verified_body(app)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequestError("the body is not JSON") from error
    if not isinstance(payload, dict):
        raise BadRequestError("the body is not a JSON object")
    describe_span(payload)
    kind = payload.get("type")
    if kind == "url_verification":
        return webhook.ok({"challenge": str(payload.get("challenge", ""))})
    if kind != "event_callback":
        logger.info("ignored", extra={"reason": f"payload type {kind!r}"})
        return webhook.ok()
    retry = app.current_event.headers.get("x-slack-retry-num")
    try:
        changed = workspace_event(payload)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if changed is not None:
        return _workspace_changed(changed, request_id=app.correlation_id)
    try:
        opened = assistant.assistant_event(payload)
    except assistant.MalformedAssistantEvent as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if opened is not None:  # the AI app container: one SQS send, like a message
        _queue(assistant_request(opened, correlation_id=app.correlation_id))
        return webhook.ok()
    try:
        home_tab = home.home_opened(payload)
    except MalformedPayload as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if home_tab is not None:  # the Home tab: one SQS send; the worker publishes it (conversation.app_home)
        _queue(app_home.home_request(home_tab, correlation_id=app.correlation_id))
        return webhook.ok()
    try:
        classified = classify_event(payload, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if classified.decision is Decision.IGNORE or classified.request is None:
        logger.info("ignored", extra={"reason": classified.reason, "retry": retry})
        return webhook.ok()
    request = classified.request
    if classified.decision is Decision.CHECK_THREAD:
        thread = request.thread_key
        if thread is None or not bot_replied_in(thread):
            logger.info("ignored", extra={"reason": "a thread the bot has not replied in"})
            return webhook.ok()
    _queue(request)
    return webhook.ok()


def _workspace_changed(changed: WorkspaceEvent, *, request_id: str) -> Response[Any]:
    """Uninstall or bot-token revocation: record the workspace inactive (one transaction, audited),
    then 200. If DynamoDB cannot be reached the answer is 503, so Slack retries it."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from insightmesh.conversation import workspaces

    try:
        workspaces.deactivate(changed.team_id, reason=changed.kind, event_id=changed.event_id,
                              request_id=request_id)
    except (PynamoDBException, BotoCoreError, ClientError) as error:
        logger.error("could not record the workspace change; Slack will retry",
                     extra={"error": type(error).__name__, "team_id": changed.team_id})
        raise ServiceUnavailableError("the event could not be recorded; retry later") from error
    return webhook.ok()


def handle_command(app: InsightMeshResolver) -> Response[Any]:
    form = webhook.form(webhook.verified_body(app))
    if form.get("ssl_check") == "1":
        return webhook.ok()
    try:
        request = command_request(form, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed slash command: {error}") from error
    if not request.text:
        return webhook.ok({"response_type": "ephemeral", "text": USAGE})
    if request.text.lower() == "settings":
        return webhook.ok({"response_type": "ephemeral", "text": _channel_settings(request)})
    _queue(request)
    return webhook.ok({"response_type": "ephemeral", "text": "On it…"})


def _channel_settings(request: ConversationRequest) -> str:
    """``/insightmesh settings``: the channel's settings, for whoever is in it (Slack posts a
    command only from a conversation its user is in). One GetItem, instead of the SQS send."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from insightmesh.conversation import channel_settings

    if channel_settings.is_direct(request.channel_id, request.channel_type):
        return "Channel settings apply in channels: run `/insightmesh settings` in one. In a DM I answer every message."
    try:
        return channel_settings.describe(channel_settings.cached(request.channel_id, request.channel_type))
    except (PynamoDBException, BotoCoreError, ClientError) as error:
        logger.error("could not read the channel's settings", extra={"error": type(error).__name__})
        raise ServiceUnavailableError("the channel's settings could not be read; retry later") from error


def handle_interaction(app: InsightMeshResolver) -> Response[Any]:
    form = webhook.form(webhook.verified_body(app))
    try:
        payload = json.loads(form.get("payload", ""))
    except json.JSONDecodeError as error:
        raise BadRequestError("the interaction has no JSON payload") from error
    if not isinstance(payload, dict):
        raise BadRequestError("the interaction payload is not a JSON object")
    describe_span(payload)
    try:
        reason = feedback_modal.submission_request(payload, correlation_id=app.correlation_id)
        ask = shortcuts.message_ask(payload)  # "Ask InsightMesh about this message"
        requests = [reason] if reason else [shortcut.shortcut_request(ask, correlation_id=app.correlation_id)] \
            if ask else action_requests(payload, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed interaction: {error}") from error
    if payload.get("type") == "block_actions":  # 👎: the reason modal, within the trigger's 3 s
        feedback_modal.open_for(payload, events.parse_actions(payload))
    for request in requests:
        _queue(request)
    return webhook.ok()
