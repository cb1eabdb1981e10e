"""Browser sign-in: the OpenID Connect Authorization Code flow with PKCE (S256), as a state machine.

``begin_login`` creates a single-use login state — ``state``, ``nonce``, PKCE ``code_verifier``,
the hash of a random *browser binding*, the page to return to — in ``AUTH_STATES_TABLE`` for ten
minutes, and returns the IdP's authorization URL plus a signed pre-auth cookie ``im_login``
carrying ``state`` and the binding. ``complete_login`` (the callback) refuses, before touching
any table, a callback whose ``state`` is missing or differs from the cookie's; then consumes the
stored state with one conditional DeleteItem (so a replayed callback finds nothing), exchanges
the code with the verifier and validates the ID token (:mod:`insightmesh.auth.oidc_provider`),
requires a verified e-mail in ``OIDC_ALLOWED_DOMAINS`` (an empty list refuses everyone) — and,
when the issuer is Google, an ``hd`` (Workspace hosted domain) claim in that list too —, and
finds the user by e-mail or creates one, never an admin
(:func:`insightmesh.directory.email_users.find_or_create_user_by_email`). Codes, tokens and the
ID token are never logged.

``AUTH_STATES_TABLE`` — :class:`AuthState`, hash ``state``; TTL ``expires_at``

* ``PutItem`` with ``attribute_not_exists(state)``: begin a login.
* ``DeleteItem(state)`` with ``attribute_exists(state) AND binding_hash = :b``, ``ReturnValues
  ALL_OLD``: consume it, exactly once. ``expires_at`` is checked in code too (TTL is lazy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError
from pynamodb.models import Model

from insightmesh.api.errors import BadRequestError
from insightmesh.auth.oidc_provider import (
    LoginRefusedError,
    OidcSettings,
    configured_settings,
    exchange_code,
    provider_metadata,
    validate_id_token,
)
from insightmesh.auth.sessions import cookie_values, issue_session, set_cookie, sign, unsign
from insightmesh.aws import model_meta
from insightmesh.clock import utc_now
from insightmesh.directory.email_users import find_or_create_user_by_email
from insightmesh.directory.models import User, normalize_email
from insightmesh.observability import get_logger

LOGIN_COOKIE: Final = "im_login"
LOGIN_COOKIE_PATH: Final = "/auth"
LOGIN_PURPOSE: Final = "insightmesh/login/v1"
LOGIN_TTL: Final = timedelta(minutes=10)
MAX_NEXT_PATH_LENGTH: Final = 512
MAX_PARAMETER_LENGTH: Final = 2048
OIDC_PROVIDER: Final = "oidc"


# -- errors -----------------------------------------------------------------------------------


class LoginStateError(BadRequestError):
    """The callback does not belong to a login this browser started (state, cookie, replay)."""

    code = "invalid_login_state"


# -- the login-state table --------------------------------------------------------------------


class AuthState(Model):
    Meta = model_meta("AUTH_STATES_TABLE", connect_timeout=1, read_timeout=2)

    state = UnicodeAttribute(hash_key=True)
    nonce = UnicodeAttribute()
    code_verifier = UnicodeAttribute()
    binding_hash = UnicodeAttribute()  # sha256 of the browser binding held in the im_login cookie
    next_path = UnicodeAttribute(default="/")
    created_at = UTCDateTimeAttribute(default=utc_now)
    expires_at = TTLAttribute()


# -- begin ------------------------------------------------------------------------------------


def safe_next_path(value: str | None) -> str:
    """``value`` if it is a local absolute path (``/...``, not ``//host`` nor ``/\\host``), else ``/``."""
    if not value or len(value) > MAX_NEXT_PATH_LENGTH or not value.startswith("/"):
        return "/"
    if value.startswith("//") or "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def begin_login(*, next_path: str = "/") -> tuple[str, str]:
    """Start a sign-in: ``(authorization URL to redirect to, Set-Cookie of the im_login cookie)``."""
    settings = configured_settings()
    metadata = provider_metadata(settings.OIDC_ISSUER)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, binding = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
    now = utc_now()
    item = AuthState(state, nonce=nonce, code_verifier=verifier, binding_hash=_hash(binding),
                     next_path=safe_next_path(next_path), created_at=now, expires_at=now + LOGIN_TTL)
    item.save(condition=AuthState.state.does_not_exist())
    expires = int(time.time() + LOGIN_TTL.total_seconds())
    cookie = set_cookie(LOGIN_COOKIE, sign({"state": state, "binding": binding, "exp": expires}, purpose=LOGIN_PURPOSE),
                        max_age=int(LOGIN_TTL.total_seconds()), path=LOGIN_COOKIE_PATH)
    query = urlencode({
        "response_type": "code",
        "client_id": settings.OIDC_CLIENT_ID,
        "redirect_uri": settings.redirect_uri,
        "scope": settings.OIDC_SCOPES,
        "state": state,
        "nonce": nonce,
        "code_challenge": _s256(verifier),
        "code_challenge_method": "S256",
    })
    separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return f"{metadata.authorization_endpoint}{separator}{query}", cookie


def clear_login_cookie() -> str:
    return set_cookie(LOGIN_COOKIE, "", max_age=0, path=LOGIN_COOKIE_PATH)


# -- complete ---------------------------------------------------------------------------------


def _parameter(query: Mapping[str, str], name: str) -> str:
    value = query.get(name) or ""
    return value if len(value) <= MAX_PARAMETER_LENGTH else ""


def _browser_binding(state: str, cookie_header: str | None) -> str:
    """The binding of the login this browser started for ``state``; refuse when there is none."""
    for value in cookie_values(cookie_header, LOGIN_COOKIE):
        claims = unsign(value, purpose=LOGIN_PURPOSE)
        if claims is None:
            continue
        cookie_state, binding = claims.get("state"), claims.get("binding")
        if (isinstance(cookie_state, str) and isinstance(binding, str) and binding
                and hmac.compare_digest(cookie_state.encode(), state.encode())):
            return binding
    raise LoginStateError("this sign-in was not started by this browser, or it expired; sign in again")


def _consume_state(state: str, binding: str) -> AuthState:
    """Delete the login state if it exists and belongs to ``binding``; return what was stored."""
    condition = AuthState.state.exists() & (AuthState.binding_hash == _hash(binding))
    try:
        response = AuthState._get_connection().delete_item(state, condition=condition, return_values="ALL_OLD")
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise LoginStateError("this sign-in is unknown, already used or expired; sign in again") from error
        raise
    item = AuthState.from_raw_data(response["Attributes"])
    if item.expires_at <= utc_now():
        raise LoginStateError("this sign-in expired; sign in again")
    return item


def _admitted_email(claims: Mapping[str, Any], settings: OidcSettings) -> str:
    email = normalize_email(claims.get("email") if isinstance(claims.get("email"), str) else None)
    if email is None or email.count("@") != 1:
        raise LoginRefusedError("the identity provider shared no e-mail address")
    verified = claims.get("email_verified")
    if verified is not True and verified != "true":
        raise LoginRefusedError("the e-mail address is not verified")
    domain = email.rsplit("@", 1)[1]
    if domain not in settings.OIDC_ALLOWED_DOMAINS:
        get_logger().info("sign-in refused: domain not allowed", extra={"domain": domain})
        raise LoginRefusedError("accounts of this domain may not sign in")
    if settings.is_google:
        # Google: the address alone does not prove membership of the organisation (a consumer
        # account may carry any verified address); the Workspace's hosted domain (hd) does.
        hosted = claims.get("hd")
        if not isinstance(hosted, str) or hosted.strip().lower() not in settings.OIDC_ALLOWED_DOMAINS:
            get_logger().info("sign-in refused: google hosted domain not allowed",
                              extra={"hd": hosted if isinstance(hosted, str) else None})
            raise LoginRefusedError("only accounts of an allowed Google Workspace domain may sign in")
    return email


def user_for_claims(email: str, claims: Mapping[str, Any]) -> User:
    """The user with the admitted ``email``, created (never an admin) at a first sign-in with the
    ID token's ``name`` as its names (see :func:`find_or_create_user_by_email`)."""
    name = claims.get("name")
    named = name.strip() if isinstance(name, str) else ""
    return find_or_create_user_by_email(email, display_name=named or None, real_name=named or None,
                                        primary_provider=OIDC_PROVIDER, added_by=OIDC_PROVIDER)


def _record_login(user: User, when: datetime) -> None:
    """``last_login_at`` on the user item (an attribute the directory model does not declare, so a
    cheap UpdateItem that leaves ``version`` alone). Best effort: sign-in does not fail on it."""
    from pynamodb.exceptions import UpdateError
    from pynamodb.expressions.operand import Path

    try:
        User._get_connection().update_item(
            user.user_id,
            actions=[Path("last_login_at").set({"S": when.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")})],
            condition=User.user_id.exists(),
        )
    except UpdateError as error:
        get_logger().warning("could not record the sign-in time",
                             extra={"user_id": user.user_id, "error_code": error.cause_response_code})


@dataclass(frozen=True)
class LoginResult:
    user: User
    session_cookie: str  # Set-Cookie header value
    csrf_token: str
    next_path: str  # a local path, checked when the login began


def finish_login(*, query: Mapping[str, str], cookie_header: str | None) -> LoginResult:
    """Finish a sign-in from the IdP's callback (see ``complete_login``), with the page to return to."""
    settings = configured_settings()
    state = _parameter(query, "state")
    if not state:
        raise LoginStateError("the sign-in callback has no state; sign in again")
    binding = _browser_binding(state, cookie_header)
    stored = _consume_state(state, binding)

    if query.get("error"):
        get_logger().info("sign-in refused by the identity provider",
                          extra={"oauth_error": _parameter(query, "error")[:64]})
        raise LoginRefusedError("the identity provider did not authorise the sign-in")
    code = _parameter(query, "code")
    if not code:
        raise LoginStateError("the sign-in callback has no code; sign in again")
    metadata = provider_metadata(settings.OIDC_ISSUER)
    id_token = exchange_code(settings, metadata, code, stored.code_verifier)
    claims = validate_id_token(id_token, settings=settings, metadata=metadata, nonce=stored.nonce)
    email = _admitted_email(claims, settings)
    user = user_for_claims(email, claims)
    if not user.is_active:
        get_logger().info("sign-in refused: user inactive", extra={"user_id": user.user_id})
        raise LoginRefusedError("this account is deactivated")
    _record_login(user, utc_now())
    cookie, csrf = issue_session(user)
    get_logger().info("signed in", extra={"user_id": user.user_id})
    return LoginResult(user=user, session_cookie=cookie, csrf_token=csrf, next_path=safe_next_path(stored.next_path))


def complete_login(*, query: Mapping[str, str], cookie_header: str | None) -> tuple[User, str, str]:
    """Finish a sign-in from the IdP's callback: ``(user, session Set-Cookie, csrf token)``.

    Raises LoginStateError (400) when the callback does not belong to a login this browser
    started — nothing is stored or consumed then —, LoginRefusedError (401) when the IdP's
    answer does not admit the person, IdentityProviderError (503) when the IdP is unavailable.
    """
    result = finish_login(query=query, cookie_header=cookie_header)
    return result.user, result.session_cookie, result.csrf_token
