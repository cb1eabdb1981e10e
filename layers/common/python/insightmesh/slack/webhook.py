"""Slack's HTTP side of the ingress: the raw body, its signature, its form, and Slack's 200s.

Nothing here decides what is answered (:mod:`insightmesh.slack.events` parses the payloads); a
request that fails verification is refused with 401, a body that is not what it claims with 400.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response, content_types

from insightmesh.api import InsightMeshResolver
from insightmesh.api.errors import BadRequestError, UnauthorizedError
from insightmesh.config import get_secret
from insightmesh.observability import get_logger
from insightmesh.slack.verification import verification_failure

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


def form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequestError("the body is not a form") from error


def ok(body: Any = "") -> Response[Any]:
    if isinstance(body, str):
        return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body=body)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)
