"""The ``/auth/*`` routes of the control plane: browser sign-in, sign-out and "who am I".

* ``GET /auth/login?next=/path`` → 302 to the identity provider, sets the ``im_login`` cookie;
* ``GET /auth/callback`` → 302 to the ``next`` path given at login, sets the ``im_session``
  cookie and clears ``im_login``; a refused callback → 400/401/503 error envelope;
* ``POST /auth/logout`` → 204, revokes the session server-side (its record is deleted, so a copy
  of the cookie stops working too) and clears the cookie;
* ``GET /auth/session`` → ``{user_id, email, is_admin, csrf_token}`` or 401;
* ``GET /auth/login-link?token=...`` → ``{email, expires_at}`` of an unspent link (nothing spent);
* ``POST /auth/login-link`` ``{"token": ...}`` → the same body and the ``im_session`` cookie: spends
  a single-use sign-in link (:mod:`insightmesh.auth.login_links`); unknown, used or expired → 400.

Login, callback and login-link share a per source IP rate limit (``auth-login`` scope,
``LOGIN_RATE_LIMIT_PER_MINUTE``, default 20). Several cookies in one response travel in the
payload 2.0 top-level ``cookies`` list (powertools ``Response(cookies=...)``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.ratelimit import RateLimiter, source_ip
from insightmesh.auth.settings import get_auth_settings

LOGIN_SCOPE: Final = "auth-login"


class LoginLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=1, max_length=128)


def _now() -> float:
    """The login rate limiter's clock (a seam for tests)."""
    return time.time()


def register_auth_routes(app: InsightMeshResolver) -> None:
    """Add the ``/auth/*`` routes to ``app``. Called at cold start, it also validates the auth and
    OIDC settings then, so a bad variable fails the cold start with a message naming it."""
    from insightmesh.auth.oidc_provider import get_oidc_settings

    get_auth_settings()
    get_oidc_settings()

    def limit_login() -> None:
        limit = get_auth_settings().LOGIN_RATE_LIMIT_PER_MINUTE
        RateLimiter(LOGIN_SCOPE, limit, clock=_now).hit(source_ip(app.current_event.raw_event))

    @app.get("/auth/login", include_in_schema=False)
    def _login() -> Response[Any]:
        from insightmesh.auth.login import begin_login
        from insightmesh.auth.sessions import RawCookie

        limit_login()
        next_path = app.current_event.query_string_parameters.get("next") or "/"
        url, cookie = begin_login(next_path=next_path)
        return Response(status_code=302, headers={"Location": url}, cookies=[RawCookie(cookie)])

    @app.get("/auth/callback", include_in_schema=False)
    def _callback() -> Response[Any]:
        from insightmesh.auth.guard import cookie_header
        from insightmesh.auth.login import LoginStateError, clear_login_cookie, finish_login
        from insightmesh.auth.oidc_provider import LoginRefusedError
        from insightmesh.auth.sessions import RawCookie

        limit_login()
        event = app.current_event
        try:
            result = finish_login(query=event.query_string_parameters, cookie_header=cookie_header(event.raw_event))
        except (LoginStateError, LoginRefusedError) as error:
            app.logger.info("sign-in refused", extra={"code": error.code, "reason": error.message,
                                                      "source_ip": source_ip(event.raw_event)})
            refused = app.error(error.status, error.code, error.message)
            refused.cookies.append(RawCookie(clear_login_cookie()))
            return refused
        return Response(
            status_code=302,
            headers={"Location": result.next_path},
            cookies=[RawCookie(result.session_cookie), RawCookie(clear_login_cookie())],
        )

    @app.post("/auth/logout", include_in_schema=False)
    def _logout() -> Response[Any]:
        from insightmesh.auth.guard import cookie_header
        from insightmesh.auth.sessions import RawCookie, clear_session_cookie, revoke_session

        if revoke_session(cookie_header(app.current_event.raw_event)):
            app.logger.info("signed out: session revoked")
        return Response(status_code=204, cookies=[RawCookie(clear_session_cookie())])

    @app.get("/auth/session", include_in_schema=False)
    def _session() -> Response[Any]:
        from insightmesh.auth.guard import authenticate_scoped

        principal = authenticate_scoped(app, action="session.read", target="session")  # a token needs admin:read
        body = {"user_id": principal.user_id, "email": principal.email, "is_admin": principal.is_admin,
                "csrf_token": principal.csrf_token}
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)

    @app.get("/auth/login-link", include_in_schema=False)
    def _peek_login_link() -> Response[Any]:
        from insightmesh.auth.login_links import peek_link

        limit_login()
        preview = peek_link(app.current_event.query_string_parameters.get("token") or "")
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                        body={"email": preview.email, "expires_at": preview.expires_at})

    @app.post("/auth/login-link", include_in_schema=False)
    def _login_link(link: Annotated[LoginLinkIn, Body()]) -> Response[Any]:
        from insightmesh.auth.login_links import spend_link
        from insightmesh.auth.sessions import RawCookie

        limit_login()
        signed_in = spend_link(link.token, request_id=app.correlation_id)
        body = {"user_id": signed_in.user.user_id, "email": signed_in.user.email,
                "is_admin": signed_in.user.is_admin, "csrf_token": signed_in.csrf_token}
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body,
                        cookies=[RawCookie(signed_in.session_cookie)])
