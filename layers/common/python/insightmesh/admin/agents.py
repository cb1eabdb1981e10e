"""Agents in the control plane: list, show, edit, enable/disable, soft delete and restore.

Calls (``AGENTS_TABLE``; see :mod:`insightmesh.agents.catalog`):

* list: one ``Query by-kind`` of ``limit`` agents (deleted ones filtered out unless asked for);
  the group/user counts are the record's denormalised counters, so no grant is read. For a
  non-admin, the page is then narrowed to the agents they may use
  (:func:`insightmesh.directory.permissions.agents_usable_by`: one memberships Query and one
  BatchGetItem per 100 agent x principal keys) — a member's page may be shorter than ``limit``.
* show: one ``GetItem`` and one ``Query`` of its grants (first page).
* edit / enable / disable / delete / restore: one ``GetItem``, then one ``TransactWriteItems``
  holding the ``UpdateItem`` (conditional on the version read, so a concurrent change is a 409)
  and the audit entry. Changing aliases also reads the catalog (one ``Query by-kind``) to keep
  aliases unique, and puts a ``ConditionCheck`` on every other agent's version in the same
  transaction (catalogs of up to 95 agents), so two admins cannot claim one alias concurrently.

Rules: aliases are unique across every registered agent, deleted ones included (a deleted agent
keeps its aliases, so restoring it can never clash), and an alias may not be another agent's
name. System (built-in) agents can be neither disabled nor deleted (409), but they can be
restricted: ``visibility`` is editable on every agent except ``help``, which stays public (409)
because it is how people learn which agents they may use and how to get access. A deleted agent
must be restored before it is edited, enabled or disabled (409).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from insightmesh.admin.schemas import AgentOut, AgentPatch
from insightmesh.agents.catalog import AGENT_KIND, ALWAYS_PUBLIC, PUBLIC, AgentRecord, get_agent
from insightmesh.api.errors import ConflictError, NotFoundError, ValidationFailedError
from insightmesh.api.pagination import Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import MAX_ITEMS, Tx
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.directory.models import User
from insightmesh.directory.permissions import agents_usable_by

# Cross-agent ConditionChecks fit in one transaction up to this many other agents.
MAX_ALIAS_GUARDS: Final = MAX_ITEMS - 5


def target(name: str) -> str:
    """The audit target of agent ``name``."""
    return f"agent:{name}"


def agent_out(record: AgentRecord, *, counts: bool = True) -> AgentOut:
    return AgentOut(
        name=record.name,
        display_name=record.display_name,
        description=record.description,
        aliases=list(record.aliases or []),
        is_system=record.is_system,
        visibility=record.visibility,
        enabled=record.enabled,
        deleted=record.is_deleted,
        deleted_at=record.deleted_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        version=record.version or 0,
        group_count=max(int(record.group_count or 0), 0) if counts else None,
        user_count=max(int(record.user_count or 0), 0) if counts else None,
        tools=list(record.tools or []),
    )


def require_agent(name: str) -> AgentRecord:
    """The record of agent ``name`` (one GetItem), deleted or not; 404 if there is none."""
    record = get_agent(name)
    if record is None:
        raise NotFoundError(f"no agent named {name!r}")
    return record


def list_page(*, viewer: User | None, include_deleted: bool, limit: int, cursor: str | None) -> Page[AgentOut]:
    """A page of agents sorted by name. ``viewer``: a non-admin, who sees only the agents they may
    use (never deleted ones) and no counts; ``None`` for an admin."""
    with_deleted = include_deleted and viewer is None
    scope = f"agents|deleted={with_deleted}"
    not_deleted = None if with_deleted else AgentRecord.deleted_at.does_not_exist()
    results = AgentRecord.by_kind.query(AGENT_KIND, filter_condition=not_deleted, limit=limit,
                                        last_evaluated_key=start_key(cursor, scope=scope))
    records, last_key = query_page(results, AgentRecord)
    if viewer is not None:
        records = agents_usable_by(viewer, records)
    items = [agent_out(record, counts=viewer is None) for record in records]
    return Page[AgentOut](items=items, next_cursor=key_cursor(last_key, scope=scope))


def _changed(before: AgentOut, now: datetime, **changes: object) -> AgentOut:
    """What the record is after an update that passed the version condition."""
    return before.model_copy(update={**changes, "updated_at": now, "version": before.version + 1})


def _alias_guard(record: AgentRecord, aliases: list[str], tx: Tx) -> None:
    """409 if an alias is taken; guard the other agents' versions in ``tx`` against a race."""
    if record.name in aliases:
        raise ValidationFailedError(f"{record.name!r} is the agent's own name, not an alias",
                                    details=[{"loc": ["body", "aliases"], "msg": "the agent's own name",
                                              "type": "value_error"}])
    others = [other for other in AgentRecord.by_kind.query(AGENT_KIND) if other.name != record.name]
    owners: dict[str, str] = {}
    for other in others:
        owners[other.name.casefold()] = other.name
        for alias in other.aliases or ():
            owners.setdefault(alias.casefold(), other.name)
    for alias in aliases:
        owner = owners.get(alias.casefold())
        if owner is not None:
            raise ConflictError(f"{alias!r} is already the name or an alias of agent {owner!r}")
    if len(others) > MAX_ALIAS_GUARDS:
        return  # too many agents to guard in one transaction: the check above still applies
    changed = ConflictError("the agents changed while the aliases were being checked; retry")
    for other in others:
        unchanged: Condition = (AgentRecord.version == other.version if other.version is not None
                                else AgentRecord.version.does_not_exist())
        tx.check(AgentRecord, other.name, condition=unchanged, error=changed)


def _commit_update(record: AgentRecord, actions: list[Action], *, after: AgentOut, before: AgentOut,
                   action: str, actor: Principal, request_id: str, tx: Tx | None = None) -> AgentOut:
    tx = tx or Tx()
    # The instance's version is added to the condition (and incremented) by pynamodb.
    tx.update(record, actions, condition=AgentRecord.name.exists(),
              error=ConflictError(f"agent {record.name!r} was changed by someone else; reload and retry"))
    tx.audit(audit_log.entry(actor=actor, action=action, target=target(record.name), before=before,
                             after=after, request_id=request_id))
    tx.commit()
    return after


def update(name: str, patch: AgentPatch, *, actor: Principal, request_id: str) -> AgentOut:
    """Change display name, description, aliases, visibility and/or tools, if the agent is still at
    ``patch.version``."""
    record = require_agent(name)
    if record.is_deleted:
        raise ConflictError(f"agent {name!r} is deleted; restore it first")
    if patch.visibility is not None and patch.visibility != PUBLIC and name in ALWAYS_PUBLIC:
        raise ConflictError(f"{name} must stay public: it is how people learn which agents they may use and how "
                            "to get access. Restrict the other agents instead.")
    if record.version != patch.version:
        raise ConflictError(f"agent {name!r} is at version {record.version}, not {patch.version}: "
                            "it was changed by someone else; reload and retry")
    before = agent_out(record)
    now = utc_now()
    tx = Tx()
    actions: list[Action] = [AgentRecord.updated_at.set(now)]
    changes: dict[str, object] = {}
    if patch.display_name is not None:
        actions.append(AgentRecord.display_name.set(patch.display_name))
        changes["display_name"] = patch.display_name
    if patch.description is not None:
        actions.append(AgentRecord.description.set(patch.description))
        changes["description"] = patch.description
    if patch.aliases is not None:
        _alias_guard(record, patch.aliases, tx)
        actions.append(AgentRecord.aliases.set(list(patch.aliases)))
        changes["aliases"] = list(patch.aliases)
    if patch.visibility is not None:
        actions.extend(AgentRecord.visibility_actions(patch.visibility))
        changes["visibility"] = patch.visibility
    if patch.tools is not None:  # validated against the tool registry (schemas.ToolName)
        actions.append(AgentRecord.tools.set(list(patch.tools)) if patch.tools else AgentRecord.tools.remove())
        changes["tools"] = list(patch.tools)
    return _commit_update(record, actions, before=before, after=_changed(before, now, **changes),
                          action="agent.update", actor=actor, request_id=request_id, tx=tx)


def set_enabled(name: str, enabled: bool, *, actor: Principal, request_id: str) -> AgentOut:
    """Enable or disable an agent (a system agent cannot be disabled)."""
    record = require_agent(name)
    if record.is_deleted:
        raise ConflictError(f"agent {name!r} is deleted; restore it first")
    if not enabled and record.is_system:
        raise ConflictError(f"agent {name!r} is a system agent and cannot be disabled")
    before = agent_out(record)
    now = utc_now()
    actions: list[Action] = [AgentRecord.enabled.set(enabled), AgentRecord.updated_at.set(now)]
    return _commit_update(record, actions, before=before, after=_changed(before, now, enabled=enabled),
                          action="agent.enable" if enabled else "agent.disable", actor=actor,
                          request_id=request_id)


def soft_delete(name: str, *, actor: Principal, request_id: str) -> AgentOut:
    """Mark an agent deleted (kept, with its grants and aliases, until restored)."""
    record = require_agent(name)
    if record.is_system:
        raise ConflictError(f"agent {name!r} is a system agent and cannot be deleted")
    if record.is_deleted:
        raise ConflictError(f"agent {name!r} is already deleted")
    before = agent_out(record)
    now = utc_now()
    actions: list[Action] = [AgentRecord.deleted_at.set(now), AgentRecord.updated_at.set(now)]
    return _commit_update(record, actions, before=before,
                          after=_changed(before, now, deleted=True, deleted_at=now),
                          action="agent.delete", actor=actor, request_id=request_id)


def restore(name: str, *, actor: Principal, request_id: str) -> AgentOut:
    """Undo :func:`soft_delete`."""
    record = require_agent(name)
    if not record.is_deleted:
        raise ConflictError(f"agent {name!r} is not deleted")
    before = agent_out(record)
    now = utc_now()
    actions: list[Action] = [AgentRecord.deleted_at.remove(), AgentRecord.updated_at.set(now)]
    return _commit_update(record, actions, before=before,
                          after=_changed(before, now, deleted=False, deleted_at=None),
                          action="agent.restore", actor=actor, request_id=request_id)
