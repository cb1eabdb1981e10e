"""Users by e-mail address: the one way to find or create a user from an address, and the one id
scheme of users that the assistant creates itself.

**E-mail claims.** The identity ``email#<address>`` (provider ``email``) names the user that owns
an address. OIDC sign-in, the CLI and the directory sync all claim addresses this way, so any of
them finds a user that another created.

**User ids.** A user that an identity creates gets ``uuid5(USER_ID_NAMESPACE, identity key)``
(:func:`new_user_id`): the directory sync keys it on the provider identity
(``google#<id>``), :func:`find_or_create_user_by_email` on the e-mail claim (``email#<address>``).
A retry after a crash, or two concurrent creators, therefore arrive at the same id. Users created
before this scheme (uuid4, by sign-in and the CLI) are found by their claim or the ``by-email``
index like any other: lookups never derive an id, they read the claim.

``find_or_create_user_by_email`` costs, for a known user, a consistent GetItem of the claim and
one of the user (or the claim's GetItem and one ``Query by-email`` for a user that a Slack
first contact created without a claim). Creating writes the claim (``attribute_not_exists``),
the ``all_users`` membership, then the user (``attribute_not_exists``), so concurrent callers
create one user, and a crash in between is repaired by the next call.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from insightmesh.aws import put_if_absent
from insightmesh.clock import utc_now
from insightmesh.directory.models import Identity, Membership, User, identity_key, normalize_email
from insightmesh.directory.users import ALL_USERS
from insightmesh.observability import get_logger

EMAIL_PROVIDER: Final = "email"  # identities "email#<address>" are e-mail claims, not accounts
MAX_EMAIL_LENGTH: Final = 254
# The namespace of every user id the assistant derives (first used by the directory sync; kept so
# that the ids it derived stay stable).
USER_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://insightmesh/directory/sync/user")


class InvalidEmailError(ValueError):
    pass


class UnknownEmailError(LookupError):
    """No user has this address (and none was to be created)."""

    def __init__(self, email: str) -> None:
        super().__init__(f"no user with e-mail {email}")
        self.email = email


def valid_email(email: str | None) -> str:
    """``email`` normalised (trimmed, lower-cased); InvalidEmailError if it is not an address."""
    normalized = normalize_email(email)
    if not normalized or "@" not in normalized or len(normalized) > MAX_EMAIL_LENGTH or " " in normalized:
        raise InvalidEmailError(f"not an e-mail address: {email!r}")
    return normalized


def claim_key(email: str) -> str:
    """The identities-table key of the claim on (normalised) ``email``."""
    return identity_key(EMAIL_PROVIDER, email)


def new_user_id(key: str) -> str:
    """The id of the user that identity ``key`` creates: stable, so retries create no orphan."""
    return str(uuid.uuid5(USER_ID_NAMESPACE, key))


def new_user(user_id: str, *, email: str | None, display_name: str, real_name: str | None, primary_provider: str,
             created_at: datetime, is_active: bool = True) -> User:
    """A user item as the assistant creates one (never an admin); not yet written."""
    return User(user_id, email=email, display_name=display_name, real_name=real_name, is_active=is_active,
                is_admin=False, primary_provider=primary_provider, created_at=created_at)


def find_user_by_email(email: str) -> User | None:
    """The user that claims ``email``, else one whose address it is (``by-email``), else ``None``."""
    normalized = valid_email(email)
    claim = _get_claim(claim_key(normalized))
    if claim is None:
        return _by_email(normalized)
    return _get_user(str(claim.user_id))


def find_or_create_user_by_email(email: str, *, create: bool = True, display_name: str | None = None,
                                 real_name: str | None = None, primary_provider: str = EMAIL_PROVIDER,
                                 added_by: str = EMAIL_PROVIDER) -> User:
    """The user with ``email``, created (active, not an admin, in ``all_users``) if there is none
    and ``create``; UnknownEmailError (a LookupError) if there is none and not ``create``. ``display_name`` defaults to
    the address's local part; ``primary_provider`` and ``added_by`` (of the membership) say who
    created it."""
    normalized = valid_email(email)
    key = claim_key(normalized)
    claim = _get_claim(key)
    if claim is None:
        existing = _by_email(normalized)  # a user a Slack first contact created, with no claim yet
        if existing is not None:
            return existing
    else:
        user = _get_user(str(claim.user_id))
        if user is not None:
            return user
    if not create:
        raise UnknownEmailError(normalized)
    now = utc_now()
    if claim is None:
        claim = _claim(key, normalized, now)
    user_id = str(claim.user_id)
    Membership(ALL_USERS, user_id, added_at=now, added_by=added_by).save()
    name = (display_name or "").strip()
    user = new_user(user_id, email=normalized, display_name=(name or normalized.split("@", 1)[0])[:200],
                    real_name=(real_name or "").strip()[:200] or None, primary_provider=primary_provider,
                    created_at=now)
    if not put_if_absent(user, User.user_id.does_not_exist()):
        return User.get(user_id, consistent_read=True)  # a concurrent caller created it
    get_logger().info("user created by e-mail", extra={"user_id": user_id, "primary_provider": primary_provider})
    return user


def _claim(key: str, email: str, now: datetime) -> Identity:
    """Write the claim on ``email`` with a new user id, or return the one a concurrent caller wrote."""
    claim = Identity(key, provider_type=EMAIL_PROVIDER, provider_user_id=email, user_id=new_user_id(key),
                     provider_email=email, is_primary=True, is_active=True, created_at=now)
    if not put_if_absent(claim, Identity.identity_key.does_not_exist()):
        return Identity.get(key, consistent_read=True)
    return claim


def _get_claim(key: str) -> Identity | None:
    try:
        return Identity.get(key, consistent_read=True)
    except Identity.DoesNotExist:
        return None


def _get_user(user_id: str) -> User | None:
    try:
        return User.get(user_id, consistent_read=True)
    except User.DoesNotExist:
        return None


def _by_email(email: str) -> User | None:
    for user in User.by_email.query(email, limit=1):
        return user
    return None
