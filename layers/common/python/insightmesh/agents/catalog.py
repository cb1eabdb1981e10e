"""The agent registry: which agents exist, what they are called and who may see them.

Built-in agents are described in code by :class:`AgentDefinition` and written to the registry by
:func:`seed_agents`; from then on the registry record belongs to the admins (display name,
description, aliases, visibility, enabled, deleted) and seeding never overwrites their edits.

**Visibility** (:data:`VISIBILITIES`) says who may use an agent: ``public`` (every active user),
``admins`` (admins only) or ``restricted`` (only the users and groups with an allow grant); a
deny grant always wins (:mod:`insightmesh.directory.permissions`). It is stored as the item's
``visibility``. Records written before it existed carry only the booleans ``is_public`` and
``requires_admin``: :func:`visibility_from_flags` maps them (``requires_admin`` → ``admins``,
else ``is_public`` → ``public``, else ``restricted``), on read and, once, in storage by
:func:`migrate_visibility` (run by :func:`seed_agents`, conditional on ``visibility`` being
absent, so an admin's choice is never overwritten). The booleans are still written, derived from
``visibility``, for readers that predate it; nothing decides on them.

``AGENTS_TABLE`` — :class:`AgentRecord`, hash ``name``; GSI ``by-kind`` (hash ``kind``, range
``name``, ALL). Access patterns:

* ``GetItem(name)``: one agent (:func:`get_agent`; admin UI).
* ``Query by-kind(kind="agent")``: every agent, sorted by name, in one Query (paginated by
  DynamoDB past 1 MB): :func:`list_agents` — the router and the help listing. Every record has
  ``kind = "agent"``; the index exists so that listing never needs a Scan.
* ``BatchGetItem(names)`` then ``PutItem`` with ``attribute_not_exists(name)``: :func:`seed_agents`.
* ``Query by-kind`` then ``UpdateItem`` with ``attribute_not_exists(visibility)`` per record that
  lacks it: :func:`migrate_visibility` (deploy time, from :func:`seed_agents`).
* ``UpdateItem`` with the ``version`` condition: admin edits (optimistic locking).
* ``UpdateItem`` ``ADD group_count|user_count :n`` in the transaction that adds or removes a
  grant (insightmesh.admin.grants): the agent list shows counts without reading grants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, get_args

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.aws import condition_failed, model_meta, put_if_absent
from insightmesh.clock import utc_now
from insightmesh.observability import get_logger

AGENT_KIND: Final = "agent"
AGENT_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

Visibility = Literal["public", "admins", "restricted"]
VISIBILITIES: Final[tuple[Visibility, ...]] = get_args(Visibility)
PUBLIC: Final[Visibility] = "public"
ADMINS: Final[Visibility] = "admins"
RESTRICTED: Final[Visibility] = "restricted"
HELP_AGENT: Final = "help"
# Agents that must stay public: ``help`` explains who may use what and how to get access.
ALWAYS_PUBLIC: Final = frozenset({HELP_AGENT})


def visibility_from_flags(is_public: bool | None, requires_admin: bool | None) -> Visibility:
    """The visibility of a record written before ``visibility`` existed (the migration's mapping).

    ``requires_admin`` used to deny every non-admin whatever else held, so it maps to ``admins``
    (with or without ``is_public``: an admin-only agent that also needed a grant for admins
    becomes usable by every admin — never by anyone else)."""
    if requires_admin:
        return ADMINS
    return PUBLIC if is_public else RESTRICTED


def visibility_flags(visibility: Visibility) -> dict[str, bool]:
    """The derived booleans written next to ``visibility`` for readers that predate it."""
    return {"is_public": visibility == PUBLIC, "requires_admin": visibility == ADMINS}


class AgentsByKind(GlobalSecondaryIndex["AgentRecord"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)


class AgentRecord(Model):
    """An agent as registered: the admin-editable view of a built-in (or admin-defined) agent."""

    Meta = model_meta("AGENTS_TABLE")

    name = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default=AGENT_KIND)  # always "agent": the by-kind key
    display_name = UnicodeAttribute(default="")
    description = UnicodeAttribute(default="")
    # pynamodb types `of` as the element value type, not the attribute class it takes.
    aliases: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    is_system = BooleanAttribute(default=False)
    # Who may use the agent (see the module docstring); unset on records older than the field,
    # read through :attr:`visibility`.
    visibility_setting = UnicodeAttribute(attr_name="visibility", null=True)
    # Legacy, derived from ``visibility`` on every write; read only to map records that lack it.
    is_public = BooleanAttribute(default=False)
    requires_admin = BooleanAttribute(default=False)
    enabled = BooleanAttribute(default=True)
    deleted_at = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute(default=utc_now)
    updated_at = UTCDateTimeAttribute(default=utc_now)
    version = VersionAttribute()
    # Denormalised grant counters (how many groups / users hold a grant, allow or deny), changed
    # atomically (ADD, in the grant's own transaction) by insightmesh.admin.grants so that the
    # agent list needs no per-agent Query. Unset until the first grant: read as 0.
    group_count = NumberAttribute(null=True)
    user_count = NumberAttribute(null=True)
    # The tools admins enabled for the agent (names in insightmesh.tools.registry.TOOLS); unset or
    # empty: none. Where it answers, a channel's own ``tools`` setting narrows them further.
    tools: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]

    by_kind = AgentsByKind()

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def visibility(self) -> Visibility:
        """Who may use the agent: the stored ``visibility``, else the mapping of the legacy flags.
        An unknown stored value reads as ``restricted`` (fail closed)."""
        stored = self.visibility_setting
        if stored is None:
            return visibility_from_flags(self.is_public, self.requires_admin)
        return stored if stored in VISIBILITIES else RESTRICTED

    @staticmethod
    def visibility_actions(visibility: Visibility) -> list[Action]:
        """The UpdateItem actions that set ``visibility`` (and its derived legacy flags)."""
        flags = visibility_flags(visibility)
        return [AgentRecord.visibility_setting.set(visibility), AgentRecord.is_public.set(flags["is_public"]),
                AgentRecord.requires_admin.set(flags["requires_admin"])]

    def answers_to(self, word: str) -> bool:
        """Whether ``word`` (already normalised by :func:`normalize_agent_word`) names this agent."""
        return word == self.name.casefold() or any(word == alias.casefold() for alias in self.aliases or ())


@dataclass(frozen=True)
class AgentDefinition:
    """A built-in agent as the code describes it; the registry record is seeded from it once."""

    name: str
    display_name: str
    description: str
    aliases: tuple[str, ...] = ()
    is_system: bool = True
    visibility: Visibility = RESTRICTED  # the seeded default; admins change it afterwards
    tools: tuple[str, ...] = ()  # the tools seeded as enabled (names in insightmesh.tools.registry)

    def __post_init__(self) -> None:
        from insightmesh.tools.registry import TOOLS

        unknown = sorted(set(self.tools) - set(TOOLS))
        if unknown:
            raise ValueError(f"agent {self.name!r} names unknown tools: {', '.join(unknown)}")
        if not AGENT_NAME_PATTERN.match(self.name):
            raise ValueError(f"agent name {self.name!r} must match {AGENT_NAME_PATTERN.pattern}")
        if self.visibility not in VISIBILITIES:
            raise ValueError(f"visibility of {self.name!r} must be one of {', '.join(VISIBILITIES)}")
        if self.name in ALWAYS_PUBLIC and self.visibility != PUBLIC:
            raise ValueError(f"agent {self.name!r} must be public")

    def to_record(self, now: datetime) -> AgentRecord:
        return AgentRecord(
            self.name,
            kind=AGENT_KIND,
            display_name=self.display_name,
            description=self.description,
            aliases=list(self.aliases),
            is_system=self.is_system,
            visibility_setting=self.visibility,
            **visibility_flags(self.visibility),
            enabled=True,
            created_at=now,
            updated_at=now,
            tools=list(self.tools) or None,
        )


@dataclass
class SeedReport:
    """What :func:`seed_agents` did, by agent name."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Existing built-ins whose ``is_system`` flag had been cleared and was set back to True.
    updated: list[str] = field(default_factory=list)
    # Records written before ``visibility`` existed, given the visibility their flags meant.
    migrated: list[str] = field(default_factory=list)


def seed_agents(definitions: Sequence[AgentDefinition]) -> SeedReport:
    """Create the agents of ``definitions`` that are missing; idempotent and safe to run concurrently.

    An existing record keeps every admin-editable field (display name, description, aliases,
    visibility, enabled, deleted_at — a deleted built-in stays deleted); the only thing seeding
    enforces on it is ``is_system = True`` for a built-in. A record that predates ``visibility``
    gets the one its flags meant (:func:`migrate_visibility`), never the definition's. Calls: one
    ``BatchGetItem`` (per 100 agents), then one conditional ``PutItem`` per missing agent and one
    ``UpdateItem`` per built-in that lost its ``is_system`` flag; then :func:`migrate_visibility`.
    """
    names = [definition.name for definition in definitions]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"agents defined more than once: {', '.join(duplicates)}")
    existing = {record.name: record for record in AgentRecord.batch_get(names, consistent_read=True)} if names else {}
    report = SeedReport()
    logger = get_logger()
    for definition in definitions:
        record = existing.get(definition.name)
        if record is None:
            now = utc_now()
            if put_if_absent(definition.to_record(now), AgentRecord.name.does_not_exist()):
                report.created.append(definition.name)
                logger.info("agent seeded", extra={"agent": definition.name})
                continue
            # Another seeder created it between our read and our write: treat as existing.
            record = AgentRecord.get(definition.name, consistent_read=True)
        if definition.is_system and not record.is_system:
            # Last write wins on this one flag only: it does not conflict with an admin's edit of
            # other fields, so no version condition (the version is still incremented).
            record.update(
                actions=[AgentRecord.is_system.set(True), AgentRecord.updated_at.set(utc_now())],
                condition=AgentRecord.name.exists(),
                add_version_condition=False,
            )
            report.updated.append(definition.name)
            logger.info("built-in agent marked as system again", extra={"agent": definition.name})
        else:
            report.unchanged.append(definition.name)
    report.migrated = migrate_visibility()
    return report


def migrate_visibility() -> list[str]:
    """Give every record that lacks ``visibility`` the one its legacy flags mean; return their names.

    One ``Query by-kind`` (deleted agents included), then one ``UpdateItem`` per record to migrate,
    conditional on ``visibility`` still being absent: an admin who set it meanwhile wins, and a
    second run changes nothing. No version condition (the mapping keeps the meaning), but the
    version is incremented, as for any change."""
    migrated: list[str] = []
    for record in AgentRecord.by_kind.query(AGENT_KIND):
        if record.visibility_setting is not None:
            continue
        visibility = visibility_from_flags(record.is_public, record.requires_admin)
        try:
            record.update(actions=[*AgentRecord.visibility_actions(visibility), AgentRecord.updated_at.set(utc_now())],
                          condition=AgentRecord.name.exists() & AgentRecord.visibility_setting.does_not_exist(),
                          add_version_condition=False)
        except UpdateError as error:
            if not condition_failed(error):
                raise
            continue  # set meanwhile (by an admin or another seeder): theirs stands
        migrated.append(record.name)
        get_logger().info("agent visibility migrated", extra={"agent": record.name, "visibility": visibility})
    return migrated


def list_agents(*, include_deleted: bool = False) -> list[AgentRecord]:
    """Every registered agent sorted by name — one Query on ``by-kind`` (paginated internally).

    Disabled agents are included (the router still recognises them, the permission check denies
    them); deleted agents are left out unless ``include_deleted``.
    """
    return [
        record
        for record in AgentRecord.by_kind.query(AGENT_KIND)
        if include_deleted or not record.is_deleted
    ]


def get_agent(name: str) -> AgentRecord | None:
    """The record of agent ``name`` (one GetItem), deleted or not; ``None`` if there is none."""
    try:
        return AgentRecord.get(name)
    except AgentRecord.DoesNotExist:
        return None


def normalize_agent_word(word: str) -> str:
    """``"-MEDDIC"`` → ``"meddic"``: stripped, one leading dash removed, case-folded."""
    cleaned = word.strip()
    if cleaned.startswith("-"):
        cleaned = cleaned[1:]
    return cleaned.casefold()


def find_agent(word: str, agents: Iterable[AgentRecord]) -> AgentRecord | None:
    """The agent that ``word`` names, by name or alias, case-insensitively, with or without a dash.

    ``meddic``, ``-meddic`` and ``-MEDDIC`` all find the agent named (or aliased) ``meddic``. A
    name wins over another agent's alias; deleted agents are never found.
    """
    wanted = normalize_agent_word(word)
    if not wanted:
        return None
    candidates = [agent for agent in agents if not agent.is_deleted]
    by_name = next((agent for agent in candidates if agent.name.casefold() == wanted), None)
    if by_name is not None:
        return by_name
    return next((agent for agent in candidates if agent.answers_to(wanted)), None)
