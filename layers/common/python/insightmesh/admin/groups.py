"""Groups and their members in the control plane.

Calls:

* list groups: one ``Query by-kind(kind="group")`` of up to ``limit`` groups, by name (system
  groups included, in their place by name), its ``LastEvaluatedKey`` as the cursor; with a name
  prefix, the same Query with ``begins_with(name, prefix)`` on the range key. The index
  projects every attribute, so no ``BatchGetItem`` follows.
* show a group: ``GetItem`` + one ``Query by-principal`` of its grants.
* create: one transaction — ``PutItem`` group (``attribute_not_exists``: 409 if taken; it carries
  ``kind = "group"``, so the listing shows it), audit entry.
* change the description: ``GetItem``, then a transaction with the ``UpdateItem`` conditional on
  the description read (the table has no version attribute) and the audit entry.
* delete: ``GetItem``, one ``Query`` (Limit 1) of its members and one ``Query by-principal``
  (Limit 1) of its grants — a group that still has members or grants is refused (409): remove
  them first, so no membership or grant is left pointing at nothing — then a transaction deleting
  the group, with the audit entry.
* members: ``GetItem`` group, one ``Query(group_name)`` page, one ``BatchGetItem`` of the users.
  Add (a user named by ``user_id``, or by ``email``: the directory's e-mail lookup, a claim
  ``GetItem`` or a ``Query by-email``): ``GetItem`` group and user, then a transaction (group
  still exists, ``PutItem`` membership with ``attribute_not_exists`` — already a member is a 409
  — audit entry). Remove: ``GetItem``
  group and membership, then a transaction (``DeleteItem``, audit entry).

System groups cannot be changed, deleted, or have members added or removed by hand (409):
``all_users`` is maintained by the assistant itself (every user is in it).
"""

from __future__ import annotations

from insightmesh.admin.grants import grants_of
from insightmesh.admin.schemas import GroupCreate, GroupDetail, GroupOut, GroupPatch, MemberIn, MemberOut
from insightmesh.admin.users import require_person
from insightmesh.api.errors import ConflictError, NotFoundError
from insightmesh.api.pagination import Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.directory.models import GROUP_KIND, Grant, Group, Membership, User, group_principal
from insightmesh.directory.users import SYSTEM_GROUPS


def target(name: str) -> str:
    return f"group:{name}"


def group_out(group: Group) -> GroupOut:
    return GroupOut(name=group.name, description=group.description, is_system=group.is_system,
                    created_at=group.created_at)


def require_group(name: str) -> Group:
    try:
        return Group.get(name)
    except Group.DoesNotExist:
        raise NotFoundError(f"no group named {name!r}") from None


def _changeable(name: str) -> Group:
    group = require_group(name)
    if group.is_system or name in SYSTEM_GROUPS:
        raise ConflictError(f"{name!r} is a system group and cannot be changed by hand")
    return group


def list_page(*, limit: int, cursor: str | None, name_prefix: str | None = None) -> Page[GroupOut]:
    """Every group by name, or those whose name starts with ``name_prefix``: one ``Query by-kind``
    (the prefix is a ``begins_with`` on the index's range key, so it reads only the matches)."""
    prefix = (name_prefix or "").strip().lower()
    # Not the former registry's "groups": its cursors are refused (422); a prefix's cursor is its own.
    scope = f"groups|by-kind|{prefix}" if prefix else "groups|by-kind"
    condition = Group.name.startswith(prefix) if prefix else None
    results = Group.by_kind.query(GROUP_KIND, condition, limit=limit,
                                  last_evaluated_key=start_key(cursor, scope=scope))
    found, last_key = query_page(results, Group)
    return Page[GroupOut](items=[group_out(group) for group in found], next_cursor=key_cursor(last_key, scope=scope))


def detail(name: str) -> GroupDetail:
    group = require_group(name)
    return GroupDetail(**group_out(group).model_dump(), grants=grants_of("group", name))


def create(body: GroupCreate, *, actor: Principal, request_id: str) -> GroupOut:
    taken = ConflictError(f"a group named {body.name!r} already exists")
    if body.name in SYSTEM_GROUPS:
        raise taken
    now = utc_now()
    group = Group(body.name, kind=GROUP_KIND, description=body.description, is_system=False, created_at=now)
    tx = Tx()
    tx.put(group, condition=Group.name.does_not_exist(), error=taken)
    after = group_out(group)
    tx.audit(audit_log.entry(actor=actor, action="group.create", target=target(body.name), after=after,
                             request_id=request_id))
    tx.commit()
    return after


def update(name: str, patch: GroupPatch, *, actor: Principal, request_id: str) -> GroupOut:
    group = _changeable(name)
    before = group_out(group)
    tx = Tx()
    tx.update(group, [Group.description.set(patch.description)],
              condition=Group.name.exists() & (Group.description == group.description),
              error=ConflictError(f"group {name!r} was changed by someone else; reload and retry"))
    after = before.model_copy(update={"description": patch.description})
    tx.audit(audit_log.entry(actor=actor, action="group.update", target=target(name), before=before, after=after,
                             request_id=request_id))
    tx.commit()
    return after


def delete(name: str, *, actor: Principal, request_id: str) -> GroupOut:
    group = _changeable(name)
    members, _ = query_page(Membership.query(name, limit=1), Membership)
    grants, _ = query_page(Grant.by_principal.query(group_principal(name), limit=1), Grant)
    if members or grants:
        what = " and ".join(kind for kind, found in (("members", members), ("grants", grants)) if found)
        raise ConflictError(f"group {name!r} still has {what}; remove them first")
    before = group_out(group)
    tx = Tx()
    tx.delete(group, condition=Group.name.exists() & (Group.description == group.description),
              error=ConflictError(f"group {name!r} was changed by someone else; reload and retry"))
    tx.audit(audit_log.entry(actor=actor, action="group.delete", target=target(name), before=before,
                             request_id=request_id))
    tx.commit()
    return before


# -- members --------------------------------------------------------------------------------------


def _member_out(membership: Membership, user: User | None) -> MemberOut:
    return MemberOut(user_id=membership.user_id, group_name=membership.group_name, added_at=membership.added_at,
                     added_by=membership.added_by, email=user.email if user else None,
                     display_name=user.display_name if user else None, is_active=user.is_active if user else None)


def members_page(name: str, *, limit: int, cursor: str | None) -> Page[MemberOut]:
    require_group(name)
    scope = f"members|{name}"
    results = Membership.query(name, limit=limit, last_evaluated_key=start_key(cursor, scope=scope))
    rows, last_key = query_page(results, Membership)
    users = {user.user_id: user for user in User.batch_get([row.user_id for row in rows])} if rows else {}
    return Page[MemberOut](items=[_member_out(row, users.get(row.user_id)) for row in rows],
                           next_cursor=key_cursor(last_key, scope=scope))


def add_member(name: str, body: MemberIn, *, actor: Principal, request_id: str) -> MemberOut:
    """Add the user named by id or by e-mail (404, saying how to find people, if there is none)."""
    _changeable(name)
    user = require_person(user_id=body.user_id, email=body.email)
    user_id = str(user.user_id)
    membership = Membership(name, user_id, added_at=utc_now(), added_by=actor.user_id)
    who = f"{user_id!r}" + (f" ({user.email})" if user.email else "")
    tx = Tx()
    tx.check(Group, name, condition=Group.name.exists(), error=NotFoundError(f"no group named {name!r}"))
    tx.put(membership, condition=Membership.user_id.does_not_exist(),
           error=ConflictError(f"{who} is already a member of {name!r}"))
    after = _member_out(membership, user)
    tx.audit(audit_log.entry(actor=actor, action="group.member_add", target=target(name), after=after,
                             request_id=request_id))
    tx.commit()
    return after


def remove_member(name: str, user_id: str, *, actor: Principal, request_id: str) -> MemberOut:
    _changeable(name)
    try:
        membership = Membership.get(name, user_id, consistent_read=True)
    except Membership.DoesNotExist:
        raise NotFoundError(f"{user_id!r} is not a member of {name!r}") from None
    before = _member_out(membership, None)
    tx = Tx()
    tx.delete(membership, condition=Membership.user_id.exists(),
              error=NotFoundError(f"{user_id!r} is not a member of {name!r}"))
    tx.audit(audit_log.entry(actor=actor, action="group.member_remove", target=target(name), before=before,
                             request_id=request_id))
    tx.commit()
    return before
