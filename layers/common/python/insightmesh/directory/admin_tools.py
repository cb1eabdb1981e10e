"""Operator actions on the directory that never go over HTTP (the CLI's): find or create a user
by e-mail, make the first admin, and audit what the CLI did.

A user created here is claimed by an ``email#<address>`` identity (a conditional put), so two
concurrent commands — or a command racing a directory sync that claims e-mails the same way —
create one user, not two. Every read is a GetItem on a key.
"""

from __future__ import annotations

import uuid
from typing import Any

from pynamodb.exceptions import PutError

from insightmesh.directory.models import Identity, Membership, User, identity_key, normalize_email, utc_now
from insightmesh.directory.users import ALL_USERS

EMAIL_PROVIDER = "email"


class InvalidEmailError(ValueError):
    pass


def _valid(email: str) -> str:
    normalized = normalize_email(email)
    if not normalized or "@" not in normalized or len(normalized) > 254 or " " in normalized:
        raise InvalidEmailError(f"not an e-mail address: {email!r}")
    return normalized


def find_user_by_email(email: str) -> User | None:
    normalized = _valid(email)
    try:
        claim = Identity.get(identity_key(EMAIL_PROVIDER, normalized), consistent_read=True)
    except Identity.DoesNotExist:
        for user in User.by_email.query(normalized, limit=1):  # a user a sync created from a provider
            return user
        return None
    try:
        return User.get(str(claim.user_id), consistent_read=True)
    except User.DoesNotExist:
        return None


def find_or_create_user_by_email(email: str, *, create: bool) -> User:
    normalized = _valid(email)
    existing = find_user_by_email(normalized)
    if existing is not None or not create:
        if existing is None:
            raise LookupError(f"no user with e-mail {normalized}")
        return existing
    now = utc_now()
    claim = Identity(identity_key(EMAIL_PROVIDER, normalized), provider_type=EMAIL_PROVIDER,
                     provider_user_id=normalized, user_id=str(uuid.uuid4()), provider_email=normalized,
                     is_primary=True, is_active=True, created_at=now)
    try:
        claim.save(condition=Identity.identity_key.does_not_exist())
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        claim = Identity.get(identity_key(EMAIL_PROVIDER, normalized), consistent_read=True)
    Membership(ALL_USERS, str(claim.user_id), added_at=now, added_by="cli").save()
    user = User(str(claim.user_id), email=normalized, display_name=normalized.split("@", 1)[0],
                is_active=True, is_admin=False, primary_provider=EMAIL_PROVIDER, created_at=now)
    try:
        user.save(condition=User.user_id.does_not_exist())
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        user = User.get(str(claim.user_id), consistent_read=True)
    return user


def make_admin(email: str, *, actor: str) -> tuple[User, bool]:
    """Make the user with ``email`` (created if needed) an active admin; audited. Idempotent."""
    user = find_or_create_user_by_email(email, create=True)
    if user.is_admin and user.is_active:
        return user, False
    before = {"is_admin": bool(user.is_admin), "is_active": bool(user.is_active)}
    user.update(actions=[User.is_admin.set(True), User.is_active.set(True)])
    audit_cli(action="user.bootstrap_admin", target=f"user:{user.user_id}", before=before,
              after={"is_admin": True, "is_active": True}, actor=actor)
    return user, True


def audit_cli(*, action: str, target: str, actor: str, before: Any = None, after: Any = None) -> None:
    from insightmesh.audit.log import record
    from insightmesh.auth.principal import Principal

    record(actor=Principal(user_id=actor, email=None, is_admin=True, via="token"), action=action, target=target,
           before=before, after=after, request_id=f"cli-{uuid.uuid4()}")
