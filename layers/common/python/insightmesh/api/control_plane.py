"""The route plumbing every control-plane API under ``/api`` shares (admin, jobs, credentials).

* :data:`SECURITY` — the security requirement of every ``/api`` route: a bearer token or the
  session cookie;
* :data:`Limit` and :data:`Cursor` — the documented ``limit`` and ``cursor`` query parameters of
  a list (see :mod:`insightmesh.api.pagination`);
* :func:`responses` — a route's documented success response and its error responses, each in the
  one error envelope (:class:`ErrorResponse`);
* :func:`configure_openapi` — the security schemes, the description and the tags of an app's
  OpenAPI document.

A request that fails validation is authenticated first so that an anonymous caller learns
nothing but 401: that needs the guard, so it lives in the auth context
(:func:`insightmesh.auth.validation.authenticate_before_validation`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Final

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer, Tag
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.pagination import CURSOR_DESCRIPTION, LIMIT_DESCRIPTION, MAX_CURSOR_LENGTH, MAX_LIMIT

ERROR_DESCRIPTIONS: Final[dict[int, str]] = {
    401: "Not authenticated: no, or no valid, bearer token or session cookie.",
    403: "Authenticated but not allowed (an admin is required; audited), or a failed CSRF check.",
    404: "No such resource.",
    409: "Conflict: the resource changed since it was read (version), already exists, is in use, or is "
         "protected (system agents and groups).",
    422: "The request is not valid (parameters, body, page size above 100, or an altered cursor).",
    429: "Too many requests: retry after the Retry-After header's seconds.",
    503: "A dependency (the scheduler, the queue, an identity provider) is unavailable; nothing was changed.",
}
SECURITY: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}, {"sessionCookie": []}]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)]


# -- the error envelope, as documented ------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Response):
    loc: list[str] = Field(default_factory=list, description="Where the problem is, e.g. [\"body\", \"name\"].")
    msg: str
    type: str


class ErrorBody(_Response):
    code: str = Field(description="Machine-readable: unauthorized, forbidden, not_found, conflict, "
                                  "validation_error, rate_limited, ...")
    message: str
    request_id: str = Field(description="The correlation id, also in the X-Request-Id header.")
    details: list[ErrorDetail] | None = None


class ErrorResponse(_Response):
    """The one error envelope of every InsightMesh HTTP function."""

    error: ErrorBody


def responses(success: int, description: str, *errors: int) -> dict[int, OpenAPIResponse]:
    """The route's success response (schema from its return type) and its error responses."""
    documented: dict[int, OpenAPIResponse] = {success: {"description": description}}
    if success == 204:
        documented[success]["content"] = {}
    for status in (401, *errors, 422, 429):
        documented[status] = {"description": ERROR_DESCRIPTIONS[status],
                              "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}}}
    return documented


def configure_openapi(app: InsightMeshResolver, *, description: str, tags: list[Tag]) -> None:
    """The security schemes every /api route uses, the API's description (unless the app has
    one) and its tags (those not already there)."""
    config = app.openapi_config
    schemes = dict(config.security_schemes or {})
    schemes.setdefault("bearerAuth", HTTPBearer(description="An API token: imt_<id>_<secret>."))
    schemes.setdefault("sessionCookie", APIKey.model_validate({"in": APIKeyIn.cookie, "name": "im_session",
                                                               "description": "A browser session."}))
    existing = {tag.name if isinstance(tag, Tag) else tag for tag in config.tags or []}
    merged = [*(config.tags or []), *(tag for tag in tags if tag.name not in existing)]
    app.openapi_config = replace(config, description=config.description or description,
                                 security_schemes=schemes, tags=merged)


__all__ = [
    "ERROR_DESCRIPTIONS",
    "SECURITY",
    "Cursor",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "Limit",
    "configure_openapi",
    "responses",
]
