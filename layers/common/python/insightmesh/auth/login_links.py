"""Single-use sign-in links: ``insightmesh login-link --email E`` (local development, break-glass).

A link carries a 256-bit random token (``secrets.token_urlsafe(32)``); only its SHA-256 is stored,
as a :class:`LoginLink` in ``AUTH_STATES_TABLE`` (beside the OIDC login states and the sessions,
key ``loginlink#<sha256 hex>``, DynamoDB TTL ``expires_at``: 5 minutes). It is issued only for an
existing active user. Spending it (``POST /auth/login-link``, which the console's sign-in button
calls) deletes it atomically — a conditional ``DeleteItem`` returning what was stored, so two
concurrent spends cannot both succeed — re-checks expiry (TTL deletes late) and that the user is
still active, then issues a normal browser session (:func:`insightmesh.auth.sessions.issue_session`)
and records ``auth.login_link`` in the audit log (``denied`` with the reason when refused).

Access patterns: ``GetItem`` (consistent) to show whom a link signs in (``GET /auth/login-link``,
the page with the button); ``PutItem`` with ``attribute_not_exists(state)`` to issue; ``DeleteItem`` with
``attribute_exists(state)`` and ``ReturnValues=ALL_OLD`` to spend; then the user's ``GetItem``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError
from pynamodb.models import Model

from insightmesh.api.errors import BadRequestError
from insightmesh.audit import log as audit_log
from insightmesh.auth.sessions import issue_session
from insightmesh.aws import model_meta
from insightmesh.clock import utc_now
from insightmesh.directory.models import User
from insightmesh.observability import get_logger

LINK_KEY_PREFIX: Final = "loginlink#"
LINK_TTL: Final = timedelta(minutes=5)
TOKEN_BYTES: Final = 32  # 256 bits
MAX_TOKEN_LENGTH: Final = 128
AUDIT_ACTION: Final = "auth.login_link"


class LoginLinkError(BadRequestError):
    """The link is unknown, already used, expired, or its user may not sign in."""

    code = "invalid_login_link"


class LoginLink(Model):
    """An unspent sign-in link: exists from ``insightmesh login-link`` until spent or expired."""

    Meta = model_meta("AUTH_STATES_TABLE", connect_timeout=1, read_timeout=2)

    state = UnicodeAttribute(hash_key=True)  # "loginlink#<sha256 hex of the token>"
    user_id = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(default=utc_now)
    expires_at = TTLAttribute()


@dataclass(frozen=True)
class _LinkActor:
    """The user a link signs in, as the audit log records them."""

    user_id: str
    email: str | None

    @property
    def label(self) -> str:
        return self.email or self.user_id


@dataclass(frozen=True)
class SignIn:
    user: User
    session_cookie: str  # a Set-Cookie header value
    csrf_token: str


def link_key(token: str) -> str:
    return LINK_KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def issue_link(user: User, *, created_by: str | None = None) -> str:
    """A new single-use sign-in token for ``user`` (valid :data:`LINK_TTL`); only its hash is stored.
    Raises ValueError for a user who is not active."""
    if not user.is_active:
        raise ValueError(f"user {user.user_id} is not active")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utc_now()
    LoginLink(link_key(token), user_id=user.user_id, created_by=created_by, created_at=now,
              expires_at=now + LINK_TTL).save(condition=LoginLink.state.does_not_exist())
    get_logger().info("login link issued", extra={"user_id": user.user_id})
    return token


@dataclass(frozen=True)
class LinkPreview:
    email: str | None
    expires_at: str  # ISO 8601, UTC


def peek_link(token: str) -> LinkPreview:
    """Whom an unspent, unexpired link signs in (nothing is spent): one GetItem of the link and one
    of its user. Raises LoginLinkError like :func:`spend_link` would."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LoginLinkError("this sign-in link is not valid")
    try:
        link = LoginLink.get(link_key(token), consistent_read=True)
    except LoginLink.DoesNotExist:
        raise LoginLinkError("this sign-in link is unknown or was already used") from None
    if link.expires_at <= utc_now():
        raise LoginLinkError("this sign-in link expired; ask for a new one")
    try:
        user = User.get(link.user_id)
    except User.DoesNotExist:
        raise LoginLinkError("this sign-in link names a user who no longer exists") from None
    if not user.is_active:
        raise LoginLinkError("this sign-in link names a deactivated account")
    return LinkPreview(email=user.email, expires_at=link.expires_at.isoformat())


def _take(token: str) -> LoginLink:
    """Delete the link ``token`` names and return what was stored, or refuse (it is gone either way)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LoginLinkError("this sign-in link is not valid")
    try:
        response = LoginLink._get_connection().delete_item(link_key(token), condition=LoginLink.state.exists(),
                                                           return_values="ALL_OLD")
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            get_logger().info("login link refused: unknown or already used")
            raise LoginLinkError("this sign-in link is unknown or was already used") from error
        raise
    return LoginLink.from_raw_data(response["Attributes"])


def _refuse(link: LoginLink, user: User | None, reason: str, request_id: str) -> LoginLinkError:
    actor = _LinkActor(user_id=link.user_id, email=user.email if user else None)
    audit_log.record(actor=actor, action=AUDIT_ACTION, target=f"user:{link.user_id}", outcome=audit_log.DENIED,
                     reason=reason, request_id=request_id)
    get_logger().info("login link refused", extra={"user_id": link.user_id, "reason": reason})
    return LoginLinkError(f"this sign-in link {reason}")


def spend_link(token: str, *, request_id: str) -> SignIn:
    """Spend the link ``token`` names: a new browser session for its user. Raises LoginLinkError
    (400) when it is unknown, already used or expired, or its user is missing or inactive."""
    link = _take(token)
    if link.expires_at <= utc_now():
        raise _refuse(link, None, "expired; ask for a new one", request_id)
    try:
        user = User.get(link.user_id)
    except User.DoesNotExist:
        raise _refuse(link, None, "names a user who no longer exists", request_id) from None
    if not user.is_active:
        raise _refuse(link, user, "names a deactivated account", request_id)
    cookie, csrf = issue_session(user)
    audit_log.record(actor=_LinkActor(user_id=user.user_id, email=user.email), action=AUDIT_ACTION,
                     target=f"user:{user.user_id}", request_id=request_id)
    get_logger().info("signed in with a login link", extra={"user_id": user.user_id})
    return SignIn(user=user, session_cookie=cookie, csrf_token=csrf)


__all__ = ["LINK_TTL", "LinkPreview", "LoginLink", "LoginLinkError", "SignIn", "issue_link", "link_key", "peek_link",
           "spend_link"]
