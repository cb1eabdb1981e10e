"""Users in the control plane: list, search by e-mail, show, grant or revoke admin; and "me".

Listing. ``USERS_TABLE`` has no index that lists every user, so users are listed as the members
of the system group ``all_users`` (every user is in it: :mod:`insightmesh.directory.users`
writes that membership before the user): one ``Query(group_name="all_users")`` of ``limit``
user ids, its ``LastEvaluatedKey`` as the cursor, then one ``BatchGetItem`` of those users — two
calls per page whatever the number of users.

Search. ``?email=`` is exact: one ``Query by-email``. ``?email_prefix=`` (lower-cased, at least
one character) is one ``Query by-email-prefix`` — hash ``email_initial`` = the prefix's first
character, range ``begins_with(email, prefix)`` — of ``limit`` users in e-mail order, its
``LastEvaluatedKey`` as the cursor: one call per page whatever the number of users, and every
user returned matches. Users without an e-mail are not in that index.

Admin rights. ``POST /api/users/{id}/admin`` sets ``is_admin`` with the version condition and
the audit entry in one transaction. An admin cannot remove their own admin rights (409): so the
last admin can never be removed over HTTP, with no need to count admins. The first admin is
bootstrapped outside the API.
"""

from __future__ import annotations

from typing import Final

from insightmesh.admin.schemas import IdentityOut, MeOut, UsableAgent, UserDetail, UserOut
from insightmesh.agents.catalog import list_agents
from insightmesh.api.errors import ConflictError, NotFoundError, ValidationFailedError
from insightmesh.api.pagination import Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.directory.email_users import find_user_by_email
from insightmesh.directory.models import Identity, Membership, User, email_initial, normalize_email
from insightmesh.directory.permissions import agents_usable_by
from insightmesh.directory.users import ALL_USERS


def target(user_id: str) -> str:
    return f"user:{user_id}"


def user_out(user: User) -> UserOut:
    return UserOut(user_id=user.user_id, email=user.email, display_name=user.display_name, real_name=user.real_name,
                   is_active=user.is_active, is_admin=user.is_admin, is_bot=user.is_bot,
                   primary_provider=user.primary_provider, created_at=user.created_at,
                   last_synced_at=user.last_synced_at, version=user.version)


FIND_USERS: Final = "find people with GET /api/users?email=<address> (or ?email_prefix=<start>)"


def no_such_user(user_id: str) -> NotFoundError:
    """The 404 for an unknown user id, saying how to find people (and how to name one by e-mail,
    when the id looks like an address)."""
    by_email = f"; to name someone by e-mail, send {{\"email\": \"{user_id}\"}}" if "@" in user_id else ""
    return NotFoundError(f"no user {user_id!r}: {FIND_USERS}{by_email}")


def require_user(user_id: str) -> User:
    try:
        return User.get(user_id)
    except User.DoesNotExist:
        raise no_such_user(user_id) from None


def require_person(*, user_id: str | None, email: str | None) -> User:
    """The user named by ``user_id`` or by ``email`` (exactly one is given; the address already
    validated): one GetItem by id; by address, the directory's e-mail lookup (the claim, else the
    ``by-email`` index, then the user). 404, saying how to find people, if there is none."""
    if user_id is not None:
        return require_user(user_id)
    assert email is not None  # the request models require one of the two
    user = find_user_by_email(email)
    if user is None:
        raise NotFoundError(f"no user with e-mail {email}: people are in the directory once they have talked to "
                            f"the assistant, signed in, or been synced from Slack or Google; {FIND_USERS}")
    return user


def list_page(*, limit: int, cursor: str | None, email: str | None = None,
              email_prefix: str | None = None) -> Page[UserOut]:
    if email is not None:
        address = normalize_email(email)
        users, _ = query_page(User.by_email.query(address, limit=limit), User) if address else ([], None)
        return Page[UserOut](items=[user_out(user) for user in users], next_cursor=None)
    if email_prefix is not None:
        return _search_prefix(email_prefix, limit=limit, cursor=cursor)
    scope = "users|"
    results = Membership.query(ALL_USERS, limit=limit, last_evaluated_key=start_key(cursor, scope=scope))
    rows, last_key = query_page(results, Membership)
    found = {user.user_id: user for user in User.batch_get([row.user_id for row in rows])} if rows else {}
    users = [found[row.user_id] for row in rows if row.user_id in found]
    return Page[UserOut](items=[user_out(user) for user in users], next_cursor=key_cursor(last_key, scope=scope))


def _search_prefix(email_prefix: str, *, limit: int, cursor: str | None) -> Page[UserOut]:
    """One ``Query by-email-prefix``: the users whose address starts with ``email_prefix``."""
    prefix = email_prefix.strip().lower()
    if not prefix:
        raise ValidationFailedError("email_prefix must have at least one character", details=[
            {"loc": ["query", "email_prefix"], "msg": "at least one non-blank character", "type": "value_error"}])
    scope = f"users|email-prefix|{prefix}"  # not "users|": a listing cursor is refused here (422)
    results = User.by_email_prefix.query(email_initial(prefix), User.email.startswith(prefix), limit=limit,
                                         last_evaluated_key=start_key(cursor, scope=scope))
    users, last_key = query_page(results, User)
    return Page[UserOut](items=[user_out(user) for user in users], next_cursor=key_cursor(last_key, scope=scope))


def detail(user_id: str) -> UserDetail:
    """The user, their groups, identities and the agents they may use: one GetItem, one Query of
    memberships ``by-user``, one Query of identities ``by-user``, then what :func:`me` reads for the
    agents (Query by-kind, and ``agents_usable_by``: the rule the conversation worker applies)."""
    user = require_user(user_id)
    groups = sorted(row.group_name for row in Membership.by_user.query(user_id))
    identities = sorted(Identity.by_user.query(user_id), key=lambda row: (not row.is_primary, row.identity_key))
    return UserDetail(**user_out(user).model_dump(), groups=groups,
                      identities=[identity_out(identity) for identity in identities], agents=usable_agents(user))


def identity_out(identity: Identity) -> IdentityOut:
    return IdentityOut(provider_type=identity.provider_type, provider_user_id=identity.provider_user_id,
                       provider_email=identity.provider_email, is_primary=identity.is_primary,
                       is_active=identity.is_active, created_at=identity.created_at,
                       last_seen_at=identity.last_seen_at)


def usable_agents(user: User) -> list[UsableAgent]:
    """The agents ``user`` may use, as the worker decides it (``agents_usable_by``)."""
    return [UsableAgent(name=agent.name, display_name=agent.display_name, description=agent.description,
                        aliases=list(agent.aliases or [])) for agent in agents_usable_by(user, list_agents())]


def set_admin(user_id: str, is_admin: bool, *, actor: Principal, request_id: str) -> UserOut:
    if user_id == actor.user_id and not is_admin:
        raise ConflictError("you cannot remove your own admin rights; another admin can")
    user = require_user(user_id)
    before = user_out(user)
    after = before.model_copy(update={"is_admin": is_admin, "version": (before.version or 0) + 1})
    tx = Tx()
    tx.update(user, [User.is_admin.set(is_admin)], condition=User.user_id.exists(),
              error=ConflictError(f"user {user_id!r} was changed by someone else; retry"))
    tx.audit(audit_log.entry(actor=actor, action="user.grant_admin" if is_admin else "user.revoke_admin",
                             target=target(user_id), before=before, after=after, request_id=request_id))
    tx.commit()
    return after


def me(principal: Principal) -> MeOut:
    """Who is calling, their groups and the agents they may use: GetItem user, Query memberships
    ``by-user``, Query by-kind, then ``agents_usable_by`` (one memberships Query and one
    BatchGetItem per 100 keys)."""
    user = require_user(principal.user_id)
    groups = sorted(row.group_name for row in Membership.by_user.query(user.user_id))
    return MeOut(user_id=user.user_id, email=user.email, display_name=user.display_name, is_admin=user.is_admin,
                 via=principal.via, groups=groups, agents=usable_agents(user))
