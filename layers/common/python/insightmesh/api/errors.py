"""Domain errors that map to HTTP, and the one error envelope every HTTP function returns.

``{"error": {"code": "not_found", "message": "...", "request_id": "..."}}``
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, ClassVar, TypedDict


class ErrorBody(TypedDict, total=False):
    code: str
    message: str
    request_id: str
    details: list[dict[str, Any]]


class ErrorEnvelope(TypedDict):
    error: ErrorBody


class ApiError(Exception):
    """Base of every error that becomes an HTTP response. Raise a subclass from domain code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or HTTPStatus(self.status).phrase
        super().__init__(self.message)
        self.details = details
        self.headers = headers or {}


class BadRequestError(ApiError):
    status, code = 400, "bad_request"


class UnauthorizedError(ApiError):
    status, code = 401, "unauthorized"


class ForbiddenError(ApiError):
    status, code = 403, "forbidden"


class NotFoundError(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowedError(ApiError):
    status, code = 405, "method_not_allowed"


class ConflictError(ApiError):
    status, code = 409, "conflict"


class PayloadTooLargeError(ApiError):
    status, code = 413, "payload_too_large"


class ValidationFailedError(ApiError):
    status, code = 422, "validation_error"


class RateLimitedError(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailableError(ApiError):
    status, code = 503, "service_unavailable"


def envelope(
    code: str, message: str, request_id: str, details: list[dict[str, Any]] | None = None
) -> ErrorEnvelope:
    body: ErrorBody = {"code": code, "message": message, "request_id": request_id}
    if details:
        body["details"] = details
    return {"error": body}


def envelope_json(code: str, message: str, request_id: str) -> str:
    return json.dumps(envelope(code, message, request_id))
