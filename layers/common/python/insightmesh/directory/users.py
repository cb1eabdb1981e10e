"""Who is talking: a Slack user resolved to a directory :class:`User`, created on first contact.

The identity item (``slack#<team_id>:<slack_user_id>``) is the single arbiter of first contact:
it is written with ``attribute_not_exists``, so of several concurrent first messages from one
person exactly one claims the identity with its new ``user_id``; the others read that identity
back and return the same user. Writes happen in the order identity → ``all_users`` membership →
user, each conditional or idempotent, so no orphan user can exist and any crash in between is
repaired by the next message (an identity whose user is missing gets its membership and user
written then).

A person the directory already knows by e-mail — an e-mail claim (``email#<address>``) written
when an admin, the CLI, sign-in or a directory sync named them — is joined, not duplicated: the
first contact's identity takes the claim's user (when it is active and still has the address, as
the directory sync decides) and the user gets this Slack id. Only a member of the workspace is
joined this way; a guest, a person of another workspace or a bot is never joined by address.

A known user costs two GetItems (identity, user) and no writes; a first contact with an address
one more GetItem (the claim), and one more (its user) when there is a claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Final

from pynamodb.exceptions import PynamoDBException

from insightmesh.aws import condition_failed, put_if_absent
from insightmesh.clock import utc_now
from insightmesh.directory.models import GROUP_KIND, Group, Identity, Membership, User, identity_key, normalize_email
from insightmesh.observability import get_logger
from insightmesh.slack.profiles import SlackProfile

ALL_USERS: Final = "all_users"
SLACK_PROVIDER: Final = "slack"
SYSTEM_ACTOR: Final = "system"  # ``added_by`` of memberships the assistant adds itself

# name -> description of the groups every deployment has.
SYSTEM_GROUPS: Final[dict[str, str]] = {
    ALL_USERS: "Everyone who has talked to the assistant.",
}


ProfileFetcher = Callable[[], SlackProfile | None]


def slack_identity_key(team_id: str, slack_user_id: str) -> str:
    return identity_key(SLACK_PROVIDER, f"{team_id}:{slack_user_id}")


class _ProfileOnce:
    """Calls the profile fetcher at most once, and only if a user has to be created."""

    def __init__(self, fetch: ProfileFetcher | None) -> None:
        self._fetch = fetch
        self._fetched = False
        self._profile: SlackProfile | None = None

    def __call__(self) -> SlackProfile | None:
        if not self._fetched:
            self._profile = self._fetch() if self._fetch is not None else None
            self._fetched = True
        return self._profile


def resolve_slack_user(team_id: str, slack_user_id: str, *, profile: ProfileFetcher | None = None) -> User:
    """The directory user behind Slack user ``slack_user_id`` of workspace ``team_id``.

    An unknown Slack user is created on first contact: ``profile()`` is called (once) for names,
    e-mail and the bot flag, then the identity, the ``all_users`` membership and the user are
    written (see the module docstring for why concurrent first contacts create exactly one user).
    ``profile`` errors propagate; a fetcher that cannot reach Slack should return ``None``, and
    the user is then created with the Slack user id as its display name. A guest or a person of
    another workspace (:meth:`SlackProfile.is_outsider`) is created without ``all_users``.

    Users are deactivated (``is_active = False``), not deleted: deleting a user item while its
    identities remain would make the next message recreate it.
    """
    if not team_id or not slack_user_id:
        raise ValueError("team_id and slack_user_id are required")
    key = slack_identity_key(team_id, slack_user_id)
    fetch = _ProfileOnce(profile)
    identity = _get_identity(key, consistent=False)
    if identity is None:
        owner = _owner_by_email(team_id, fetch())
        identity = _claim_identity(key, team_id, slack_user_id, fetch(), user_id=owner.user_id if owner else None)
        if owner is not None and identity.user_id == owner.user_id:
            return _add_slack_id(owner, team_id, slack_user_id)
    user = _get_user(identity.user_id, consistent=False)
    if user is None:
        user = _create_user(identity.user_id, team_id, slack_user_id, fetch())
    return user


def ensure_system_groups() -> list[str]:
    """Create the system groups that are missing (never overwriting one); return those created.

    A system group written before groups had a ``kind`` (so absent from the ``by-kind`` listing)
    gets ``kind = "group"`` set, and nothing else changed."""
    created = []
    for name, description in SYSTEM_GROUPS.items():
        group = Group(name, kind=GROUP_KIND, description=description, is_system=True, created_at=utc_now())
        if put_if_absent(group, Group.name.does_not_exist()):
            created.append(name)
            get_logger().info("system group created", extra={"group": name})
        else:
            _ensure_kind(name)
    return created


# -- steps --------------------------------------------------------------------------------------


def _ensure_kind(group_name: str) -> None:
    """Set ``kind`` on an existing group that lacks it (one conditional UpdateItem)."""
    try:
        Group(group_name).update(actions=[Group.kind.set(GROUP_KIND)],
                                 condition=Group.name.exists() & Group.kind.does_not_exist())
    except PynamoDBException as error:
        if not condition_failed(error):
            raise
        return
    get_logger().info("system group given its kind", extra={"group": group_name})


def _get_identity(key: str, *, consistent: bool) -> Identity | None:
    try:
        return Identity.get(key, consistent_read=consistent)
    except Identity.DoesNotExist:
        return None


def _get_user(user_id: str, *, consistent: bool) -> User | None:
    try:
        return User.get(user_id, consistent_read=consistent)
    except User.DoesNotExist:
        return None


def _owner_by_email(team_id: str, info: SlackProfile | None) -> User | None:
    """The active user an e-mail claim gives this workspace member's address, if any."""
    email = normalize_email(info.email if info else None)
    if info is None or email is None or info.is_bot or info.is_app_user or info.is_outsider(team_id):
        return None
    from insightmesh.directory.email_users import claim_key  # email_users imports this module

    claim = _get_identity(claim_key(email), consistent=True)
    owner = _get_user(str(claim.user_id), consistent=True) if claim is not None else None
    if owner is None or not owner.is_active or owner.email != email:
        return None
    return owner


def _add_slack_id(user: User, team_id: str, slack_user_id: str) -> User:
    """Record the Slack id on a user that first contact joined (one UpdateItem)."""
    user.update(actions=[User.slack_ids.set({**(user.slack_ids or {}), team_id: slack_user_id})])
    get_logger().info("first contact joined the user its e-mail names", extra={"user_id": user.user_id,
                                                                                "team_id": team_id})
    return user


def _claim_identity(key: str, team_id: str, slack_user_id: str, info: SlackProfile | None, *,
                    user_id: str | None = None) -> Identity:
    """Write the identity with ``user_id`` (a new one if None), or return the one a concurrent first
    contact wrote."""
    identity = Identity(
        key,
        provider_type=SLACK_PROVIDER,
        provider_user_id=f"{team_id}:{slack_user_id}",
        user_id=user_id or str(uuid.uuid4()),
        provider_email=normalize_email(info.email if info else None),
        is_primary=True,
        is_active=True,
        created_at=utc_now(),
    )
    if put_if_absent(identity, Identity.identity_key.does_not_exist()):
        return identity
    winner = _get_identity(key, consistent=True)
    if winner is None:  # claimed, then deleted before we could read it: give up on this message
        raise RuntimeError(f"identity {key} vanished during first contact")
    get_logger().info("concurrent first contact; using the identity already written",
                      extra={"user_id": winner.user_id, "team_id": team_id})
    return winner


def _create_user(user_id: str, team_id: str, slack_user_id: str, fetched: SlackProfile | None) -> User:
    now = utc_now()
    info = fetched or SlackProfile()
    # Membership before user: a user that exists is always in all_users — except guests and people
    # of other workspaces, who are never put there automatically (an admin may add them).
    if not info.is_outsider(team_id):
        membership = Membership(ALL_USERS, user_id, added_at=now, added_by=SYSTEM_ACTOR)
        put_if_absent(membership, Membership.user_id.does_not_exist())
    user = User(
        user_id,
        email=normalize_email(info.email),
        display_name=(info.display_name or info.real_name or slack_user_id).strip(),
        real_name=(info.real_name or "").strip() or None,
        is_active=True,
        is_admin=False,
        is_bot=info.is_bot,
        primary_provider=SLACK_PROVIDER,
        slack_ids={team_id: slack_user_id},
        last_synced_at=now if fetched is not None else None,  # names and e-mail as of now
        created_at=now,
    )
    if put_if_absent(user, User.user_id.does_not_exist()):
        get_logger().info("user created on first contact", extra={"user_id": user_id, "team_id": team_id})
        return user
    existing = _get_user(user_id, consistent=True)
    if existing is None:  # created, then deleted before we could read it
        raise RuntimeError(f"user {user_id} vanished during first contact")
    return existing


def users_for_slack_ids(team_id: str, slack_user_ids: list[str]) -> dict[str, str]:
    """Slack user id → directory user id, for the Slack users the directory knows (one
    ``BatchGetItem`` of identities per 100 ids; no user is created)."""
    keys = {slack_identity_key(team_id, slack_id): slack_id for slack_id in dict.fromkeys(slack_user_ids)}
    found: dict[str, str] = {}
    ordered = list(keys)
    for start in range(0, len(ordered), 100):  # BatchGetItem takes 100 keys
        for identity in Identity.batch_get(ordered[start:start + 100],
                                           attributes_to_get=["identity_key", "user_id", "is_active"]):
            if identity.is_active is not False and identity.user_id:
                found[keys[str(identity.identity_key)]] = str(identity.user_id)
    return found
