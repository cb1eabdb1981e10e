"""CloudFormation custom resources: run the step, always answer CloudFormation.

CloudFormation waits (up to an hour) for a PUT to the pre-signed ``ResponseURL``; a handler that
fails without answering hangs the deploy. ``handle_custom_resource`` answers SUCCESS or FAILED
(with the error) in every case. crhelper does the same and more (polling, timers) at the price
of another layer dependency; the protocol here is one JSON PUT, made with httpx.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.observability import get_logger

Step = Callable[[dict[str, Any]], dict[str, Any] | None]


def _send(event: Mapping[str, Any], context: LambdaContext, status: str, reason: str,
          data: Mapping[str, Any] | None) -> None:
    body = {
        "Status": status,
        "Reason": reason[:3000],
        "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'resource')}",
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": dict(data or {}),
    }
    # The pre-signed URL was signed for an empty Content-Type.
    httpx.put(str(event["ResponseURL"]), content=json.dumps(body), headers={"Content-Type": ""},
              timeout=10).raise_for_status()


def handle_custom_resource(
    event: Mapping[str, Any],
    context: LambdaContext,
    *,
    on_create: Step,
    on_update: Step | None = None,
    on_delete: Step | None = None,
) -> None:
    logger = get_logger()
    kind = event.get("RequestType")
    step = {"Create": on_create, "Update": on_update, "Delete": on_delete}.get(str(kind))
    properties = dict(event.get("ResourceProperties") or {})
    try:
        data = step(properties) if step else None
    except Exception as error:  # reported to CloudFormation (which rolls the deploy back), not swallowed
        logger.exception("custom resource failed", extra={"request_type": kind})
        _send(event, context, "FAILED", f"{type(error).__name__}: {error} (see {context.log_stream_name})", None)
        return
    _send(event, context, "SUCCESS", "ok", data)
