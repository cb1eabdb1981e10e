"""API tokens for scripts and CI: issued once, stored only as their SHA-256 hash.

A token reads ``imt_<token_id>_<secret>``: ``token_id`` (16 hex characters) is its public name —
what the admin UI lists and what revocation takes — and ``secret`` is 32 random bytes,
URL-safe base64. The plaintext is returned once by :func:`create_token` and never stored.

``API_TOKENS_TABLE`` — :class:`ApiToken`, hash ``token_hash`` (SHA-256 hex of the plaintext);
GSI ``by-user`` (hash ``user_id``, ALL). Access patterns:

* ``GetItem(token_hash)``: verify a presented token (every bearer-authenticated request). A
  lookup by hash needs no constant-time comparison: the secret never meets stored data.
* ``UpdateItem(token_hash)`` ``SET last_used_at`` with the condition "unset or older than 60 s":
  at most one write per token per minute, whatever the request rate.
* ``Query by-user(user_id)``: a user's tokens (listing; revocation by ``token_id``).
* ``PutItem`` with ``attribute_not_exists(token_hash)``: issue a token.

``expires_at`` (optional: ``insightmesh token create --expires-in 90d`` sets it, 90 days by
default; ``never`` leaves it unset) is checked in code, not a DynamoDB TTL: an expired or revoked token stays listed
(and refused) until removed, so admins can see what existed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from pynamodb.attributes import ListAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.aws import model_meta, put_if_absent
from insightmesh.clock import utc_now
from insightmesh.observability import get_logger

TOKEN_PREFIX: Final = "imt_"  # noqa: S105  # a public prefix, not a secret
LAST_USED_RESOLUTION: Final = timedelta(seconds=60)
MAX_NAME_LENGTH: Final = 100
MAX_SCOPES: Final = 20
_TOKEN_ID_BYTES: Final = 8
_SECRET_BYTES: Final = 32
# imt_ + 16 hex + _ + 43 URL-safe base64 characters (32 bytes, unpadded).
_TOKEN_FORMAT: Final = re.compile(r"^imt_(?P<token_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
_SCOPE_FORMAT: Final = re.compile(r"^[a-z][a-z0-9_.-]*(:[a-z][a-z0-9_.-]*)*$")
_DURATION_FORMAT: Final = re.compile(r"^(?P<count>[0-9]{1,6})(?P<unit>[dh])$")
NO_EXPIRY: Final = "never"
DEFAULT_EXPIRES_IN: Final = "90d"
MAX_LIFETIME: Final = timedelta(days=3650)


class ApiTokensByUser(GlobalSecondaryIndex["ApiToken"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)


class ApiToken(Model):
    """One API token of one user. ``token_hash`` is the only trace of the secret."""

    Meta = model_meta("API_TOKENS_TABLE")

    token_hash = UnicodeAttribute(hash_key=True)
    token_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    name = UnicodeAttribute()
    scopes: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    created_at = UTCDateTimeAttribute(default=utc_now)
    created_by = UnicodeAttribute(null=True)
    expires_at = UTCDateTimeAttribute(null=True)  # checked in code; not a DynamoDB TTL
    revoked_at = UTCDateTimeAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)

    by_user = ApiTokensByUser()

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def is_usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and not self.is_expired(now)


def parse_expires_in(value: str) -> timedelta | None:
    """A token lifetime such as ``90d`` or ``12h`` (days or hours); ``never`` → ``None`` (no expiry).

    Raises ValueError for anything else, a zero lifetime, or one longer than ten years."""
    cleaned = value.strip().lower()
    if cleaned == NO_EXPIRY:
        return None
    match = _DURATION_FORMAT.fullmatch(cleaned)
    if match is None:
        raise ValueError(f"expected a lifetime such as 90d or 12h, or {NO_EXPIRY!r}; got {value!r}")
    count = int(match.group("count"))
    lifetime = timedelta(days=count) if match.group("unit") == "d" else timedelta(hours=count)
    if count == 0 or lifetime > MAX_LIFETIME:
        raise ValueError(f"a token lifetime must be between 1h and {MAX_LIFETIME.days}d; got {value!r}")
    return lifetime


def token_state(token: ApiToken, now: datetime) -> str:
    """``revoked``, ``expired`` or ``active``: what ``token list`` shows."""
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.is_expired(now) else "active"


def hash_token(plaintext: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_token(
    user_id: str,
    *,
    name: str,
    scopes: Sequence[str] = (),
    created_by: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    """Issue a token for ``user_id``; return ``(plaintext, stored item)``. The plaintext is shown
    to its owner once and cannot be recovered: only its hash is stored.

    Raises ValueError for a blank ``user_id`` or ``name``, a malformed scope, or an
    ``expires_at`` that is naive or already past.
    """
    if not user_id:
        raise ValueError("user_id is required")
    cleaned_name = name.strip()
    if not cleaned_name or len(cleaned_name) > MAX_NAME_LENGTH:
        raise ValueError(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    scope_list = list(dict.fromkeys(scopes))
    if len(scope_list) > MAX_SCOPES or not all(_SCOPE_FORMAT.fullmatch(scope) for scope in scope_list):
        raise ValueError(f"scopes must be at most {MAX_SCOPES} names like 'admin:read'")
    now = utc_now()
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise ValueError("expires_at must be a timezone-aware time in the future")
    for _ in range(3):
        token_id = secrets.token_hex(_TOKEN_ID_BYTES)
        plaintext = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        token = ApiToken(
            hash_token(plaintext),
            token_id=token_id,
            user_id=user_id,
            name=cleaned_name,
            scopes=scope_list,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
        if not put_if_absent(token, ApiToken.token_hash.does_not_exist()):  # 2^-256: but never overwrite
            continue
        get_logger().info("api token created", extra={"public_id": token_id, "user_id": user_id})
        return plaintext, token
    raise RuntimeError("could not allocate a unique API token")


def parse_token_id(plaintext: str) -> str | None:
    """The public ``token_id`` of a well-formed token, else ``None`` (no lookup is made)."""
    match = _TOKEN_FORMAT.fullmatch(plaintext)
    return match.group("token_id") if match else None


def verify_token(plaintext: str) -> ApiToken | None:
    """The stored token ``plaintext`` names if it is well formed, known, not revoked and not
    expired; else ``None``. One GetItem, plus at most one UpdateItem of ``last_used_at`` per
    token per minute."""
    token_id = parse_token_id(plaintext)
    if token_id is None:
        return None
    try:
        token = ApiToken.get(hash_token(plaintext))
    except ApiToken.DoesNotExist:
        return None
    now = utc_now()
    if token.token_id != token_id or not token.is_usable(now):
        return None
    _touch(token, now)
    return token


def _touch(token: ApiToken, now: datetime) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION (the condition makes concurrent
    containers write once between them). Best effort: a failure is logged, not raised."""
    threshold = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > threshold:
        return
    try:
        token.update(
            actions=[ApiToken.last_used_at.set(now)],
            condition=ApiToken.token_hash.exists()
            & (ApiToken.last_used_at.does_not_exist() | (ApiToken.last_used_at <= threshold)),
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            get_logger().warning("could not record api token use",
                                 extra={"public_id": token.token_id, "error_code": error.cause_response_code})


def list_tokens(user_id: str) -> list[ApiToken]:
    """Every token of ``user_id`` (revoked and expired included), newest first. One Query."""
    tokens = list(ApiToken.by_user.query(user_id))
    return sorted(tokens, key=lambda token: token.created_at, reverse=True)


def revoke_token(token_id: str, *, user_id: str) -> bool:
    """Revoke the token ``token_id`` of ``user_id``. ``True`` when that user has such a token (it
    is revoked now, or already was), ``False`` when not — another user's token is never touched."""
    if not re.fullmatch(r"[0-9a-f]{16}", token_id):
        return False
    matches = list(ApiToken.by_user.query(user_id, filter_condition=ApiToken.token_id == token_id))
    if not matches:
        return False
    token = matches[0]
    if token.revoked_at is not None:
        return True
    try:
        token.update(
            actions=[ApiToken.revoked_at.set(utc_now())],
            condition=ApiToken.token_hash.exists() & (ApiToken.user_id == user_id),
        )
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":  # deleted meanwhile
            return False
        raise
    get_logger().info("api token revoked", extra={"public_id": token_id, "user_id": user_id})
    return True
