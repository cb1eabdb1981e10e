"""The credential routes under ``/api/credentials``: ``register_credential_routes(app)``.

Admins only (a non-admin gets 403 and the refused attempt is audited; no credentials → 401):

* ``GET /api/credentials`` — name, provider, scopes, status and last use of each credential,
  newest first, paginated (``limit`` ≤ 100, ``cursor``). Never any token;
* ``GET /api/credentials/<id>`` — one credential;
* ``DELETE /api/credentials/<id>`` — revoke at Google, then delete (``revoked`` says whether
  Google confirmed); audited ``credential.delete``;
* ``POST /api/credentials/google/authorize`` ``{"name", "scopes"}`` — start connecting a Google
  credential: ``{"authorization_url", "state_expires_at"}`` and the ``im_connect`` cookie (open the
  URL in the same browser); audited ``credential.authorize``.

And for the browser, without bearer token (the single-use ``state``, bound to the admin and —
by the short-lived signed ``im_connect`` cookie the authorize answer sets — to the browser that
asked for it; a callback without that cookie, or with a session cookie of another user, is
refused):

* ``GET /api/credentials/google/callback?code=&state=`` — Google's redirect: an HTML page saying
  the credential was connected (its name escaped), or why it was not (400/503, nothing stored).
  Served with ``Content-Security-Policy: default-src 'none'``; audited ``credential.create`` as
  the admin who started the flow.

A request that fails validation (a body or parameter) is authenticated first, so an anonymous
caller learns nothing but 401 (``insightmesh.auth.validation.authenticate_before_validation``,
installed here unless the handler already did).
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import (
    SECURITY,
    Cursor,
    ErrorResponse,
    Limit,
    configure_openapi,
    responses,
)
from insightmesh.api.errors import ApiError
from insightmesh.api.pagination import DEFAULT_LIMIT
from insightmesh.api.ratelimit import RateLimiter, source_ip
from insightmesh.auth.guard import IP_SCOPE, authenticate_admin, cookie_header
from insightmesh.auth.principal import Principal
from insightmesh.auth.sessions import RawCookie, read_session
from insightmesh.auth.settings import get_auth_settings
from insightmesh.auth.validation import authenticate_before_validation
from insightmesh.credentials import google, pages, service
from insightmesh.credentials.schemas import (
    AuthorizationOut,
    CredentialDeleted,
    CredentialPage,
    CredentialSummary,
    GoogleAuthorizeIn,
)

PREFIX: Final = "/api/credentials"
TAG: Final = Tag(name="credentials", description="Provider credentials (Google OAuth), envelope-encrypted with KMS. "
                                                 "Tokens are never returned.")
DESCRIPTION: Final = ("Provider credentials (Google OAuth). Authentication, errors and lists work as in the admin "
                      "API (/api/openapi.json).")
CredentialId = Annotated[str, Path(pattern=service.CREDENTIAL_ID_PATTERN, description="The credential's id.")]
UNAVAILABLE: Final[OpenAPIResponse] = {
    "description": "Google OAuth is not configured, or Google or KMS is unavailable (retry later).",
    "content": {"application/json": {"model": ErrorResponse}},
}


def _authenticates_before_validation(app: InsightMeshResolver) -> bool:
    """Whether ``authenticate_before_validation`` (which covers every path under /api/) is
    already installed on ``app`` — e.g. by the handler: installing it twice would authenticate
    an invalid request twice."""
    handler = app.exception_handler_manager.lookup_exception_handler(RequestValidationError)
    return getattr(handler, "__qualname__", "").startswith(f"{authenticate_before_validation.__name__}.<locals>.")


def _html(status: int, page: str, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=status, content_type=pages.CONTENT_TYPE, body=page,
                    headers={**(headers or {}), **pages.html_headers()})


def register_credential_routes(app: InsightMeshResolver) -> None:
    """Add the credential routes to ``app`` (see the module doc). Called at cold start, it also
    validates the auth and Google settings then, so a malformed variable fails the cold start."""
    get_auth_settings()
    google.validate_settings()
    configure_openapi(app, description=DESCRIPTION, tags=[TAG])
    if not _authenticates_before_validation(app):
        authenticate_before_validation(app)

    def admin(action: str, target: str) -> Principal:
        return authenticate_admin(app, action=action, target=target)

    @app.get(PREFIX, summary="List credentials", tags=[TAG.name], security=SECURITY,
             description="Newest first: name, provider, scopes, status (active, expiring, expired) and last use. "
                         "Never any token.",
             responses=responses(200, "A page of credentials", 403))
    def list_credentials(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> CredentialPage:
        admin("credential.read", "credential:*")
        return service.list_credentials(limit=limit, cursor=cursor)

    @app.post(f"{PREFIX}/google/authorize", summary="Start connecting a Google credential", tags=[TAG.name],
              security=SECURITY,
              description="Returns Google's consent URL. Open it in the browser of the same admin within 10 minutes; "
                          "Google then redirects to the callback, which stores the credential. Scopes: full Google "
                          "scope URLs or their aliases (drive.readonly, admin.directory.user.readonly, "
                          "admin.directory.group.readonly, admin.directory.group.member.readonly).",
              responses={**responses(200, "The consent URL", 403), 503: UNAVAILABLE})
    def authorize_google(request: Annotated[GoogleAuthorizeIn, Body()]) -> Response[AuthorizationOut]:
        principal = admin("credential.authorize", "credential:*")
        started = service.start_google_authorization(principal.user_id, request.name, request.scopes,
                                                     actor=principal, request_id=app.correlation_id)
        body = AuthorizationOut(authorization_url=started.authorization_url, state_expires_at=started.state_expires_at)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body,
                        cookies=[RawCookie(started.binding_cookie)])

    @app.get(google.CALLBACK_PATH, summary="Google's redirect after consent (browser)", tags=[TAG.name],
             description="Not called by API clients: Google redirects the admin's browser here. Answers an HTML "
                         "page. A missing, unknown, replayed or expired state, or one started by another user, "
                         "is refused (400) and nothing is stored.",
             responses={200: {"description": "The credential was connected (HTML page).",
                              "content": {pages.CONTENT_TYPE: {"schema": {"type": "string"}}}},
                        400: {"description": "Refused: bad state or consent denied; nothing stored (HTML page).",
                              "content": {pages.CONTENT_TYPE: {"schema": {"type": "string"}}}},
                        429: {"description": "Too many requests (HTML page).",
                              "content": {pages.CONTENT_TYPE: {"schema": {"type": "string"}}}},
                        503: {"description": "Google OAuth not configured, or Google/KMS unavailable (HTML page).",
                              "content": {pages.CONTENT_TYPE: {"schema": {"type": "string"}}}}})
    def google_callback() -> Response[str]:
        event = app.current_event
        query = event.query_string_parameters or {}
        try:
            RateLimiter(IP_SCOPE, get_auth_settings().API_IP_RATE_LIMIT_PER_MINUTE).hit(source_ip(event.raw_event))
            session = read_session(cookie_header(event.raw_event))
            connected = service.complete_google_authorization(
                query.get("state"), query.get("code"), query.get("error"),
                session_user_id=session.user_id if session is not None else None,
                cookie_header=cookie_header(event.raw_event), request_id=app.correlation_id)
        except ApiError as error:
            app.logger.info("credential connection refused", extra={"code": error.code, "status": error.status,
                                                                      "source_ip": source_ip(event.raw_event)})
            # The im_connect cookie is kept: a forged callback must not end the admin's real flow.
            return _html(error.status, pages.error_page(error.message, request_id=app.correlation_id), error.headers)
        page = _html(200, pages.connected_page(connected, request_id=app.correlation_id))
        page.cookies.append(RawCookie(service.clear_binding_cookie()))
        return page

    @app.get(f"{PREFIX}/<credential_id>", summary="Show a credential", tags=[TAG.name], security=SECURITY,
             responses=responses(200, "The credential (never any token)", 403, 404))
    def get_credential(credential_id: CredentialId) -> CredentialSummary:
        admin("credential.read", service.target(credential_id))
        return service.get_credential_summary(credential_id)

    @app.delete(f"{PREFIX}/<credential_id>", summary="Revoke and delete a credential", tags=[TAG.name],
                security=SECURITY,
                description="Revokes the grant at Google, then deletes the credential. If Google cannot be reached "
                            "the credential is deleted all the same and `revoked` is false: revoke the app's access "
                            "in the Google account then.",
                responses={**responses(200, "The deleted credential, and whether Google revoked it", 403, 404),
                           503: UNAVAILABLE})
    def delete_credential(credential_id: CredentialId) -> CredentialDeleted:
        principal = admin("credential.delete", service.target(credential_id))
        return service.delete_credential(credential_id, actor=principal, request_id=app.correlation_id)


__all__ = ["register_credential_routes"]
