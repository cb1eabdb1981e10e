"""The admin API's HTTP routes under ``/api``: ``register_admin_routes(app)``.

Each route authenticates (``insightmesh.auth.guard.authenticate``: 401 without valid
credentials), checks the caller's rights, and delegates to the services of
:mod:`insightmesh.admin`. Who may call what:

* every API token needs the scope of the request's method: ``admin:read`` for GET, ``admin:write``
  for a change (``authenticate_scoped``; a browser session needs none);
* anyone authenticated: ``GET /api/me``; ``GET /api/agents`` (a non-admin sees only the agents
  they may use, without grant counts);
* admins only, for everything else — reads included. A non-admin gets 403, and the refused
  attempt is audited (``outcome = "denied"``) by ``require_admin``.

A validation failure under ``/api/`` authenticates first, so that a caller without valid
credentials learns nothing but 401 (:mod:`insightmesh.auth.validation`). The plumbing the control
plane's APIs share (security, page parameters, documented errors) is :mod:`insightmesh.api.control_plane`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from insightmesh.admin import agents, grants, groups, users
from insightmesh.admin import audit as audit_view
from insightmesh.admin.schemas import (
    AGENT_NAME_PATTERN,
    NAME_PATTERN,
    PRINCIPAL_PATTERN,
    USER_ID_PATTERN,
    AdminFlagIn,
    AgentDetail,
    AgentOut,
    AgentPage,
    AgentPatch,
    AuditPage,
    GrantIn,
    GrantOut,
    GrantPage,
    GroupCreate,
    GroupDetail,
    GroupOut,
    GroupPage,
    GroupPatch,
    MemberIn,
    MemberOut,
    MemberPage,
    MeOut,
    UserDetail,
    UserOut,
    UserPage,
)
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, configure_openapi, responses
from insightmesh.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from insightmesh.auth.guard import authenticate_admin, authenticate_scoped
from insightmesh.auth.principal import Principal
from insightmesh.auth.validation import authenticate_before_validation
from insightmesh.knowledge import listing as knowledge_listing

API_DESCRIPTION: Final = f"""The InsightMesh control plane: agents, grants, groups and members, users, the audit log.

**Authentication.** `Authorization: Bearer <API token>`, or the `im_session` cookie of a browser
sign-in (state-changing requests then need `X-CSRF-Token`). An API token needs the `admin:read` scope
for reads (GET) and `admin:write` for changes, whoever its user is: a missing scope is a 403 (audited).
`GET /api/me` and `GET /api/agents` are
open to every authenticated user (the latter lists only the agents they may use); everything else
requires an admin — a refused attempt is a 403 and is recorded in the audit log.

**Errors.** Every error has one shape: `{{"error": {{"code", "message", "request_id", "details"?}}}}`.

**Lists** return `{{"items": [...], "next_cursor": ...}}`. `limit` defaults to {DEFAULT_LIMIT} and may be
at most {MAX_LIMIT}: a larger value is refused with 422 rather than silently lowered, so that a client
never mistakes a capped page for the whole list. `cursor` is the opaque, signed `next_cursor` of the
previous page; an altered cursor, or one from another list or other filters, is a 422. A page costs a
constant number of database calls; a filtered page may hold fewer items than `limit` (even none) and
still have a `next_cursor`.

**Concurrency.** Every change is a conditional write: if the resource changed since it was read
(for agents: send back the `version` you read), the answer is 409 and nothing is written. Every
successful change is recorded in the audit log with its before and after, in the same transaction.
"""
TAGS: Final = [
    Tag(name="agents", description="The agent registry: edit, enable/disable, soft delete and restore."),
    Tag(name="grants", description="Who may (allow) or may not (deny) use an agent."),
    Tag(name="groups", description="Groups of users, and their members."),
    Tag(name="users", description="Directory users and admin rights."),
    Tag(name="audit", description="The audit log of admin actions, allowed and denied."),
    Tag(name="knowledge", description="The documents of the knowledge base: who may read them, and their state."),
    Tag(name="me", description="The caller."),
    Tag(name="channels", description="Per-channel settings: response mode, agents, knowledge sources, replies."),
    Tag(name="budgets", description="Cost budgets per period: fallback model near the limit, refusal at it."),
]

AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, description="The agent's name.")]
GroupNamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="The group's name (a lower-case slug).")]
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The directory user id.")]
PrincipalPath = Annotated[str, Path(pattern=PRINCIPAL_PATTERN, description="group:<name> or user:<user_id>.")]


def register_admin_routes(app: InsightMeshResolver) -> None:
    """Add the admin API's routes to ``app`` (see the module docstring)."""
    configure_openapi(app, description=API_DESCRIPTION, tags=TAGS)
    authenticate_before_validation(app)

    def request_id() -> str:
        return app.correlation_id

    def admin(action: str, target: str) -> Principal:
        return authenticate_admin(app, action=action, target=target)

    # -- me ---------------------------------------------------------------------------------------

    @app.get("/api/me", summary="Who am I, and the agents I may use", tags=["me"], security=SECURITY,
             responses=responses(200, "The caller and their usable agents"))
    def get_me() -> MeOut:
        return users.me(authenticate_scoped(app, action="me.read", target="me"))

    # -- agents -----------------------------------------------------------------------------------

    @app.get("/api/agents", summary="List agents", tags=["agents"], security=SECURITY,
             description="Admins: every agent with its grant counts (deleted ones with include_deleted). "
                         "Others: the agents they may use.",
             responses=responses(200, "A page of agents, by name"))
    def list_agents(
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        include_deleted: Annotated[bool, Query(description="Admins: include soft-deleted agents.")] = False,
    ) -> AgentPage:
        principal = authenticate_scoped(app, action="agent.read", target="agent:*")
        viewer = None if principal.is_admin else users.require_user(principal.user_id)
        return agents.list_page(viewer=viewer, include_deleted=include_deleted, limit=limit, cursor=cursor)

    @app.get("/api/agents/<name>", summary="Show an agent and who has access", tags=["agents"], security=SECURITY,
             responses=responses(200, "The agent and the first page of its grants", 403, 404))
    def get_agent(name: AgentName) -> AgentDetail:
        admin("agent.read", agents.target(name))
        record = agents.require_agent(name)
        page = grants.grants_page(name, limit=grants.DETAIL_GRANTS, cursor=None)
        return AgentDetail(**agents.agent_out(record).model_dump(), grants=page.items,
                           grants_next_cursor=page.next_cursor)

    @app.patch("/api/agents/<name>", summary="Edit an agent", tags=["agents"], security=SECURITY,
               description="Display name, description, aliases and visibility (`public`, `admins` or "
                           "`restricted`: only users and groups with an allow grant). Send the version you read: a "
                           "concurrent change is a 409. An alias used by another agent (as alias or name) is a 409; "
                           "`help` must stay public (409). Every change is audited.",
               responses=responses(200, "The agent after the change", 403, 404, 409))
    def patch_agent(name: AgentName, patch: Annotated[AgentPatch, Body()]) -> AgentOut:
        principal = admin("agent.update", agents.target(name))
        return agents.update(name, patch, actor=principal, request_id=request_id())

    @app.post("/api/agents/<name>/enable", summary="Enable an agent", tags=["agents"], security=SECURITY,
              responses=responses(200, "The agent, enabled", 403, 404, 409))
    def enable_agent(name: AgentName) -> AgentOut:
        principal = admin("agent.enable", agents.target(name))
        return agents.set_enabled(name, True, actor=principal, request_id=request_id())

    @app.post("/api/agents/<name>/disable", summary="Disable an agent", tags=["agents"], security=SECURITY,
              description="System (built-in) agents cannot be disabled: 409.",
              responses=responses(200, "The agent, disabled", 403, 404, 409))
    def disable_agent(name: AgentName) -> AgentOut:
        principal = admin("agent.disable", agents.target(name))
        return agents.set_enabled(name, False, actor=principal, request_id=request_id())

    @app.delete("/api/agents/<name>", summary="Soft-delete an agent", tags=["agents"], security=SECURITY,
                description="The agent is kept (with its grants and aliases) and can be restored. System agents "
                            "cannot be deleted, and an agent already deleted cannot be deleted again: 409.",
                responses=responses(200, "The agent, deleted", 403, 404, 409))
    def delete_agent(name: AgentName) -> AgentOut:
        principal = admin("agent.delete", agents.target(name))
        return agents.soft_delete(name, actor=principal, request_id=request_id())

    @app.post("/api/agents/<name>/restore", summary="Restore a soft-deleted agent", tags=["agents"],
              security=SECURITY, responses=responses(200, "The agent, restored", 403, 404, 409))
    def restore_agent(name: AgentName) -> AgentOut:
        principal = admin("agent.restore", agents.target(name))
        return agents.restore(name, actor=principal, request_id=request_id())

    # -- grants -----------------------------------------------------------------------------------

    @app.get("/api/agents/<name>/grants", summary="List an agent's grants", tags=["grants"], security=SECURITY,
             responses=responses(200, "A page of grants, by principal", 403, 404))
    def list_agent_grants(name: AgentName, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> GrantPage:
        admin("grant.read", agents.target(name))
        return grants.list_grants(name, limit=limit, cursor=cursor)

    @app.post("/api/agents/<name>/grants", summary="Grant or deny an agent to a group or user", tags=["grants"],
              security=SECURITY,
              description="Name the group or user with principal_type and principal_id, or a user by user_id or "
                          "email alone (an unknown person is a 404). 201 when the grant is new; 200 when it replaces "
                          "the effect and expiry of an existing one. A deny beats any allow. 409, saying what to do, "
                          "when the agent is deleted or the grant would change nothing: an allow on a public agent "
                          "(set visibility to restricted first) or an admins-only one, a deny on help, or the same "
                          "effect and expiry again.",
              responses={**responses(201, "The grant, created", 403, 404, 409),
                         200: {"description": "The grant, replaced"}})
    def post_agent_grant(name: AgentName, grant: Annotated[GrantIn, Body()]) -> Response[GrantOut]:
        principal = admin("grant.put", agents.target(name))
        out, created = grants.put_grant(name, grant, actor=principal, request_id=request_id())
        return Response(status_code=201 if created else 200, content_type=content_types.APPLICATION_JSON, body=out)

    @app.get("/api/agents/<name>/grants/<principal>", summary="Show one grant", tags=["grants"],
             security=SECURITY, responses=responses(200, "The grant, with the user's e-mail", 403, 404))
    def get_agent_grant(name: AgentName, principal: PrincipalPath) -> GrantOut:
        admin("grant.read", agents.target(name))
        return grants.get_grant(name, principal)

    @app.delete("/api/agents/<name>/grants/<principal>", summary="Remove a grant", tags=["grants"],
                security=SECURITY, responses=responses(200, "The grant removed", 403, 404, 409))
    def delete_agent_grant(name: AgentName, principal: PrincipalPath) -> GrantOut:
        actor = admin("grant.delete", agents.target(name))
        return grants.delete_grant(name, principal, actor=actor, request_id=request_id())

    # -- groups -----------------------------------------------------------------------------------

    @app.get("/api/groups", summary="List groups", tags=["groups"], security=SECURITY,
             responses=responses(200, "A page of groups, by name (system groups included)", 403))
    def list_groups(
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        name_prefix: Annotated[str | None, Query(min_length=1, max_length=128,
                                                 description="Start of the group's name (case-insensitive).")] = None,
    ) -> GroupPage:
        admin("group.read", "group:*")
        return groups.list_page(limit=limit, cursor=cursor, name_prefix=name_prefix)

    @app.post("/api/groups", summary="Create a group", tags=["groups"], security=SECURITY, status_code=201,
              responses=responses(201, "The group, created", 403, 409))
    def create_group(group: Annotated[GroupCreate, Body()]) -> GroupOut:
        principal = admin("group.create", groups.target(group.name))
        return groups.create(group, actor=principal, request_id=request_id())

    @app.get("/api/groups/<name>", summary="Show a group and its grants", tags=["groups"], security=SECURITY,
             responses=responses(200, "The group", 403, 404))
    def get_group(name: GroupNamePath) -> GroupDetail:
        admin("group.read", groups.target(name))
        return groups.detail(name)

    @app.patch("/api/groups/<name>", summary="Change a group's description", tags=["groups"], security=SECURITY,
               description="System groups (all_users) cannot be changed: 409.",
               responses=responses(200, "The group after the change", 403, 404, 409))
    def patch_group(name: GroupNamePath, patch: Annotated[GroupPatch, Body()]) -> GroupOut:
        principal = admin("group.update", groups.target(name))
        return groups.update(name, patch, actor=principal, request_id=request_id())

    @app.delete("/api/groups/<name>", summary="Delete a group", tags=["groups"], security=SECURITY,
                description="Only an empty group without grants can be deleted, and never a system group: 409.",
                responses=responses(200, "The group deleted", 403, 404, 409))
    def delete_group(name: GroupNamePath) -> GroupOut:
        principal = admin("group.delete", groups.target(name))
        return groups.delete(name, actor=principal, request_id=request_id())

    @app.get("/api/groups/<name>/members", summary="List a group's members", tags=["groups"], security=SECURITY,
             responses=responses(200, "A page of members, by user id", 403, 404))
    def list_group_members(name: GroupNamePath, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> MemberPage:
        admin("group.read", groups.target(name))
        return groups.members_page(name, limit=limit, cursor=cursor)

    @app.post("/api/groups/<name>/members", summary="Add a member", tags=["groups"], security=SECURITY,
              status_code=201, description="The user by user_id or by email. Already a member, or a system group: "
                                           "409. Unknown user: 404 (find people with GET /api/users?email=).",
              responses=responses(201, "The membership, created", 403, 404, 409))
    def add_group_member(name: GroupNamePath, member: Annotated[MemberIn, Body()]) -> MemberOut:
        principal = admin("group.member_add", groups.target(name))
        return groups.add_member(name, member, actor=principal, request_id=request_id())

    @app.delete("/api/groups/<name>/members/<user_id>", summary="Remove a member", tags=["groups"],
                security=SECURITY, responses=responses(200, "The membership removed", 403, 404, 409))
    def remove_group_member(name: GroupNamePath, user_id: UserIdPath) -> MemberOut:
        principal = admin("group.member_remove", groups.target(name))
        return groups.remove_member(name, user_id, actor=principal, request_id=request_id())

    # -- users ------------------------------------------------------------------------------------

    @app.get("/api/users", summary="List or search users", tags=["users"], security=SECURITY,
             description="Without filters: every user, by user id. email: the exact address (one lookup). "
                         "email_prefix: the users whose address starts with the prefix (case-insensitive), in "
                         "e-mail order; users without an address never match. Given both, email wins.",
             responses=responses(200, "A page of users", 403))
    def list_users(
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        email: Annotated[str | None, Query(min_length=3, max_length=254, description="Exact e-mail.")] = None,
        email_prefix: Annotated[str | None, Query(min_length=1, max_length=254,
                                                  description="Start of the e-mail address.")] = None,
    ) -> UserPage:
        admin("user.read", "user:*")
        return users.list_page(limit=limit, cursor=cursor, email=email, email_prefix=email_prefix)

    @app.get("/api/users/<user_id>", summary="Show a user and their groups", tags=["users"], security=SECURITY,
             responses=responses(200, "The user", 403, 404))
    def get_user(user_id: UserIdPath) -> UserDetail:
        admin("user.read", users.target(user_id))
        return users.detail(user_id)

    @app.post("/api/users/<user_id>/admin", summary="Grant or revoke admin rights", tags=["users"],
              security=SECURITY,
              description="Admins only. You cannot revoke your own admin rights (409), so the last admin cannot "
                          "be removed over HTTP. The first admin is bootstrapped with the CLI, not over HTTP.",
              responses=responses(200, "The user after the change", 403, 404, 409))
    def set_user_admin(user_id: UserIdPath, flag: Annotated[AdminFlagIn, Body()]) -> UserOut:
        principal = admin("user.grant_admin" if flag.is_admin else "user.revoke_admin", users.target(user_id))
        return users.set_admin(user_id, flag.is_admin, actor=principal, request_id=request_id())

    # -- audit ------------------------------------------------------------------------------------

    @app.get("/api/audit", summary="Read the audit log", tags=["audit"], security=SECURITY,
             description="Newest first. With target: that resource's history (start/end optional). Without: "
                         "a time range of at most 31 days (default: the last 7 days). action and actor filter.",
             responses=responses(200, "A page of audit entries", 403))
    def list_audit(
        target: Annotated[str | None, Query(min_length=1, max_length=200,
                                            description="e.g. agent:meddic, group:sales, user:<id>")] = None,
        action: Annotated[str | None, Query(min_length=1, max_length=64, description="e.g. agent.update")] = None,
        actor: Annotated[str | None, Query(min_length=1, max_length=254, description="E-mail or user id.")] = None,
        start: Annotated[datetime | None, Query(description="ISO 8601; UTC if no offset.")] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; UTC if no offset.")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> AuditPage:
        admin("audit.read", "audit")
        return audit_view.list_page(target=target, start=start, end=end, action=action, actor=actor, limit=limit,
                                    cursor=cursor)

    # -- knowledge --------------------------------------------------------------------------------

    @app.get("/api/knowledge/documents", summary="List the knowledge base's documents", tags=["knowledge"],
             security=SECURITY,
             description="Each document's title, source, ACL, status, chunks, modified time and last error. "
                         "Without source or status: failed documents first, then indexed ones, each by id. acl "
                         "keeps the documents whose ACL holds that exact principal (group:sales is not "
                         "group:sales@example.com). Ingests are in the audit log (action knowledge.ingest).",
             responses=responses(200, "A page of documents", 403))
    def list_knowledge_documents(
        source: Annotated[str | None, Query(min_length=1, max_length=512,  # a key: at most 2,048 bytes
                                            description="e.g. gdrive:<folder id> or local:<path>")] = None,
        status: Annotated[knowledge_listing.Status | None, Query(description="indexed or failed")] = None,
        acl: Annotated[str | None, Query(min_length=1, max_length=320,
                                         description="One principal: anyone, domain:<domain>, user:<e-mail>, "
                                                     "group:<group name> or group:<group e-mail>.")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> knowledge_listing.DocumentPage:
        admin("knowledge.read", "knowledge:*")
        return knowledge_listing.list_documents(source=source, status=status, acl=acl, limit=limit, cursor=cursor)


__all__ = ["register_admin_routes"]
