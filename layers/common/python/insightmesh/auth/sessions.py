"""Browser sessions: a signed, stateless cookie (``im_session``).

The cookie holds an HS256 JWS (joserfc) of ``{user_id, email, csrf, iat, exp}`` signed with a key
derived from ``SECRET_KEY`` for this purpose only (so a token signed for another purpose — the
pre-auth login cookie, say — never verifies as a session). It is ``HttpOnly; SameSite=Lax;
Path=/``, ``Secure`` in production, and lives 8 hours. ``csrf`` is the value a state-changing
cookie-authenticated request must echo in ``X-CSRF-Token`` (``GET /auth/session`` returns it).

The cookie proves who signed in; it does not freeze what they may do: the guard reads the user
on every request, so deactivation and admin changes take effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from insightmesh.config import get_settings
from insightmesh.directory.models import User

SESSION_COOKIE: Final = "im_session"
SESSION_MAX_AGE: Final = 8 * 3600
SESSION_PURPOSE: Final = "insightmesh/session/v1"
_ALGORITHMS: Final = ["HS256"]
_MAX_COOKIE_LENGTH: Final = 4096


@dataclass(frozen=True)
class SessionClaims:
    user_id: str
    email: str | None
    csrf: str
    iat: int
    exp: int


class RawCookie(Cookie):
    """A Set-Cookie value already formatted, for powertools ``Response(cookies=[...])``."""

    def __init__(self, set_cookie: str) -> None:
        name, _, rest = set_cookie.partition("=")
        super().__init__(name=name, value=rest.split(";", 1)[0])
        self.set_cookie = set_cookie

    def __str__(self) -> str:
        return self.set_cookie


# -- signing (shared with the pre-auth login cookie of insightmesh.auth.oidc) ---------------------


def signing_key(purpose: str) -> OctKey:
    """An HMAC key for ``purpose``, derived from SECRET_KEY (fetched lazily, cached by config)."""
    secret = get_settings().secret_key().encode()
    return OctKey.import_key(hmac.new(secret, purpose.encode(), hashlib.sha256).digest())


def sign(claims: Mapping[str, Any], *, purpose: str) -> str:
    return jwt.encode({"alg": "HS256"}, {**claims, "pur": purpose}, signing_key(purpose), algorithms=_ALGORITHMS)


def unsign(value: str, *, purpose: str, now: float | None = None) -> dict[str, Any] | None:
    """The claims of ``value`` if it is signed for ``purpose`` and not expired (``exp``), else ``None``."""
    if not value or len(value) > _MAX_COOKIE_LENGTH:
        return None
    try:
        token = jwt.decode(value, signing_key(purpose), algorithms=_ALGORITHMS)
    except (JoseError, ValueError):  # bad signature, not a JWS, not JSON
        return None
    claims = token.claims
    exp = claims.get("exp")
    if claims.get("pur") != purpose or not isinstance(exp, int) or isinstance(exp, bool):
        return None
    if exp <= (time.time() if now is None else now):
        return None
    return claims


def cookie_values(cookie_header: str | None, name: str) -> Iterator[str]:
    """Every value of cookie ``name`` in a ``Cookie`` header (``a=1; b=2``), in order."""
    for part in (cookie_header or "").split(";"):
        key, separator, value = part.strip().partition("=")
        if separator and key == name:
            yield value.strip().strip('"')


def set_cookie(name: str, value: str, *, max_age: int, path: str = "/") -> str:
    """A Set-Cookie header value: HttpOnly, SameSite=Lax, Secure in production."""
    cookie = Cookie(
        name=name,
        value=value,
        path=path,
        secure=get_settings().is_production,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )
    return str(cookie)


# -- sessions ---------------------------------------------------------------------------------


def issue_session(user: User, *, now: float | None = None) -> tuple[str, str]:
    """A new session for ``user``: ``(Set-Cookie header value, csrf token)``."""
    issued = int(time.time() if now is None else now)
    csrf = secrets.token_urlsafe(32)
    value = sign(
        {"user_id": user.user_id, "email": user.email, "csrf": csrf, "iat": issued, "exp": issued + SESSION_MAX_AGE},
        purpose=SESSION_PURPOSE,
    )
    return set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE), csrf


def read_session(cookie_header: str | None, *, now: float | None = None) -> SessionClaims | None:
    """The session in a ``Cookie`` header, or ``None`` when absent, tampered with or expired."""
    for value in cookie_values(cookie_header, SESSION_COOKIE):
        claims = unsign(value, purpose=SESSION_PURPOSE, now=now)
        if claims is None:
            continue
        user_id, email, csrf, iat = claims.get("user_id"), claims.get("email"), claims.get("csrf"), claims.get("iat")
        if (isinstance(user_id, str) and user_id and isinstance(csrf, str) and csrf
                and (email is None or isinstance(email, str)) and isinstance(iat, int)):
            return SessionClaims(user_id=user_id, email=email, csrf=csrf, iat=iat, exp=int(claims["exp"]))
    return None


def clear_session_cookie() -> str:
    """A Set-Cookie header value that deletes the session cookie."""
    return set_cookie(SESSION_COOKIE, "", max_age=0)
