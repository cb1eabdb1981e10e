"""The console's one path to the data: the ``/api`` and ``/auth`` routes, called in-process.

:class:`InProcessApi` holds the same resolver apps the ``admin_api`` and ``tasks_api`` functions
serve (built by their factories and injected by ``functions/console``) and dispatches a payload 2.0
event to the one that serves the path, as API Gateway would route it. The event carries the
browser's own ``Cookie`` header, the CSRF token the console's form echoed, the browser's source IP
and the console's request id: the same guard, validation, rate limits, audit and error envelope
apply as to a request from ``curl``. The console never reads or writes a table itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from aws_lambda_powertools.utilities.typing import LambdaContext


class Resolver(Protocol):
    """What the console needs of an app (``insightmesh.api.InsightMeshResolver`` is one)."""

    def serves(self, path: str) -> bool: ...

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Caller:
    """Who the browser is, as the API must see it."""

    cookie: str | None
    source_ip: str
    user_agent: str
    request_id: str
    csrf_token: str | None = None


@dataclass(frozen=True)
class ApiFailure:
    status: int
    code: str
    message: str
    request_id: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    set_cookies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> ApiFailure:
        """The error envelope of a failed call (a generic one if the body is not an envelope)."""
        envelope = self.body.get("error") if isinstance(self.body, dict) else None
        if not isinstance(envelope, dict):
            return ApiFailure(self.status, "error", f"the API answered {self.status}")
        details = envelope.get("details")
        return ApiFailure(self.status, str(envelope.get("code", "error")), str(envelope.get("message", "")),
                        str(envelope.get("request_id", "")), details if isinstance(details, list) else [])


def _event(method: str, path: str, query: Mapping[str, str], body: Any, caller: Caller) -> dict[str, Any]:
    encoded = None if body is None else json.dumps(body)
    headers = {"accept": "application/json", "user-agent": caller.user_agent, "x-request-id": caller.request_id,
               "x-forwarded-for": caller.source_ip}
    if encoded is not None:
        headers["content-type"] = "application/json"
    if caller.csrf_token:
        headers["x-csrf-token"] = caller.csrf_token
    cookies = [part.strip() for part in (caller.cookie or "").split(";") if part.strip()]
    raw_query = urlencode(dict(query))
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "cookies": cookies,
        "headers": headers,
        "queryStringParameters": dict(query) or None,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": caller.source_ip,
                     "userAgent": caller.user_agent},
            "requestId": caller.request_id,
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": encoded,
        "isBase64Encoded": False,
    }


class InProcessApi:
    """Dispatch to the app that serves a path (see the module doc)."""

    def __init__(self, apps: Sequence[Resolver]) -> None:
        self.apps = list(apps)

    def call(self, method: str, path: str, *, caller: Caller, context: LambdaContext,
             query: Mapping[str, str] | None = None, body: Any = None) -> ApiResponse:
        app = next((candidate for candidate in self.apps if candidate.serves(path)), None)
        if app is None:
            return ApiResponse(404, {"error": {"code": "not_found", "message": f"no route for {method} {path}"}})
        # Powertools keeps the event being resolved on a class attribute shared by every resolver:
        # the console's own request must be the current one again once the API has answered.
        outer_event, outer_context = BaseRouter.current_event, BaseRouter.lambda_context
        try:
            response = app.resolve(_event(method.upper(), path, query or {}, body, caller), context)
        finally:
            BaseRouter.current_event, BaseRouter.lambda_context = outer_event, outer_context
        text = response.get("body") or ""
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = None
        cookies = [str(cookie) for cookie in response.get("cookies") or []]
        return ApiResponse(int(response.get("statusCode", 500)), parsed, cookies)


__all__ = ["ApiFailure", "ApiResponse", "Caller", "InProcessApi", "Resolver"]
