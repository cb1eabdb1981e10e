"""Agent grants in the control plane: who may (or may not) use an agent.

A grant is stored as :class:`insightmesh.directory.models.Grant` (hash ``agent_name``, range
``principal`` = ``"group#<name>"`` or ``"user#<user_id>"``). The API names a principal
``group:<name>`` or ``user:<user_id>`` (``#`` would be a URL fragment).

Calls:

* list an agent's grants: one ``GetItem`` (the agent, for 404), one ``Query(agent_name)`` and, if
  the page names users, one ``BatchGetItem`` of them for their e-mails.
* one grant: ``GetItem`` agent (404), ``GetItem`` grant and, for a user, ``BatchGetItem`` of them.
* a group's grants (group detail): one ``Query by-principal``.
* add: ``GetItem`` agent, ``GetItem`` grant, then one ``TransactWriteItems``: ``ConditionCheck``
  that the group or user exists, ``PutItem`` of the grant (``attribute_not_exists``), ``UpdateItem``
  ``ADD group_count|user_count 1`` on the agent (which must exist and not be deleted) and the
  audit entry. Posting a grant that exists replaces its effect and expiry (200 instead of 201),
  conditional on the values read; the counters do not change.
* remove: ``GetItem`` agent and grant, then one transaction: ``DeleteItem`` of the grant, ``ADD
  -1`` on the counter, the audit entry.

So an agent's ``group_count``/``user_count`` always equal its grants made through this API.

A user is named by id or by e-mail (``GrantIn.email``: the directory's e-mail lookup, 404 if there
is none). A grant that would change nothing is refused with a 409 that says why and what to do
(:func:`_refuse_no_op`): an allow on a ``public`` agent (everyone may use it already) or on an
``admins`` agent (no one else may, whatever the grant), a deny on ``help`` (it must stay reachable
to explain access), and the same effect and expiry as the grant that exists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pynamodb.attributes import NumberAttribute
from pynamodb.expressions.condition import Condition

from insightmesh.admin.agents import require_agent, target
from insightmesh.admin.schemas import GrantIn, GrantOut
from insightmesh.admin.users import no_such_user, require_person
from insightmesh.agents.catalog import ADMINS, ALWAYS_PUBLIC, PUBLIC, AgentRecord
from insightmesh.api.errors import ConflictError, NotFoundError
from insightmesh.api.pagination import Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.directory.models import (
    GROUP_PRINCIPAL_PREFIX,
    USER_PRINCIPAL_PREFIX,
    Grant,
    Group,
    User,
    group_principal,
    user_principal,
)

PrincipalType = Literal["group", "user"]
DETAIL_GRANTS: Final = 100  # grants shown with an agent or a group


def stored_principal(principal_type: PrincipalType, principal_id: str) -> str:
    return group_principal(principal_id) if principal_type == "group" else user_principal(principal_id)


def parse_principal(value: str) -> tuple[PrincipalType, str]:
    """``"group:sales"`` → ``("group", "sales")`` (the path format, already validated)."""
    kind, _, identifier = value.partition(":")
    return ("group" if kind == "group" else "user"), identifier


def grant_out(grant: Grant, *, now: datetime | None = None) -> GrantOut:
    if grant.principal.startswith(GROUP_PRINCIPAL_PREFIX):
        principal_type: PrincipalType = "group"
        principal_id = grant.principal[len(GROUP_PRINCIPAL_PREFIX):]
    else:
        principal_type = "user"
        principal_id = grant.principal.removeprefix(USER_PRINCIPAL_PREFIX)
    return GrantOut(
        agent_name=grant.agent_name,
        principal=f"{principal_type}:{principal_id}",
        principal_type=principal_type,
        principal_id=principal_id,
        effect="allow" if grant.effect == "allow" else "deny",
        expires_at=grant.expires_at,
        expired=grant.is_expired(now or datetime.now(UTC)),
        granted_by=grant.granted_by,
        created_at=grant.created_at,
    )


def _scope(agent_name: str) -> str:
    return f"grants|{agent_name}"


def with_emails(grants: list[GrantOut]) -> list[GrantOut]:
    """The user grants with their e-mail: one ``BatchGetItem`` of the users a page names (none if none)."""
    user_ids = sorted({grant.principal_id for grant in grants if grant.principal_type == "user"})
    if not user_ids:
        return grants
    emails = {str(user.user_id): user.email for user in User.batch_get(user_ids)}
    return [grant.model_copy(update={"email": emails.get(grant.principal_id)}) if grant.principal_type == "user"
            else grant for grant in grants]


def grants_page(agent_name: str, *, limit: int, cursor: str | None) -> Page[GrantOut]:
    """One page of the grants of an (existing) agent, by principal: one Query, and one BatchGetItem of
    the users it names, for their e-mails."""
    scope = _scope(agent_name)
    results = Grant.query(agent_name, limit=limit, last_evaluated_key=start_key(cursor, scope=scope))
    grants, last_key = query_page(results, Grant)
    return Page[GrantOut](items=with_emails([grant_out(grant) for grant in grants]),
                          next_cursor=key_cursor(last_key, scope=scope))


def list_grants(agent_name: str, *, limit: int, cursor: str | None) -> Page[GrantOut]:
    require_agent(agent_name)
    return grants_page(agent_name, limit=limit, cursor=cursor)


def get_grant(agent_name: str, principal_path: str) -> GrantOut:
    """One grant (``group:<name>`` / ``user:<id>``) of an agent, with the user's e-mail: what a page
    confirming its removal names, wherever it stands in the listing. 404 if there is none."""
    require_agent(agent_name)
    principal_type, principal_id = parse_principal(principal_path)
    grant = _get_grant(agent_name, stored_principal(principal_type, principal_id))
    if grant is None:
        raise NotFoundError(f"agent {agent_name!r} has no grant for {principal_path}")
    return with_emails([grant_out(grant)])[0]


def grants_of(principal_type: PrincipalType, principal_id: str) -> list[GrantOut]:
    """The first :data:`DETAIL_GRANTS` grants held by a group or user (one Query by-principal)."""
    results = Grant.by_principal.query(stored_principal(principal_type, principal_id), limit=DETAIL_GRANTS)
    grants, _ = query_page(results, Grant)
    return [grant_out(grant) for grant in grants]


def _get_grant(agent_name: str, principal: str) -> Grant | None:
    try:
        return Grant.get(agent_name, principal, consistent_read=True)
    except Grant.DoesNotExist:
        return None


def _counter(principal_type: PrincipalType) -> NumberAttribute:
    return AgentRecord.group_count if principal_type == "group" else AgentRecord.user_count


def _unchanged(grant: Grant) -> Condition:
    same_expiry: Condition = (Grant.expires_at == grant.expires_at if grant.expires_at is not None
                              else Grant.expires_at.does_not_exist())
    unchanged: Condition = Grant.principal.exists() & (Grant.effect == grant.effect) & same_expiry
    return unchanged


def _principal_of(body: GrantIn) -> tuple[PrincipalType, str]:
    """Who the grant is for: a group or user by id as given, or the user an e-mail names (404)."""
    if body.principal_id is not None and body.principal_type is not None:
        return body.principal_type, body.principal_id
    if body.user_id is not None:
        return "user", body.user_id
    return "user", str(require_person(user_id=None, email=body.email).user_id)


def _refuse_no_op(agent: AgentRecord, body: GrantIn) -> None:
    """409 for a grant that the agent's visibility makes pointless, saying why and what to do instead."""
    name = agent.name
    restrict = (f"set visibility to restricted to limit it to grants (PATCH /api/agents/{name} with "
                f"{{\"visibility\": \"restricted\", \"version\": <version>}})")
    if body.effect == "allow" and agent.visibility == PUBLIC:
        raise ConflictError(f"{name} is public: {restrict}. As it is, every active user may use it, so an allow "
                            "grant would change nothing.")
    if body.effect == "allow" and agent.visibility == ADMINS:
        raise ConflictError(f"{name} is for admins only: {restrict}; admins then need a grant too. As it is, an "
                            "allow grant would let no one else use it.")
    if body.effect == "deny" and name in ALWAYS_PUBLIC:
        raise ConflictError(f"{name} cannot be denied: it must stay reachable to tell people which agents they may "
                            "use and how to get access")


def _refuse_duplicate(agent_name: str, body: GrantIn, path: str, existing: Grant | None) -> None:
    """409 for the grant that exists already, with the same effect and expiry."""
    if existing is not None and existing.effect == body.effect and existing.expires_at == body.expires_at:
        until = f" until {existing.expires_at.isoformat()}" if existing.expires_at else ""
        raise ConflictError(f"{path} already has this {body.effect} grant on {agent_name}{until}: nothing to "
                            "change; send another effect or expires_at to change it, or DELETE "
                            f"/api/agents/{agent_name}/grants/{path} to remove it")


def put_grant(agent_name: str, body: GrantIn, *, actor: Principal, request_id: str) -> tuple[GrantOut, bool]:
    """Grant (or deny) an agent to a group or user; return the grant and whether it is new."""
    agent = require_agent(agent_name)
    if agent.is_deleted:
        raise ConflictError(f"agent {agent_name!r} is deleted; restore it first")
    _refuse_no_op(agent, body)
    principal_type, principal_id = _principal_of(body)
    principal = stored_principal(principal_type, principal_id)
    existing = _get_grant(agent_name, principal)
    _refuse_duplicate(agent_name, body, f"{principal_type}:{principal_id}", existing)
    now = utc_now()
    grant = Grant(agent_name, principal, effect=body.effect, expires_at=body.expires_at,
                  granted_by=actor.user_id, created_at=existing.created_at if existing else now)
    tx = Tx()
    if principal_type == "group":
        missing = NotFoundError(f"no group {principal_id!r}: list groups with GET /api/groups, or create one with "
                                "POST /api/groups")
        tx.check(Group, principal_id, condition=Group.name.exists(), error=missing)
    else:
        missing = no_such_user(principal_id)
        tx.check(User, principal_id, condition=User.user_id.exists(), error=missing)
    agent_usable = AgentRecord.name.exists() & AgentRecord.deleted_at.does_not_exist()
    gone = ConflictError(f"agent {agent_name!r} was deleted meanwhile")
    raced = ConflictError("this grant was changed by someone else; reload and retry")
    if existing is None:
        tx.put(grant, condition=Grant.principal.does_not_exist(), error=raced)
        # Counters commute: no version condition (pynamodb still increments the version).
        tx.update(agent, [_counter(principal_type).add(1)], condition=agent_usable, error=gone,
                  add_version_condition=False)
    else:
        tx.check(AgentRecord, agent_name, condition=agent_usable, error=gone)
        tx.put(grant, condition=_unchanged(existing), error=raced)
    after = grant_out(grant, now=now)
    tx.audit(audit_log.entry(actor=actor, action="grant.put", target=target(agent_name),
                             before=grant_out(existing, now=now) if existing else None, after=after,
                             request_id=request_id))
    tx.commit()
    return after, existing is None


def delete_grant(agent_name: str, principal_path: str, *, actor: Principal, request_id: str) -> GrantOut:
    """Remove the grant of ``principal_path`` (``group:<name>`` / ``user:<id>``) on an agent."""
    agent = require_agent(agent_name)
    principal_type, principal_id = parse_principal(principal_path)
    existing = _get_grant(agent_name, stored_principal(principal_type, principal_id))
    if existing is None:
        raise NotFoundError(f"agent {agent_name!r} has no grant for {principal_path}")
    tx = Tx()
    tx.delete(existing, condition=_unchanged(existing),
              error=ConflictError("this grant was changed by someone else; reload and retry"))
    tx.update(agent, [_counter(principal_type).add(-1)], condition=AgentRecord.name.exists(),
              error=NotFoundError(f"no agent named {agent_name!r}"), add_version_condition=False)
    before = grant_out(existing)
    tx.audit(audit_log.entry(actor=actor, action="grant.delete", target=target(agent_name), before=before,
                             after=None, request_id=request_id))
    tx.commit()
    return before
