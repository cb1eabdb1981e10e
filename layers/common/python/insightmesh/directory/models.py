"""The directory's tables: users, provider identities, groups, memberships and agent grants.

Every request-path read below is a ``GetItem``, ``Query`` or ``BatchGetItem`` on a key or index
designed for it; nothing scans. Deployed tables: ``infra/template.yaml`` (``UsersTable``, ...).

``USERS_TABLE`` — :class:`User`, hash ``user_id``; GSI ``by-email`` (hash ``email``, ALL);
GSI ``by-email-prefix`` (hash ``email_initial``, range ``email``, ALL)

* ``GetItem(user_id)``: the user behind an identity (every Slack message, after the identity).
* ``Query by-email(email)``: link a directory-sync record (Google, SSO) to an existing user.
  ``email`` is stored lower-cased and left unset when unknown, so the index is sparse.
* ``Query by-email-prefix(email_initial = p[0], begins_with(email, p))``: the admin API's search
  by e-mail prefix, in e-mail order. ``email_initial`` is the first character of the lower-cased
  ``email``; :meth:`User.serialize` derives it from ``email`` on every ``PutItem`` (``save``,
  ``batch_write``, transactions), so no writer can forget it and the index is sparse like
  ``by-email``. An ``UpdateItem`` that sets ``email`` must set ``email_initial`` too (none does).
* ``PutItem`` with ``attribute_not_exists(user_id)`` on first contact; updates carry the
  ``version`` condition (optimistic locking).

``IDENTITIES_TABLE`` — :class:`Identity`, hash ``identity_key`` = ``"<provider>#<provider user id>"``
(Slack: ``"slack#<team_id>:<slack_user_id>"``); GSI ``by-user`` (hash ``user_id``, ALL)

* ``GetItem(identity_key)``: who is this Slack user (every Slack message).
* ``PutItem`` with ``attribute_not_exists(identity_key)``: the single arbiter of first contact —
  concurrent first messages from one person create exactly one identity, hence one user.
* ``Query by-user(user_id)``: the identities of a user (admin UI, user merge/deactivation).
* GSI ``by-sync-scope`` (hash ``sync_scope``, range ``sync_mark``, KEYS_ONLY; sparse — only
  identities that directory sync saw active carry ``sync_mark``): directory sync's sweep of the
  identities not seen in a run (see ``insightmesh.directory.sync``). Items ``email#<address>``
  (provider ``email``) are directory sync's e-mail claims: the user that owns an address.

``GROUPS_TABLE`` — :class:`Group`, hash ``name``; GSI ``by-kind`` (hash ``kind``, range ``name``, ALL)

* ``GetItem(name)`` / ``BatchGetItem(names)``: group details (admin UI).
* ``Query by-kind(kind="group")``: every group, sorted by name (admin UI, paginated). Every group
  has ``kind = "group"`` (the attribute's default); the index exists so that listing never scans.
* ``PutItem`` with ``attribute_not_exists(name)``: create a group, system groups included
  (never overwritten).
* Groups mirrored from a provider (Google Workspace, ``insightmesh.directory.providers.google_workspace_sync``)
  carry ``source``, ``external_id``, ``email``, ``sync_scope`` and ``last_seen_run`` (non-key
  attributes, unset on every other group); the sync writes a group only when it is new or its
  ``source`` and ``external_id`` are its own (a conditional ``PutItem``).

``MEMBERSHIPS_TABLE`` — :class:`Membership`, hash ``group_name``, range ``user_id``;
GSI ``by-user`` (hash ``user_id``, range ``group_name``, ALL)

* ``Query by-user(user_id)``: the groups of a user — one call per permission check.
* ``Query(group_name)``: the members of a group (admin UI, paginated).
* ``PutItem`` / ``DeleteItem(group_name, user_id)``: add or remove a member (idempotent).

``GRANTS_TABLE`` — :class:`Grant`, hash ``agent_name``, range ``principal`` (``"group#<name>"`` or
``"user#<user_id>"``); GSI ``by-principal`` (hash ``principal``, range ``agent_name``, ALL)

* ``Query(agent_name)``: every grant of one agent — one call per permission check.
* ``BatchGetItem((agent, principal), ...)``: the grants of a set of agents for one user's
  principals (the help listing, see ``permissions.agents_usable_by``).
* ``Query by-principal(principal)``: what a group or user has been granted (admin UI; cleanup
  when a group or user is deleted).
* ``expires_at`` is checked in code (an expired grant is ignored); it is not a DynamoDB TTL
  attribute, so expired grants stay visible to admins until removed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.constants import MAP, STRING
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.clock import utc_now

GROUP_PRINCIPAL_PREFIX: Final = "group#"
USER_PRINCIPAL_PREFIX: Final = "user#"
ALLOW: Final = "allow"
DENY: Final = "deny"
GROUP_KIND: Final = "group"  # Group.kind of every group: the by-kind hash key


def identity_key(provider_type: str, provider_user_id: str) -> str:
    """The ``identity_key`` of an identity: ``"<provider_type>#<provider_user_id>"``."""
    return f"{provider_type}#{provider_user_id}"


def group_principal(group_name: str) -> str:
    return f"{GROUP_PRINCIPAL_PREFIX}{group_name}"


def user_principal(user_id: str) -> str:
    return f"{USER_PRINCIPAL_PREFIX}{user_id}"


def normalize_email(email: str | None) -> str | None:
    """Lower-cased and stripped; ``None`` for a blank address (an empty string cannot be a GSI key)."""
    cleaned = (email or "").strip().lower()
    return cleaned or None


_DOMAIN: Final = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def normalize_domain(domain: str) -> str:
    """A DNS domain (``"Example.COM"`` → ``"example.com"``); ``ValueError`` if it is not one."""
    cleaned = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(cleaned):
        raise ValueError(f"not a domain: {domain!r}")
    return cleaned


def email_initial(email: str | None) -> str | None:
    """The ``by-email-prefix`` hash key of ``email``: its first character, lower-cased; ``None``
    without an address (so the index stays sparse)."""
    normalized = normalize_email(email)
    return normalized[0] if normalized else None


class StringMapAttribute(Attribute[dict[str, str]]):
    """A DynamoDB map of string to string (e.g. Slack team id → Slack user id), typed as a dict."""

    attr_type = MAP

    def serialize(self, value: Any) -> dict[str, dict[str, str]]:
        return {str(key): {STRING: str(item)} for key, item in dict(value).items()}

    def deserialize(self, value: Any) -> dict[str, str]:
        return {str(key): str(item[STRING]) for key, item in dict(value).items() if STRING in item}


# -- users --------------------------------------------------------------------------------------


class UsersByEmail(GlobalSecondaryIndex["User"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-email"
        projection = AllProjection()

    email = UnicodeAttribute(hash_key=True)


class UsersByEmailPrefix(GlobalSecondaryIndex["User"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Search by e-mail prefix: hash ``email_initial``, range ``email`` (``begins_with``)."""

    class Meta:
        index_name = "by-email-prefix"
        projection = AllProjection()

    email_initial = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute(range_key=True)


class User(Model):
    """A person (or bot) known to the assistant, whatever the providers they came from."""

    Meta = model_meta("USERS_TABLE")

    user_id = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute(null=True)  # lower-cased; the by-email key, so unset rather than ""
    email_initial = UnicodeAttribute(null=True)  # email's first character; derived on write (serialize)
    display_name = UnicodeAttribute(default="")
    real_name = UnicodeAttribute(null=True)
    is_active = BooleanAttribute(default=True)
    is_admin = BooleanAttribute(default=False)
    is_bot = BooleanAttribute(default=False)
    primary_provider = UnicodeAttribute(default="slack")
    slack_ids = StringMapAttribute(default=dict)  # Slack team id -> Slack user id
    last_synced_at = UTCDateTimeAttribute(null=True)
    last_login_at = UTCDateTimeAttribute(null=True)  # set by OIDC sign-in (insightmesh.auth.login)
    created_at = UTCDateTimeAttribute(default=utc_now)
    version = VersionAttribute()

    by_email = UsersByEmail()
    by_email_prefix = UsersByEmailPrefix()

    def serialize(self, null_check: bool = True) -> dict[str, dict[str, Any]]:
        """Every ``PutItem`` of a user (``save``, ``batch_write``, ``TransactWrite.save``) goes
        through here: ``email_initial`` is derived from ``email`` so the two never disagree."""
        self.email_initial = email_initial(self.email)
        return super().serialize(null_check=null_check)


# -- identities ---------------------------------------------------------------------------------


class IdentitiesByUser(GlobalSecondaryIndex["Identity"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)


class IdentitiesBySyncScope(GlobalSecondaryIndex["Identity"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Directory sync: the active identities of a sync scope, keyed ``"<run_id>#<identity_key>"``."""

    class Meta:
        index_name = "by-sync-scope"
        projection = KeysOnlyProjection()

    sync_scope = UnicodeAttribute(hash_key=True)
    sync_mark = UnicodeAttribute(range_key=True)


class Identity(Model):
    """One provider account (Slack user in a team, Google account, ...) linked to a :class:`User`."""

    Meta = model_meta("IDENTITIES_TABLE")

    identity_key = UnicodeAttribute(hash_key=True)
    provider_type = UnicodeAttribute()
    provider_user_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    provider_email = UnicodeAttribute(null=True)
    is_primary = BooleanAttribute(default=False)
    is_active = BooleanAttribute(default=True)
    created_at = UTCDateTimeAttribute(default=utc_now)
    # Written by directory sync (insightmesh.directory.sync); unset on identities it never saw.
    last_seen_run = UnicodeAttribute(null=True)
    last_seen_at = UTCDateTimeAttribute(null=True)
    sync_scope = UnicodeAttribute(null=True)  # the by-sync-scope hash key
    sync_mark = UnicodeAttribute(null=True)  # "<last_seen_run>#<identity_key>" while active, else unset

    by_user = IdentitiesByUser()
    by_sync_scope = IdentitiesBySyncScope()


# -- groups and memberships ---------------------------------------------------------------------


class GroupsByKind(GlobalSecondaryIndex["Group"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)


class Group(Model):
    Meta = model_meta("GROUPS_TABLE")

    name = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default=GROUP_KIND)  # always "group": the by-kind key
    description = UnicodeAttribute(default="")
    is_system = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute(default=utc_now)
    # Set only on groups a directory sync mirrors from a provider (unset: an admin's or a system group).
    source = UnicodeAttribute(null=True)  # the provider, e.g. "google"
    external_id = UnicodeAttribute(null=True)  # the provider's group id
    email = UnicodeAttribute(null=True)  # the provider group's address
    sync_scope = UnicodeAttribute(null=True)  # the sync that owns it (its sweep removes only its own)
    last_seen_run = UnicodeAttribute(null=True)  # the last sync run that listed it
    last_synced_at = UTCDateTimeAttribute(null=True)

    by_kind = GroupsByKind()


class MembershipsByUser(GlobalSecondaryIndex["Membership"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    group_name = UnicodeAttribute(range_key=True)


class Membership(Model):
    Meta = model_meta("MEMBERSHIPS_TABLE")

    group_name = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    added_at = UTCDateTimeAttribute(default=utc_now)
    added_by = UnicodeAttribute(null=True)  # user id of the admin, or "system"

    by_user = MembershipsByUser()


# -- grants -------------------------------------------------------------------------------------


class GrantsByPrincipal(GlobalSecondaryIndex["Grant"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-principal"
        projection = AllProjection()

    principal = UnicodeAttribute(hash_key=True)
    agent_name = UnicodeAttribute(range_key=True)


class Grant(Model):
    """``effect`` (allow or deny) on one agent for one principal, optionally until ``expires_at``."""

    Meta = model_meta("GRANTS_TABLE")

    agent_name = UnicodeAttribute(hash_key=True)
    principal = UnicodeAttribute(range_key=True)  # "group#<name>" or "user#<user_id>"
    effect = UnicodeAttribute(default=ALLOW)  # "allow" | "deny"
    expires_at = UTCDateTimeAttribute(null=True)  # checked in code; not a DynamoDB TTL
    granted_by = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(default=utc_now)

    by_principal = GrantsByPrincipal()

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def group_name(self) -> str | None:
        """The group of a ``group#`` principal, else ``None``."""
        if self.principal.startswith(GROUP_PRINCIPAL_PREFIX):
            return self.principal[len(GROUP_PRINCIPAL_PREFIX):]
        return None
