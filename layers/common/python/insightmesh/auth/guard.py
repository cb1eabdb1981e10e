"""Who may call the control plane: ``authenticate`` at the top of every protected route.

Order of checks, each refusing with the error envelope:

1. per source IP rate limit (``api-ip``, ``API_IP_RATE_LIMIT_PER_MINUTE``) → 429 + Retry-After;
2. ``Authorization: Bearer <API token>`` → the token's user; or else the ``im_session`` cookie →
   the session's user; the user is read on every request (GetItem), so a deactivated user is
   refused at once. Nothing valid → 401 with ``WWW-Authenticate: Bearer``;
3. CSRF, for a cookie-authenticated POST/PUT/PATCH/DELETE: ``X-CSRF-Token`` equal to the
   session's token, or an ``Origin`` (else ``Referer``) whose origin is in ``ALLOWED_ORIGINS``
   or is that of ``PUBLIC_BASE_URL`` → else 403. Bearer requests need none (a browser never
   attaches a bearer token by itself);
4. per principal rate limit (``api-principal``, ``API_RATE_LIMIT_PER_MINUTE``) → 429.

Scopes: every ``/api`` route goes through :func:`authenticate_scoped` or
:func:`authenticate_admin`, which require of an API token ``admin:read`` for a read (GET, HEAD)
and ``admin:write`` for anything else. The scopes are the token's own, fixed when it was issued:
a token of a user later promoted to admin gains no scope. A browser session carries its user's
rights (no scopes are checked).

Refused authentications are logged (never with the presented credential), not audited;
``require_admin`` audits the refused admin attempts of authenticated principals.

One browser request, several API calls: the console renders a page from several in-process API
calls made for one request of the browser. Inside :func:`one_request` the first successful
authentication of a credential (from a source IP) is remembered for the rest of that request: the
later calls skip the two rate-limit hits and the session and user reads, so a page counts once
against the limits (a dashboard of ten API calls no longer spends ten) and costs four DynamoDB
calls, not forty. Everything that depends on the call itself still runs on every call: the CSRF
check of a state-changing method, the token's scope, the admin check and its audit. A refusal is
never remembered, and nothing outlives the request (a context variable, reset when it ends).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.errors import ForbiddenError, UnauthorizedError
from insightmesh.api.ratelimit import RateLimiter, source_ip
from insightmesh.auth.principal import Principal
from insightmesh.auth.settings import get_auth_settings, origin_of

if TYPE_CHECKING:
    from insightmesh.directory.models import User

IP_SCOPE: Final = "api-ip"
PRINCIPAL_SCOPE: Final = "api-principal"
CSRF_HEADER: Final = "x-csrf-token"
STATE_CHANGING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
READ_SCOPE: Final = "admin:read"
WRITE_SCOPE: Final = "admin:write"
WWW_AUTHENTICATE: Final = 'Bearer realm="insightmesh"'
BEARER_HOW_TO: Final = ("the Authorization header is not a Bearer token: send Authorization: Bearer <token> "
                        "(an API token from `insightmesh token create`)")


def _now() -> float:
    """The rate limiters' clock (a seam for tests)."""
    return time.time()


def header(event: Mapping[str, Any], name: str) -> str | None:
    """The value of request header ``name`` (any case) in an API Gateway event, else ``None``."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def cookie_header(event: Mapping[str, Any]) -> str | None:
    """The request's cookies as one ``Cookie`` header: payload 2.0 moves them to ``cookies``."""
    parts = [str(cookie) for cookie in (event.get("cookies") or [])]
    raw = header(event, "cookie")
    if raw:
        parts.append(raw)
    return "; ".join(parts) or None


def _unauthorized(app: InsightMeshResolver, reason: str, *, invalid_token: bool = False,
                  message: str | None = None) -> UnauthorizedError:
    app.logger.info("request refused: not authenticated",
                    extra={"reason": reason, "source_ip": source_ip(app.current_event.raw_event),
                           "path": app.current_event.path})
    challenge = WWW_AUTHENTICATE + (', error="invalid_token"' if invalid_token else "")
    default = "authentication required" if not invalid_token else "the credentials are not valid"
    return UnauthorizedError(message or default, headers={"WWW-Authenticate": challenge})


def _active_user(user_id: str) -> User | None:
    from insightmesh.directory.models import User

    try:
        user = User.get(user_id)
    except User.DoesNotExist:
        return None
    return user if user.is_active else None


# (source IP, credential) -> the principal it authenticated, within one browser request.
_REQUEST: ContextVar[dict[tuple[str, str], Principal] | None] = ContextVar("guard_request", default=None)


@contextmanager
def one_request() -> Iterator[None]:
    """The API calls made inside serve one browser request: see the module doc."""
    reset = _REQUEST.set({})
    try:
        yield
    finally:
        _REQUEST.reset(reset)


def authenticate(app: InsightMeshResolver) -> Principal:
    """The principal of the current request, or raise 401/403/429 (see the module doc)."""
    event = app.current_event.raw_event
    authorization = header(event, "authorization")
    credential = f"bearer {authorization}" if authorization is not None else f"cookie {cookie_header(event)}"
    remembered = _REQUEST.get()
    key = (source_ip(event), credential)
    principal = remembered.get(key) if remembered is not None else None
    if principal is None:
        principal = _authenticate(app, event, authorization)
        if remembered is not None:
            remembered[key] = principal
    if principal.via == "session":
        _require_csrf(app, event, principal)
    return principal


def _authenticate(app: InsightMeshResolver, event: dict[str, Any], authorization: str | None) -> Principal:
    settings = get_auth_settings()
    RateLimiter(IP_SCOPE, settings.API_IP_RATE_LIMIT_PER_MINUTE, clock=_now).hit(source_ip(event))
    principal = _from_bearer(app, authorization) if authorization is not None else _from_session(app, event)
    RateLimiter(PRINCIPAL_SCOPE, settings.API_RATE_LIMIT_PER_MINUTE, clock=_now).hit(principal.user_id)
    return principal


def _from_bearer(app: InsightMeshResolver, authorization: str) -> Principal:
    from insightmesh.auth.tokens import verify_token

    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        # Never echo the header: a token sent without its prefix is still a secret.
        raise _unauthorized(app, "unsupported authorization scheme", invalid_token=True,
                            message=BEARER_HOW_TO)
    token = verify_token(credential.strip())
    if token is None:
        raise _unauthorized(app, "unknown, revoked, expired or malformed api token", invalid_token=True)
    user = _active_user(token.user_id)
    if user is None:
        raise _unauthorized(app, "api token of a missing or inactive user", invalid_token=True)
    return Principal(user_id=user.user_id, email=user.email, is_admin=user.is_admin, via="token",
                     token_id=token.token_id, scopes=frozenset(token.scopes))


def _from_session(app: InsightMeshResolver, event: Mapping[str, Any]) -> Principal:
    from insightmesh.auth.sessions import read_session

    claims = read_session(cookie_header(event))
    if claims is None:
        raise _unauthorized(app, "no valid credentials")
    user = _active_user(claims.user_id)
    if user is None:
        raise _unauthorized(app, "session of a missing or inactive user")
    return Principal(user_id=user.user_id, email=user.email, is_admin=user.is_admin, via="session",
                     csrf_token=claims.csrf)


def _require_csrf(app: InsightMeshResolver, event: Mapping[str, Any], principal: Principal) -> None:
    """A state-changing request of a browser session must prove it comes from our pages."""
    if app.current_event.http_method.upper() not in STATE_CHANGING_METHODS:
        return
    if not _csrf_ok(app, event, principal.csrf_token or ""):
        app.logger.info("request refused: csrf check failed",
                        extra={"user_id": principal.user_id, "path": app.current_event.path})
        raise ForbiddenError("a state-changing request from a browser session needs the X-CSRF-Token header "
                             "or a trusted Origin")


def trusted_origins(app: InsightMeshResolver) -> set[str]:
    """ALLOWED_ORIGINS and the origin of PUBLIC_BASE_URL, normalised."""
    origins = {origin for origin in (origin_of(value) for value in app.settings.ALLOWED_ORIGINS) if origin}
    public = get_auth_settings().public_origin
    if public:
        origins.add(public)
    return origins


def _csrf_ok(app: InsightMeshResolver, event: Mapping[str, Any], expected: str) -> bool:
    presented = header(event, CSRF_HEADER)
    if presented and hmac.compare_digest(presented.strip().encode(), expected.encode()):
        return True
    # Origin is authoritative when present; Referer only when the browser sent no Origin.
    source = header(event, "origin") or header(event, "referer")
    if not source or source.strip() == "null":
        return False
    origin = origin_of(source)
    return origin is not None and origin in trusted_origins(app)


def require_admin(app: InsightMeshResolver, principal: Principal, *, action: str, target: str) -> None:
    """Return if ``principal`` is an admin; else audit the refused attempt and raise 403."""
    if principal.is_admin:
        return
    from insightmesh.audit import log as audit_log

    audit_log.record(actor=principal, action=action, target=target, outcome="denied",
                     reason="requires an admin", request_id=app.correlation_id)
    raise ForbiddenError("this action requires an admin")


def scope_for(method: str) -> str:
    """The scope a request with HTTP ``method`` needs of an API token."""
    return READ_SCOPE if method.upper() in READ_METHODS else WRITE_SCOPE


def authenticate_scoped(app: InsightMeshResolver, *, action: str, target: str) -> Principal:
    """:func:`authenticate`, then :func:`require_scope` for the request's method: the principal of
    a route open to every authenticated user."""
    principal = authenticate(app)
    require_scope(app, principal, scope_for(app.current_event.http_method), action=action, target=target)
    return principal


def authenticate_admin(app: InsightMeshResolver, *, action: str, target: str) -> Principal:
    """:func:`authenticate_scoped`, then :func:`require_admin`: the principal of an admin-only route."""
    principal = authenticate_scoped(app, action=action, target=target)
    require_admin(app, principal, action=action, target=target)
    return principal


def admin_bearer(app: InsightMeshResolver, *, scope: str = READ_SCOPE) -> Principal | None:
    """For a route outside /api that shows more to an admin (the readiness detail): ``None`` when
    the request has no Authorization header; the principal of a valid API token of an active admin
    that carries ``scope``, verified as the admin API verifies one; else 401 (not a valid token)
    or 403 (not an admin, or the scope is missing). Refusals are logged, not audited: such routes
    answer anonymous callers too and do not write the audit log."""
    authorization = header(app.current_event.raw_event, "authorization")
    if authorization is None:
        return None
    principal = _from_bearer(app, authorization)
    if not principal.is_admin or scope not in principal.scopes:
        app.logger.info("request refused: not an admin api token with the scope",
                        extra={"user_id": principal.user_id, "scope": scope, "path": app.current_event.path})
        raise ForbiddenError(f"this requires the API token of an admin, with the {scope} scope")
    return principal


def require_scope(app: InsightMeshResolver, principal: Principal, scope: str, *, action: str, target: str) -> None:
    """For an API-token principal, require ``scope`` (e.g. ``admin:write``) among the token's
    scopes; a browser session carries its user's full rights. Refusals are audited, then 403."""
    if principal.via != "token" or scope in principal.scopes:
        return
    from insightmesh.audit import log as audit_log

    audit_log.record(actor=principal, action=action, target=target, outcome="denied",
                     reason=f"the api token lacks the {scope} scope", request_id=app.correlation_id)
    raise ForbiddenError(f"this API token lacks the {scope} scope")
