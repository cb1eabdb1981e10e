"""Browser sessions: a signed cookie (``im_session``) naming a session that the server can revoke.

The cookie holds an HS256 JWS (joserfc) of ``{user_id, email, csrf, sid, iat, exp}`` signed with a key
derived from ``SECRET_KEY`` for this purpose only (so a token signed for another purpose — the
pre-auth login cookie, say — never verifies as a session). It is ``HttpOnly; SameSite=Lax;
Path=/``, ``Secure`` in production, and lives 8 hours. ``csrf`` is the value a state-changing
cookie-authenticated request must echo in ``X-CSRF-Token`` (``GET /auth/session`` returns it).

The cookie proves who signed in; it does not freeze what they may do: the guard reads the user
on every request, so deactivation and admin changes take effect at once.

``sid`` names a :class:`SessionRecord` in ``AUTH_STATES_TABLE`` (beside the OIDC login states,
keys ``session#<sid>``; DynamoDB TTL ``expires_at``). A cookie is a session only while its record
exists: logout deletes it, so a copied cookie stops working at once. Access patterns:

* ``PutItem`` with ``attribute_not_exists(state)``: sign-in;
* ``GetItem(session#<sid>)``, consistent: every cookie-authenticated request, once (only the first
  validly signed ``im_session`` cookie is looked up). ``expires_at`` is checked in code too;
* ``DeleteItem(session#<sid>)``: logout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.clock import utc_now
from insightmesh.config import get_settings
from insightmesh.directory.models import User

SESSION_COOKIE: Final = "im_session"
SESSION_MAX_AGE: Final = 8 * 3600
SESSION_PURPOSE: Final = "insightmesh/session/v1"
_ALGORITHMS: Final = ["HS256"]
_MAX_COOKIE_LENGTH: Final = 4096
SESSION_KEY_PREFIX: Final = "session#"
_SID_BYTES: Final = 24


@dataclass(frozen=True)
class SessionClaims:
    user_id: str
    email: str | None
    csrf: str
    iat: int
    exp: int
    sid: str = ""


class SessionRecord(Model):
    """A live browser session: exists from sign-in until logout or expiry."""

    Meta = model_meta("AUTH_STATES_TABLE", connect_timeout=1, read_timeout=2)

    state = UnicodeAttribute(hash_key=True)  # "session#<sid>": the login states' key attribute
    user_id = UnicodeAttribute()
    created_at = UTCDateTimeAttribute(default=utc_now)
    expires_at = TTLAttribute()


def session_key(sid: str) -> str:
    return SESSION_KEY_PREFIX + sid


class RawCookie(Cookie):
    """A Set-Cookie value already formatted, for powertools ``Response(cookies=[...])``."""

    def __init__(self, set_cookie: str) -> None:
        name, _, rest = set_cookie.partition("=")
        super().__init__(name=name, value=rest.split(";", 1)[0])
        self.set_cookie = set_cookie

    def __str__(self) -> str:
        return self.set_cookie


# -- signing (shared with the pre-auth login cookie of insightmesh.auth.login) --------------------


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
    """A new session for ``user`` (its record stored): ``(Set-Cookie header value, csrf token)``."""
    issued = int(time.time() if now is None else now)
    expires = issued + SESSION_MAX_AGE
    csrf, sid = secrets.token_urlsafe(32), secrets.token_urlsafe(_SID_BYTES)
    record = SessionRecord(session_key(sid), user_id=user.user_id, created_at=utc_now(),
                           expires_at=datetime.fromtimestamp(expires, UTC))
    record.save(condition=SessionRecord.state.does_not_exist())
    value = sign(
        {"user_id": user.user_id, "email": user.email, "csrf": csrf, "sid": sid, "iat": issued, "exp": expires},
        purpose=SESSION_PURPOSE,
    )
    return set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE), csrf


def _signed_claims(cookie_header: str | None, now: float | None) -> SessionClaims | None:
    """The first validly signed, unexpired, well-formed session cookie's claims (no lookup)."""
    for value in cookie_values(cookie_header, SESSION_COOKIE):
        claims = unsign(value, purpose=SESSION_PURPOSE, now=now)
        if claims is None:
            continue
        user_id, email, csrf, iat = claims.get("user_id"), claims.get("email"), claims.get("csrf"), claims.get("iat")
        sid = claims.get("sid")
        if (isinstance(user_id, str) and user_id and isinstance(csrf, str) and csrf and isinstance(sid, str) and sid
                and (email is None or isinstance(email, str)) and isinstance(iat, int)):
            return SessionClaims(user_id=user_id, email=email, csrf=csrf, iat=iat, exp=int(claims["exp"]), sid=sid)
    return None


def read_session(cookie_header: str | None, *, now: float | None = None) -> SessionClaims | None:
    """The session in a ``Cookie`` header, or ``None`` when absent, tampered with, expired or
    revoked (logged out). At most one GetItem, and none for a cookie that is not validly signed."""
    claims = _signed_claims(cookie_header, now)
    if claims is None:
        return None
    try:
        record = SessionRecord.get(session_key(claims.sid), consistent_read=True)
    except SessionRecord.DoesNotExist:
        return None
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    if record.user_id != claims.user_id or record.expires_at <= moment:
        return None
    return claims


def revoke_session(cookie_header: str | None) -> bool:
    """Logout: delete the record of the session in a ``Cookie`` header, so that its cookie (and
    every copy of it) stops working at once. ``True`` when there was a session to revoke."""
    claims = _signed_claims(cookie_header, None)
    if claims is None:
        return False
    SessionRecord(session_key(claims.sid)).delete()
    return True


def clear_session_cookie() -> str:
    """A Set-Cookie header value that deletes the session cookie."""
    return set_cookie(SESSION_COOKIE, "", max_age=0)
