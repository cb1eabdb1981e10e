"""slack_ingress: verify, filter, enqueue, acknowledge — in well under Slack's 3 seconds.

The ack path makes as few AWS calls as exactly-once allows: a DM or a mention costs one SQS
send (its deduplication id drops retries); a follow-up without a mention costs one GetItem on
the thread first. Nothing is queued or stored for a request that fails verification (401) or
is malformed (400). If the queue cannot be reached the answer is 503, so Slack retries it later
and nothing is lost. ``app_uninstalled`` and ``tokens_revoked`` (bot tokens) cost one
TransactWriteItems: the workspace is recorded inactive, with its audit entry
(:mod:`insightmesh.conversation.workspaces`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response, content_types

from insightmesh.api import InsightMeshResolver
from insightmesh.api.errors import BadRequestError, ServiceUnavailableError, UnauthorizedError
from insightmesh.config import get_secret
from insightmesh.conversation.queue import enqueue
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.conversation.threads import bot_replied_in
from insightmesh.observability import get_logger
from insightmesh.slack.events import (
    Decision,
    MalformedPayload,
    WorkspaceEvent,
    action_requests,
    classify_event,
    command_request,
    workspace_event,
)
from insightmesh.slack.verification import verification_failure

USAGE: Final = (
    "*Usage:* `/insightmesh <question>` asks the assistant; `/insightmesh <agent> <text>` asks an agent "
    "(for example `/insightmesh meddic <call notes>`); `/insightmesh help` lists the agents you may use."
)

logger = get_logger("slack_ingress")


def raw_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError as error:
            raise BadRequestError("the body is not valid base64") from error
    return str(body).encode()


def verified_body(app: InsightMeshResolver) -> bytes:
    event = app.current_event.raw_event
    body = raw_body(event)
    failure = verification_failure(event.get("headers") or {}, body,
                                   get_secret("SLACK_SIGNING_SECRET", default=""))
    if failure:
        logger.warning("slack request refused", extra={"reason": failure})
        raise UnauthorizedError("the request is not signed by Slack")
    return body


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequestError("the body is not a form") from error


def _queue(request: ConversationRequest) -> None:
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded by then: free

    try:
        message_id = enqueue(request)
    except (BotoCoreError, ClientError) as error:
        logger.error("could not enqueue; Slack will retry", extra={"error": type(error).__name__})
        raise ServiceUnavailableError("the request could not be queued; retry later") from error
    logger.info("queued", extra={"kind": request.kind.value, "request_id": request.request_id,
                                 "message_id": message_id})


def _ok(body: Any = "") -> Response[Any]:
    if isinstance(body, str):
        return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body=body)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)


def handle_events(app: InsightMeshResolver) -> Response[Any]:
    body = verified_body(app)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequestError("the body is not JSON") from error
    if not isinstance(payload, dict):
        raise BadRequestError("the body is not a JSON object")
    kind = payload.get("type")
    if kind == "url_verification":
        return _ok({"challenge": str(payload.get("challenge", ""))})
    if kind != "event_callback":
        logger.info("ignored", extra={"reason": f"payload type {kind!r}"})
        return _ok()
    retry = app.current_event.headers.get("x-slack-retry-num")
    try:
        changed = workspace_event(payload)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if changed is not None:
        return _workspace_changed(changed, request_id=app.correlation_id)
    try:
        classified = classify_event(payload, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed event: {error}") from error
    if classified.decision is Decision.IGNORE or classified.request is None:
        logger.info("ignored", extra={"reason": classified.reason, "retry": retry})
        return _ok()
    request = classified.request
    if classified.decision is Decision.CHECK_THREAD:
        thread = request.thread_key
        if thread is None or not bot_replied_in(thread):
            logger.info("ignored", extra={"reason": "a thread the bot has not replied in"})
            return _ok()
    _queue(request)
    return _ok()


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
    return _ok()


def handle_command(app: InsightMeshResolver) -> Response[Any]:
    form = _form(verified_body(app))
    if form.get("ssl_check") == "1":
        return _ok()
    try:
        request = command_request(form, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed slash command: {error}") from error
    if not request.text:
        return _ok({"response_type": "ephemeral", "text": USAGE})
    _queue(request)
    return _ok({"response_type": "ephemeral", "text": "On it…"})


def handle_interaction(app: InsightMeshResolver) -> Response[Any]:
    form = _form(verified_body(app))
    try:
        payload = json.loads(form.get("payload", ""))
    except json.JSONDecodeError as error:
        raise BadRequestError("the interaction has no JSON payload") from error
    if not isinstance(payload, dict):
        raise BadRequestError("the interaction payload is not a JSON object")
    try:
        requests = action_requests(payload, correlation_id=app.correlation_id)
    except (MalformedPayload, ValueError) as error:
        raise BadRequestError(f"malformed interaction: {error}") from error
    for request in requests:
        _queue(request)
    return _ok()
