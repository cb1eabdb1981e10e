"""The one resolver factory used by every HTTP function.

``create_app()`` returns a powertools ``APIGatewayHttpResolver`` (HttpApi, payload 2.0) with
request validation on, and adds what every InsightMesh endpoint needs in one place:

* CORS from ``ALLOWED_ORIGINS``;
* a correlation id (``X-Request-Id`` or the API Gateway request id) bound to every log line and
  echoed in the ``X-Request-Id`` response header;
* the request size limit (``MAX_REQUEST_BYTES``) → 413 before any route runs;
* the error envelope for 400/401/403/404/405/409/413/422/429/500 (``insightmesh.api.errors``);
* security headers on every response (HSTS in production);
* the OpenAPI document at ``openapi_path``;
* when tracing is on, a server span per request (``POST /slack/events``: the method and the
  route of the API Gateway route key; :func:`server_span`). It starts a new trace: a
  ``traceparent`` sent by a caller on the internet is not trusted (it would choose the sampling).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh import tracing
from insightmesh.api.errors import ApiError, envelope
from insightmesh.config import Settings, get_settings
from insightmesh.observability import bind_correlation_id, correlation_id_from_http, get_logger

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HSTS = "max-age=63072000; includeSubDomains"


class InsightMeshResolver(APIGatewayHttpResolver):
    """APIGatewayHttpResolver plus the cross-cutting behaviour described in the module doc."""

    def __init__(self, *, settings: Settings, logger: Logger, payload_too_large_status: int = 413,
                 json_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.json_only = json_only
        self.settings = settings
        self.payload_too_large_status = payload_too_large_status
        self.logger = logger
        self.correlation_id = ""
        self._install_error_handlers()

    # -- responses -----------------------------------------------------------------------------
    def error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response[Any]:
        return Response(
            status_code=status,
            content_type=content_types.APPLICATION_JSON,
            body=envelope(code, message, self.correlation_id, details),
            headers=headers,
        )

    def _install_error_handlers(self) -> None:
        @self.exception_handler(ApiError)
        def _api_error(error: ApiError) -> Response[Any]:
            if error.status >= 500:
                self.logger.error("request failed", extra={"code": error.code, "error": error.message})
            return self.error(error.status, error.code, error.message, details=error.details, headers=error.headers)

        @self.exception_handler(RequestValidationError)
        def _validation_error(error: RequestValidationError) -> Response[Any]:
            details = [
                {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", "")),
                 "type": str(item.get("type", ""))}
                for item in error.errors()
            ]
            return self.error(422, "validation_error", validation_summary(details), details=details)

        @self.exception_handler(ServiceError)
        def _service_error(error: ServiceError) -> Response[Any]:
            code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                    422: "validation_error", 429: "rate_limited"}.get(error.status_code, "error")
            return self.error(error.status_code, code, str(error.msg))

        @self.not_found
        def _not_found(_: PowertoolsNotFound) -> Response[Any]:
            method = self.current_event.http_method.upper()
            path = self.current_event.path
            allowed = sorted(
                {route.method for route in self._static_routes + self._dynamic_routes if route.rule.match(path)}
            )
            if allowed:
                return self.error(
                    405, "method_not_allowed", f"{method} is not allowed on {path}",
                    headers={"Allow": ", ".join(allowed)},
                )
            return self.error(404, "not_found", f"no route for {method} {path}")

        @self.exception_handler(RequestUnsupportedContentType)
        def _unsupported_media_type(_error: RequestUnsupportedContentType) -> Response[Any]:
            return self.error(415, "unsupported_media_type", "send the body as application/json")

        @self.exception_handler([UnicodeDecodeError, json.JSONDecodeError])
        def _undecodable_body(_error: ValueError) -> Response[Any]:
            return self.error(400, "bad_request", "the body is not valid UTF-8 JSON")

        @self.exception_handler(Exception)
        def _unexpected(error: Exception) -> Response[Any]:
            # The one top-level place where an unexpected error is logged with its context.
            self.logger.exception("unhandled error", extra={"error_type": type(error).__name__})
            return self.error(500, "internal_error", "an internal error occurred")

    def serves(self, path: str) -> bool:
        """Whether one of this app's routes (any method) matches ``path``: how an in-process
        dispatcher (the console's) picks the app API Gateway would route ``path`` to."""
        return any(route.rule.match(path) for route in self._static_routes + self._dynamic_routes)

    # -- entry point ---------------------------------------------------------------------------
    def _body_size(self, event: dict[str, Any]) -> int:
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                return len(base64.b64decode(body, validate=False))
            except ValueError:  # not base64 (binascii.Error is one): the route refuses it with a 400
                return len(body) * 3 // 4
        return len(body.encode())

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not tracing.enabled():
            return self._resolve_request(event, context)
        with server_span(event) as span:
            response = self._resolve_request(event, context)
            status = int(response.get("statusCode") or 0)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_error(f"HTTP {status}")
            return response

    def _resolve_request(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        event = dict(event)
        self.correlation_id = correlation_id_from_http(event)
        bind_correlation_id(self.logger, self.correlation_id)
        if self.json_only and not _is_json_request(event):
            response = self._response_dict(415, envelope(
                "unsupported_media_type", "send the body as application/json", self.correlation_id))
        elif self._body_size(event) > self.settings.MAX_REQUEST_BYTES:
            response = self._response_dict(
                self.payload_too_large_status, envelope("payload_too_large",
                              f"the request body exceeds {self.settings.MAX_REQUEST_BYTES} bytes",
                              self.correlation_id),
            )
        else:
            response = super().resolve(event, context)
        headers = response.setdefault("headers", {}) or {}
        headers.update(SECURITY_HEADERS)
        if self.settings.is_production:
            headers["Strict-Transport-Security"] = HSTS
        headers["X-Request-Id"] = self.correlation_id
        response["headers"] = headers
        return response

    @staticmethod
    def _response_dict(status: int, body: Any) -> dict[str, Any]:
        import json

        return {
            "statusCode": status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps(body),
            "isBase64Encoded": False,
        }


def server_span(event: Mapping[str, Any]) -> AbstractContextManager[tracing.Span]:
    """The server span of one HTTP API request (payload 2.0): named ``{method} {route}`` from
    the route key (``POST /slack/events``, ``GET /api/{proxy+}``), only the method for the
    ``$default`` route, as OpenTelemetry's HTTP conventions name a server span."""
    context = event.get("requestContext") or {}
    method = str((context.get("http") or {}).get("method") or "").upper() or "_OTHER"
    route = str(event.get("routeKey") or context.get("routeKey") or "").partition(" ")[2]
    attributes: dict[str, tracing.AttributeValue] = {
        "http.request.method": method, "url.path": str(event.get("rawPath") or ""), "url.scheme": "https"}
    if route:
        attributes["http.route"] = route
    return tracing.span(f"{method} {route}" if route else method, kind="server", attributes=attributes)


def _is_json_request(event: Mapping[str, Any]) -> bool:
    """A request without a body, or with a JSON one (``application/json`` or ``...+json``)."""
    if not event.get("body"):
        return True
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def create_app(
    service: str,
    *,
    title: str | None = None,
    settings: Settings | None = None,
    openapi_path: str | None = None,
    payload_too_large_status: int = 413,
    json_only: bool = False,
) -> InsightMeshResolver:
    """Build the resolver for one HTTP function. ``openapi_path`` serves its OpenAPI 3.1 JSON.
    ``payload_too_large_status``: 413, or 400 where a caller (Slack) expects every bad body so.
    ``json_only``: refuse a body that is not JSON with 415 before any route runs (APIs whose every
    body is JSON; not Slack's, whose commands and interactions are form-encoded)."""
    settings = settings or get_settings()
    logger = get_logger(service)
    cors = CORSConfig(
        allow_origin=settings.ALLOWED_ORIGINS[0] if settings.ALLOWED_ORIGINS else "",
        extra_origins=settings.ALLOWED_ORIGINS[1:],
        allow_headers=["Authorization", "Content-Type", "X-Request-Id", "X-CSRF-Token"],
        expose_headers=["X-Request-Id"],
        allow_credentials=True,
        max_age=600,
    )
    app = InsightMeshResolver(settings=settings, logger=logger, cors=cors, enable_validation=True,
                              payload_too_large_status=payload_too_large_status, json_only=json_only)
    if openapi_path:
        register_openapi(app, openapi_path, title or f"InsightMesh {service}", settings.APP_VERSION)
    return app


ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "request_id"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "request_id": {"type": "string"},
                       "details": {"type": "array", "items": {"type": "object"}}},
    }},
}
# What the resolver itself may answer, whatever the route: documented on every operation so the
# document is complete (schemathesis holds the API to it).
_BODY_ERRORS = {"400": "The body is not valid UTF-8 JSON.", "413": "The body is too large.",
                "415": "The body is not application/json.", "422": "The request is not valid."}
_PARAMETER_ERRORS = {"422": "The request is not valid."}


def validation_summary(details: list[dict[str, Any]]) -> str:
    """The envelope's one-line message for a 422: the first problem, named by its field, so a client
    (or the console, or a person reading curl's output) sees what to fix without reading details.

    ``loc`` starts with where the value was (``body``, ``query``, ``path``); the field follows.
    Pydantic prefixes a validator's own message with "Value error, ", which says nothing here."""
    if not details:
        return "the request is not valid"
    first = details[0]
    where = [part for part in first["loc"][1:] if part] or list(first["loc"][:1])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(details) - 1} more problem{'s' if len(details) > 2 else ''})" if len(details) > 1 else ""
    return f"the request is not valid: {'.'.join(where)}: {message}{more}"


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the resolver's own error responses (with the envelope schema) to every operation."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorEnvelope", ENVELOPE_SCHEMA)
    reference = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = dict(_BODY_ERRORS) if "requestBody" in operation else {}
            if operation.get("parameters"):
                errors.update(_PARAMETER_ERRORS)
            for status, description in errors.items():
                operation["responses"].setdefault(status, {
                    "description": description, "content": {"application/json": {"schema": reference}}})
    return document


def register_openapi(app: InsightMeshResolver, path: str, title: str, version: str) -> None:
    schema: Callable[[], str] = lambda: json.dumps(  # noqa: E731
        complete_openapi(json.loads(app.get_openapi_json_schema(title=title, version=version))))

    @app.get(path, include_in_schema=False)
    def _openapi() -> Response[str]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=schema())
