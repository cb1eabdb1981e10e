"""May this user use this agent? Visibility, grants and groups, evaluated fail-closed.

An agent's ``visibility`` is the one setting that says who may use it: ``public`` (every active
user), ``admins`` (admins only) or ``restricted`` (only the users and groups with an allow grant).
Rules, in order (the first that applies decides):

1. the agent is missing, deleted or disabled → deny;
2. the user is inactive → deny;
3. the visibility is ``admins`` and the user is not an admin → deny;
4. a deny grant for the user or for any group of the user (not expired) → deny — a deny always
   beats an allow and beats the visibility;
5. the visibility is ``public``, or ``admins`` (the user is one, by rule 3) → allow;
6. (``restricted``) an allow grant for the user or for any group of the user (not expired) → allow;
7. otherwise → deny ("not granted").

Admins get no blanket pass on a ``restricted`` agent: they need a grant like anyone else, and are
subject to deny grants everywhere. A visibility this module does not know is treated as
``restricted``; a grant's ``effect`` other than ``"allow"`` is treated as a deny.

Data access of :func:`evaluate`: one ``Query`` of the agent's grants (``GRANTS_TABLE`` hash
``agent_name``) and, only when one of those grants names a group, one ``Query`` of the user's
memberships (``MEMBERSHIPS_TABLE`` GSI ``by-user``) — at most two calls whatever the number of
groups or grants. A failure of either (DynamoDB error, missing table, unreadable item) is logged
and denies: ``Decision(False, "the permission check failed")``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import AttributeDeserializationError, PynamoDBException

from insightmesh.caching import TtlCache
from insightmesh.clock import utc_now
from insightmesh.directory.models import ALLOW, Grant, Membership, User, group_principal, user_principal
from insightmesh.observability import get_logger


class Granted(Protocol):
    """What access is decided on: an agent's catalog record (``agents.catalog.AgentRecord``) as
    the directory sees it — by name and flags, without importing the agents context."""

    @property
    def name(self) -> str: ...

    @property
    def is_deleted(self) -> bool: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def visibility(self) -> str: ...  # "public", "admins" or "restricted"


G = TypeVar("G", bound=Granted)

CHECK_FAILED: Final = "the permission check failed"
# The values of ``Granted.visibility`` (insightmesh.agents.catalog.Visibility; the contexts do not
# import each other).
PUBLIC: Final = "public"
ADMINS: Final = "admins"
RESTRICTED: Final = "restricted"

# What a failed read can raise: pynamodb wraps most botocore errors, but not all of them.
_DATA_ERRORS: Final = (PynamoDBException, BotoCoreError, ClientError, AttributeDeserializationError)


@dataclass(frozen=True)
class Decision:
    """Whether access is allowed, and why — ``reason`` is shown to the user when denied."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def evaluate(agent: Granted | None, user: User, *, now: datetime | None = None) -> Decision:
    """Decide whether ``user`` may use ``agent`` (rules in the module docstring); never raises on
    a data-access failure — it denies."""
    static = _static_decision(agent, user)
    if static is not None:
        return static
    assert agent is not None  # _static_decision denies a missing agent
    when = now or utc_now()
    try:
        grants = [grant for grant in Grant.query(agent.name) if not grant.is_expired(when)]
        groups = _groups_of(user.user_id) if any(grant.group_name is not None for grant in grants) else set()
    except _DATA_ERRORS:
        get_logger().exception("permission check failed; access denied",
                               extra={"agent": agent.name, "user_id": user.user_id})
        return Decision(False, CHECK_FAILED)
    return _decide(agent, user, grants, groups)


def agents_usable_by(
    user: User, agents: Sequence[G], *, now: datetime | None = None
) -> list[G]:
    """The agents of ``agents`` that ``user`` may use (for a help listing), in the given order.

    Same rules as :func:`evaluate`. Calls: one ``Query`` of the user's memberships (GSI
    ``by-user``), then one ``BatchGetItem`` of the grants keyed (agent, principal) for every
    candidate agent and every principal of the user (the user and each of their groups), 100
    keys per call. That is independent of the number of grants, and two calls whenever
    agents x (groups + 1) <= 100 — the catalog and a user's groups are both small. (The
    alternatives were one Query per agent, or one ``by-principal`` Query per group: both grow
    with the data.) On a data-access failure the listing is empty (fail closed) and it is logged.
    """
    candidates = [agent for agent in agents if _static_decision(agent, user) is None]
    if not candidates:
        return []
    when = now or utc_now()
    try:
        groups = _groups_of(user.user_id)
        principals = [user_principal(user.user_id), *(group_principal(name) for name in sorted(groups))]
        keys = [(agent.name, principal) for agent in candidates for principal in principals]
        grants: defaultdict[str, list[Grant]] = defaultdict(list)
        for grant in Grant.batch_get(keys):
            if not grant.is_expired(when):
                grants[grant.agent_name].append(grant)
    except _DATA_ERRORS:
        get_logger().exception("listing usable agents failed; none listed", extra={"user_id": user.user_id})
        return []
    return [agent for agent in candidates if _decide(agent, user, grants[agent.name], groups).allowed]


def _groups_of(user_id: str) -> set[str]:
    """The names of the groups ``user_id`` belongs to: one Query on memberships GSI ``by-user``."""
    return {membership.group_name for membership in Membership.by_user.query(user_id)}


GROUPS_CACHE_SECONDS: Final = 30.0
_recent_groups: TtlCache[str, frozenset[str]] = TtlCache(GROUPS_CACHE_SECONDS, max_entries=4096)


def groups_of(user_id: str) -> frozenset[str]:
    """The names of ``user_id``'s groups as read at most ``GROUPS_CACHE_SECONDS`` ago in this
    container (one memberships Query when not cached). For accounting and budgets on the request
    path, where a membership change may take that long to count; permission decisions read fresh
    (:func:`evaluate`). Raises the data-access error of a failed read (callers decide)."""
    return _recent_groups.get_or_load(user_id, lambda: frozenset(_groups_of(user_id)))


def groups_for_usage(user_id: str) -> frozenset[str]:
    """:func:`groups_of` for counting usage (the worker's turns, a research run's steps): accounting
    fails soft, so an unreadable membership table counts the call without groups, logged."""
    try:
        return groups_of(user_id)
    except (PynamoDBException, BotoCoreError, ClientError) as error:
        get_logger().warning("usage recorded without groups: memberships unreadable", extra={"error": str(error)})
        return frozenset()


def _static_decision(agent: Granted | None, user: User) -> Decision | None:
    """The decision that needs no grant (rules 1-3), or ``None`` if grants must be read."""
    if agent is None:
        return Decision(False, "unknown agent")
    if agent.is_deleted:
        return Decision(False, "the agent was deleted")
    if not agent.enabled:
        return Decision(False, "the agent is disabled")
    if not user.is_active:
        return Decision(False, "the user is inactive")
    if agent.visibility == ADMINS and not user.is_admin:
        return Decision(False, "requires an admin")
    return None


def _decide(agent: Granted, user: User, grants: Iterable[Grant], groups: set[str]) -> Decision:
    """Rules 4-7 over the agent's unexpired ``grants`` and the user's ``groups``."""
    own = user_principal(user.user_id)
    user_grants = [grant for grant in grants if grant.principal == own]
    group_grants = sorted(
        (grant for grant in grants if grant.group_name is not None and grant.group_name in groups),
        key=lambda grant: grant.principal,
    )
    if any(grant.effect != ALLOW for grant in user_grants):
        return Decision(False, "denied for this user")
    denying_group = next((grant.group_name for grant in group_grants if grant.effect != ALLOW), None)
    if denying_group is not None:
        return Decision(False, f"denied by group {denying_group}")
    if agent.visibility == PUBLIC:
        return Decision(True, "public agent")
    if agent.visibility == ADMINS:  # rule 3 let only admins this far
        return Decision(True, "admins may use it")
    if user_grants:
        return Decision(True, "granted to this user")
    if group_grants:
        return Decision(True, f"granted to group {group_grants[0].group_name}")
    return Decision(False, "not granted")
