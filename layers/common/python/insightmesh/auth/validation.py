"""Authenticate before validation: an anonymous caller learns nothing but 401.

Powertools validates a request's parameters and body before any route or middleware runs. So
that a caller without valid credentials learns nothing but 401, a validation failure under
``/api/`` authenticates first: anonymous → 401, authenticated → 422 (with the details).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.errors import ApiError
from insightmesh.auth.guard import authenticate


def authenticate_before_validation(app: InsightMeshResolver) -> None:
    """A request under /api/ that fails validation is authenticated first (see the module doc)."""
    handlers = app.exception_handler_manager
    invalid = handlers.lookup_exception_handler(RequestValidationError)
    refused = handlers.lookup_exception_handler(ApiError)
    if invalid is None or refused is None:
        raise RuntimeError("create the app with insightmesh.api.create_app(): its error handlers are missing")

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]  # powertools: untyped
    def _authenticate_then_refuse(error: RequestValidationError) -> Response[Any]:
        if app.current_event.path.startswith("/api/"):
            try:
                authenticate(app)
            except ApiError as not_authenticated:
                response: Response[Any] = refused(not_authenticated)
                return response
        invalid_response: Response[Any] = invalid(error)
        return invalid_response


__all__ = ["authenticate_before_validation"]
