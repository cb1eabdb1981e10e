"""The admin API end to end: functions/admin_api/handler.py against every table of the template (moto).

Requests are API Gateway HTTP API (payload 2.0) events with ``Authorization: Bearer <API token>``
(tokens issued by insightmesh.auth.tokens), resolved by the real handler.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from insightmesh.admin import agents as admin_agents
from insightmesh.agents.catalog import AgentRecord, get_agent, seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.audit.log import AuditEntry, entry
from insightmesh.auth.login import user_for_claims
from insightmesh.auth.settings import get_auth_settings
from insightmesh.auth.tokens import create_token
from insightmesh.directory.email_users import find_or_create_user_by_email
from insightmesh.directory.models import GROUP_KIND, Grant, Group, Membership, User
from insightmesh.directory.permissions import evaluate
from insightmesh.directory.sync import ProviderUser, sync_users
from insightmesh.directory.users import ensure_system_groups, resolve_slack_user
from insightmesh.slack.profiles import SlackProfile
from tests.integration.conftest import ROOT, DynamoCalls, load_handler
from tests.integration.conftest import save_user as make_user

ADMIN_ID = "u-admin"
ADMIN_EMAIL = "admin@example.com"
MEMBER_ID = "u-member"
MEMBER_EMAIL = "member@example.com"
EVENTS = ROOT / "events" / "admin_api"


@dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str]


class Api:
    def __init__(self, handler: ModuleType, tokens: dict[str, str], http_event: Callable[..., dict[str, Any]]) -> None:
        self.handler = handler
        self.tokens = tokens
        self.http_event = http_event
        self.requests = 0

    def call(self, method: str, path: str, *, as_: str | None = "admin", body: Any = None,
             query: dict[str, str] | None = None, headers: dict[str, str] | None = None,
             token: str | None = None) -> Result:
        self.requests += 1
        event = self.http_event(method, path, token=token or (self.tokens[as_] if as_ else None), body=body,
                           query=query, headers=headers, request_id=f"req-{self.requests}")
        response = self.handler.lambda_handler(event, None)
        raw = response.get("body") or ""
        return Result(response["statusCode"], json.loads(raw) if raw else None, response.get("headers") or {})

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        result = self.call(method, path, **kwargs)
        assert result.status == status, (method, path, result.status, result.body)
        return result.body


_handler: list[ModuleType] = []


def admin_handler() -> ModuleType:
    """functions/admin_api/handler.py, imported once (inside the first test's environment)."""
    if not _handler:
        _handler.append(load_handler())
    return _handler[0]


@pytest.fixture
def api(tables: dict[str, str], http_event: Callable[..., dict[str, Any]]) -> Iterator[Api]:
    get_auth_settings.cache_clear()
    seed_agents(builtin_definitions())
    ensure_system_groups()
    make_user(ADMIN_ID, ADMIN_EMAIL, is_admin=True)
    make_user(MEMBER_ID, MEMBER_EMAIL)
    tokens = {"admin": create_token(ADMIN_ID, name="admin cli", scopes=["admin:read", "admin:write"])[0],
              "member": create_token(MEMBER_ID, name="member cli", scopes=["admin:read", "admin:write"])[0]}
    yield Api(admin_handler(), tokens, http_event)
    get_auth_settings.cache_clear()


def make_agent(name: str, *, is_public: bool = False, is_system: bool = False, aliases: tuple[str, ...] = ()) -> None:
    AgentRecord(name, display_name=name.title(), description=f"The {name} agent", aliases=list(aliases),
                is_public=is_public, is_system=is_system).save()


def audit_entries(target: str) -> list[Any]:
    return list(AuditEntry.query(target, scan_index_forward=False, consistent_read=True))


def latest_audit(target: str) -> Any:
    entries = audit_entries(target)
    assert entries, f"no audit entry for {target}"
    return entries[0]


def assert_envelope(result: Result, status: int, code: str) -> None:
    assert result.status == status, result.body
    assert set(result.body) == {"error"}
    assert result.body["error"]["code"] == code
    assert result.body["error"]["request_id"] == result.headers["X-Request-Id"]
    assert result.body["error"]["message"]


# -- authentication and authorisation ----------------------------------------------------------------

ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/me", None),
    ("GET", "/api/agents", None),
    ("GET", "/api/agents/meddic", None),
    ("PATCH", "/api/agents/meddic", {"version": 1, "description": "x"}),
    ("POST", "/api/agents/meddic/enable", None),
    ("POST", "/api/agents/meddic/disable", None),
    ("DELETE", "/api/agents/meddic", None),
    ("POST", "/api/agents/meddic/restore", None),
    ("GET", "/api/agents/meddic/grants", None),
    ("POST", "/api/agents/meddic/grants", {"principal_type": "group", "principal_id": "all_users"}),
    ("GET", "/api/agents/meddic/grants/group:all_users", None),
    ("DELETE", "/api/agents/meddic/grants/group:all_users", None),
    ("GET", "/api/groups", None),
    ("POST", "/api/groups", {"name": "sales"}),
    ("GET", "/api/groups/all_users", None),
    ("PATCH", "/api/groups/all_users", {"description": "x"}),
    ("DELETE", "/api/groups/all_users", None),
    ("GET", "/api/groups/all_users/members", None),
    ("POST", "/api/groups/all_users/members", {"user_id": MEMBER_ID}),
    ("DELETE", f"/api/groups/all_users/members/{MEMBER_ID}", None),
    ("GET", "/api/users", None),
    ("GET", f"/api/users/{MEMBER_ID}", None),
    ("POST", f"/api/users/{MEMBER_ID}/admin", {"is_admin": True}),
    ("GET", f"/api/users/{MEMBER_ID}/tokens", None),
    ("DELETE", f"/api/users/{MEMBER_ID}/tokens/0123456789abcdef", None),
    ("GET", "/api/audit", None),
    ("GET", "/api/workspaces", None),
    ("GET", "/api/feedback", None),
    ("GET", "/api/eval-cases", None),
    ("POST", "/api/eval-cases", {"question": "where is the office?", "scope": {"user_id": "u-1"}}),
    ("GET", "/api/eval-cases/case-1", None),
    ("PATCH", "/api/eval-cases/case-1", {"active": False}),
    ("DELETE", "/api/eval-cases/case-1", None),
    ("GET", "/api/channels", None),
    ("GET", "/api/channels/C0SETTINGS", None),
    ("PUT", "/api/channels/C0SETTINGS", {"mode": "questions"}),
    ("PATCH", "/api/channels/C0SETTINGS", {"mode": "off"}),
    ("DELETE", "/api/channels/C0SETTINGS", None),
    ("GET", "/api/budgets", None),
    ("PUT", "/api/budgets/agent/meddic", {"limit_usd": 5, "period": "day"}),
    ("DELETE", "/api/budgets/agent/meddic", None),
    ("GET", "/api/knowledge/documents", None),
    ("GET", "/api/knowledge/summary", None),
    ("GET", "/api/readiness", None),
    ("GET", "/api/queues", None),
    ("GET", "/api/usage", None),
    ("GET", "/api/me/usage", None),
    ("GET", "/api/models", None),
    ("PUT", "/api/models/gpt-4o-mini", {"input_usd_per_million": 0.15, "output_usd_per_million": 0.6}),
    ("DELETE", "/api/models/gpt-4o-mini", None),
    ("GET", "/api/me/tokens", None),
    ("DELETE", "/api/me/tokens/0123456789abcdef", None),
    ("GET", "/api/research-runs", None),
    ("GET", "/api/research-runs/0123456789abcdef", None),
    ("GET", "/api/me/research-runs", None),
]
OPEN_TO_MEMBERS = {("GET", "/api/me"), ("GET", "/api/agents"), ("GET", "/api/me/tokens"),
                   ("DELETE", "/api/me/tokens/0123456789abcdef"), ("GET", "/api/me/research-runs"),
                   ("GET", "/api/research-runs/0123456789abcdef"), ("GET", "/api/me/usage")}
ADMIN_ONLY = [route for route in ROUTES if route[:2] not in OPEN_TO_MEMBERS]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_requires_authentication(api: Api, method: str, path: str, body: Any) -> None:
    result = api.call(method, path, as_=None, body=body)
    assert_envelope(result, 401, "unauthorized")
    assert result.headers["WWW-Authenticate"].startswith("Bearer")

    forged = api.call(method, path, as_=None, token="imt_0123456789abcdef_" + "A" * 43, body=body)
    assert_envelope(forged, 401, "unauthorized")


INVALID_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/agents", None, {"limit": "1000"}),
    ("GET", "/api/agents/BAD", None, None),
    ("PATCH", "/api/agents/meddic", {}, None),
    ("POST", "/api/agents/meddic/grants", {"principal_type": "robot"}, None),
    ("DELETE", "/api/agents/meddic/grants/meddic", None, None),
    ("POST", "/api/groups", {"name": "Not A Slug!"}, None),
    ("DELETE", "/api/groups/all_users/members/-bad", None, None),
    ("GET", "/api/users", None, {"cursor": "forged"}),
    ("GET", "/api/audit", None, {"start": "not a date"}),
]


@pytest.mark.parametrize(("method", "path", "body", "query"), INVALID_REQUESTS,
                         ids=[f"{m} {p}" for m, p, _, _ in INVALID_REQUESTS])
def test_an_invalid_request_without_credentials_is_401_and_with_them_422(
    api: Api, method: str, path: str, body: Any, query: dict[str, str] | None
) -> None:
    assert_envelope(api.call(method, path, as_=None, body=body, query=query), 401, "unauthorized")
    invalid = api.call(method, path, as_="admin", body=body, query=query)
    assert_envelope(invalid, 422, "validation_error")
    assert invalid.body["error"]["details"] or "cursor" in str(query)
    member = api.call(method, path, as_="member", body=body, query=query)
    if "cursor" in str(query):  # a well-formed string: the route runs, and refuses the member first
        assert_envelope(member, 403, "forbidden")
    else:
        assert_envelope(member, 422, "validation_error")


@pytest.mark.parametrize(("method", "path", "body", "query"), [
    ("POST", "/api/agents/meddic/grants",
     {"principal_type": "user", "principal_id": MEMBER_ID, "expires_at": "0001-01-01T00:00:00+05:00"}, None),
    ("GET", "/api/audit", None, {"start": "0001-01-01T00:00:00+05:00"}),
    ("GET", "/api/audit", None, {"end": "0001-01-01T00:00:00"}),
    ("GET", "/api/audit", None, {"target": "agent:meddic", "start": "9999-12-31T23:59:59-05:00"}),
    ("POST", "/api/groups", "name=sales", None),
    ("POST", "/api/groups", "[]", None),
    ("POST", "/api/groups", "null", None),
])
def test_edge_values_are_refused_not_crashed_on(
    api: Api, method: str, path: str, body: Any, query: dict[str, str] | None
) -> None:
    assert_envelope(api.call(method, path, body=body, query=query), 422, "validation_error")


def test_nothing_is_written_or_audited_for_an_unauthenticated_request(api: Api) -> None:
    api.call("POST", "/api/groups", as_=None, body={"name": "sales"})
    assert api.call("GET", "/api/groups/sales").status == 404
    assert audit_entries("group:sales") == []


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY, ids=[f"{m} {p}" for m, p, _ in ADMIN_ONLY])
def test_a_member_is_refused_admin_routes_and_the_attempt_is_audited(
    api: Api, method: str, path: str, body: Any
) -> None:
    result = api.call(method, path, as_="member", body=body)

    assert_envelope(result, 403, "forbidden")
    denied = [entry for entry in AuditEntry.by_day.query(datetime.now(UTC).strftime("%Y-%m-%d"))
              if entry.outcome == "denied"]
    assert len(denied) == 1
    entry = denied[0]
    assert (entry.actor, entry.actor_id) == (MEMBER_EMAIL, MEMBER_ID)
    assert entry.reason == "requires an admin"
    assert entry.request_id == result.headers["X-Request-Id"]
    assert entry.before is None and entry.after is None


def test_a_refused_mutation_changes_nothing(api: Api) -> None:
    api.call("PATCH", "/api/agents/meddic", as_="member", body={"version": 1, "description": "hacked"})
    api.call("POST", f"/api/users/{MEMBER_ID}/admin", as_="member", body={"is_admin": True})

    assert api.ok("GET", "/api/agents/meddic")["description"] != "hacked"
    assert api.ok("GET", f"/api/users/{MEMBER_ID}")["is_admin"] is False
    assert [entry.outcome for entry in audit_entries(f"user:{MEMBER_ID}")] == ["denied"]


def test_every_route_needs_the_token_scope_of_its_method(api: Api) -> None:
    read_only = create_token(ADMIN_ID, name="read only", scopes=["admin:read"])[0]
    unscoped = create_token(ADMIN_ID, name="no scope")[0]
    assert api.call("GET", "/api/groups", token=read_only).status == 200
    assert api.call("GET", "/api/me", token=read_only).status == 200
    refused = api.call("POST", "/api/groups", token=read_only, body={"name": "sales"})
    assert refused.status == 403 and "admin:write" in refused.body["error"]["message"]
    assert api.call("GET", "/api/groups/sales").status == 404  # nothing was created
    assert api.call("GET", "/api/me", token=unscoped).status == 403
    assert api.call("GET", "/api/agents", token=unscoped).status == 403
    assert api.call("POST", "/api/groups", body={"name": "sales"}).status == 201  # admin:read and admin:write


def test_me_lists_the_agents_the_caller_may_use(api: Api) -> None:
    make_agent("secret")  # not public, no grant yet
    make_agent("admins", is_public=True)

    AgentRecord.get("admins").update(actions=[AgentRecord.requires_admin.set(True)])

    me = api.ok("GET", "/api/me", as_="member")
    assert (me["user_id"], me["email"], me["is_admin"], me["via"]) == (MEMBER_ID, MEMBER_EMAIL, False, "token")
    assert [agent["name"] for agent in me["agents"]] == ["assistant", "help", "meddic", "profile"]

    api.ok("POST", "/api/agents/secret/grants", 201, body={"principal_type": "user", "principal_id": MEMBER_ID})
    assert [agent["name"] for agent in api.ok("GET", "/api/me", as_="member")["agents"]] == \
        ["assistant", "help", "meddic", "profile", "secret"]
    assert "admins" in [agent["name"] for agent in api.ok("GET", "/api/me")["agents"]]


def test_a_member_lists_only_usable_agents_without_counts(api: Api) -> None:
    make_agent("secret")
    make_agent("gone", is_public=True)
    api.ok("DELETE", "/api/agents/gone")
    api.ok("POST", "/api/agents/meddic/grants", 201, body={"principal_type": "user", "principal_id": MEMBER_ID,
                                                           "effect": "deny"})

    listed = api.ok("GET", "/api/agents", as_="member", query={"include_deleted": "true"})
    assert [agent["name"] for agent in listed["items"]] == ["assistant", "help", "profile"]
    assert all(agent["group_count"] is None and agent["user_count"] is None for agent in listed["items"])

    everything = api.ok("GET", "/api/agents", query={"include_deleted": "true"})
    assert [agent["name"] for agent in everything["items"]] == \
        ["assistant", "gone", "help", "meddic", "profile", "secret"]
    assert [agent["name"] for agent in api.ok("GET", "/api/agents")["items"]] == \
        ["assistant", "help", "meddic", "profile", "secret"]


# -- agents ---------------------------------------------------------------------------------------------


def test_patch_agent_changes_fields_and_is_audited_with_before_and_after(api: Api) -> None:
    before = api.ok("GET", "/api/agents/meddic")
    changed = api.ok("PATCH", "/api/agents/meddic", body={
        "version": before["version"], "display_name": "  Sales coach ", "description": "Coaching.",
        "aliases": ["coach", "sales-coach"]})

    assert (changed["display_name"], changed["description"], changed["aliases"]) == \
        ("Sales coach", "Coaching.", ["coach", "sales-coach"])
    assert changed["version"] == before["version"] + 1
    assert api.ok("GET", "/api/agents/meddic")["aliases"] == ["coach", "sales-coach"]
    entry = latest_audit("agent:meddic")
    assert (entry.action, entry.outcome, entry.actor, entry.actor_id) == \
        ("agent.update", "allowed", ADMIN_EMAIL, ADMIN_ID)
    assert entry.before["display_name"] == "MEDDPICC coach" and entry.before["version"] == before["version"]
    assert entry.after["display_name"] == "Sales coach" and entry.after["version"] == changed["version"]
    assert entry.after == {**changed, "created_at": entry.after["created_at"], "updated_at": entry.after["updated_at"]}


def test_patch_with_a_stale_version_is_a_conflict(api: Api) -> None:
    version = api.ok("GET", "/api/agents/meddic")["version"]
    api.ok("PATCH", "/api/agents/meddic", body={"version": version, "description": "first admin"})

    stale = api.call("PATCH", "/api/agents/meddic", body={"version": version, "description": "second admin"})

    assert_envelope(stale, 409, "conflict")
    assert api.ok("GET", "/api/agents/meddic")["description"] == "first admin"
    assert [entry.after["description"] for entry in audit_entries("agent:meddic")] == ["first admin"]


def test_a_change_between_read_and_write_is_a_conflict_not_an_overwrite(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = admin_agents.require_agent

    def read_then_someone_else_writes(name: str) -> AgentRecord:
        record = read(name)
        AgentRecord.get(name).update(actions=[AgentRecord.description.set("the other admin")])
        return record

    monkeypatch.setattr(admin_agents, "require_agent", read_then_someone_else_writes)
    result = api.call("PATCH", "/api/agents/meddic", body={"version": 1, "description": "mine"})

    assert_envelope(result, 409, "conflict")
    assert AgentRecord.get("meddic").description == "the other admin"
    assert audit_entries("agent:meddic") == []  # the audit entry is in the failed transaction


@pytest.mark.parametrize(("aliases", "owner"), [(["ask"], "assistant"), (["help"], "help"), (["AGENTS"], None)])
def test_an_alias_taken_by_another_agent_is_a_conflict(api: Api, aliases: list[str], owner: str | None) -> None:
    result = api.call("PATCH", "/api/agents/meddic", body={"version": 1, "aliases": aliases})
    if owner is None:  # upper case is not a valid alias at all
        assert_envelope(result, 422, "validation_error")
        return
    assert_envelope(result, 409, "conflict")
    assert owner in result.body["error"]["message"]


def test_aliases_of_deleted_agents_stay_reserved(api: Api) -> None:
    make_agent("old", aliases=("legacy",))
    api.ok("DELETE", "/api/agents/old")
    result = api.call("PATCH", "/api/agents/meddic", body={"version": 1, "aliases": ["legacy"]})
    assert_envelope(result, 409, "conflict")


@pytest.mark.parametrize("body", [
    {"version": 1},  # nothing to change
    {"version": 1, "display_name": "x" * 81},
    {"version": 1, "display_name": "   "},
    {"version": 1, "description": "x" * 501},
    {"version": 1, "aliases": ["bad alias"]},
    {"version": 1, "aliases": ["a" * 41]},
    {"version": 1, "aliases": ["x", "x"]},
    {"version": 1, "aliases": [f"a{n}" for n in range(11)]},
    {"version": 1, "aliases": ["meddic"]},  # its own name
    {"version": 0, "description": "x"},
    {"description": "no version"},
    {"version": 1, "description": "x", "is_admin": True},  # unknown field
])
def test_invalid_agent_patches_are_422(api: Api, body: dict[str, Any]) -> None:
    result = api.call("PATCH", "/api/agents/meddic", body=body)
    assert_envelope(result, 422, "validation_error")
    assert audit_entries("agent:meddic") == []


def test_malformed_json_is_422(api: Api) -> None:
    assert_envelope(api.call("PATCH", "/api/agents/meddic", body="{not json"), 422, "validation_error")


def test_unknown_agents_are_404_and_bad_names_422(api: Api) -> None:
    for method, path in [("GET", "/api/agents/nobody"), ("POST", "/api/agents/nobody/enable"),
                         ("DELETE", "/api/agents/nobody"), ("GET", "/api/agents/nobody/grants")]:
        assert_envelope(api.call(method, path), 404, "not_found")
    assert_envelope(api.call("GET", "/api/agents/Bad_Name"), 422, "validation_error")
    assert_envelope(api.call("GET", "/api/agents/" + "a" * 65), 422, "validation_error")


def test_system_agents_can_be_neither_disabled_nor_deleted(api: Api) -> None:
    for path in ("/api/agents/help/disable", "/api/agents/assistant/disable"):
        assert_envelope(api.call("POST", path), 409, "conflict")
    assert_envelope(api.call("DELETE", "/api/agents/meddic"), 409, "conflict")
    agent = api.ok("GET", "/api/agents/help")
    assert agent["enabled"] is True and agent["deleted"] is False
    # Enabling one is harmless (and audited).
    assert api.ok("POST", "/api/agents/help/enable")["enabled"] is True
    assert latest_audit("agent:help").action == "agent.enable"


def test_disable_enable_soft_delete_and_restore(api: Api) -> None:
    make_agent("research", is_public=True)

    disabled = api.ok("POST", "/api/agents/research/disable")
    assert disabled["enabled"] is False
    assert "research" not in [a["name"] for a in api.ok("GET", "/api/me", as_="member")["agents"]]
    assert api.ok("POST", "/api/agents/research/enable")["enabled"] is True

    deleted = api.ok("DELETE", "/api/agents/research")
    assert deleted["deleted"] is True and deleted["deleted_at"] is not None
    assert "research" not in [a["name"] for a in api.ok("GET", "/api/agents")["items"]]
    assert api.ok("GET", "/api/agents/research")["deleted"] is True  # still there for admins
    assert_envelope(api.call("DELETE", "/api/agents/research"), 409, "conflict")
    assert_envelope(api.call("POST", "/api/agents/research/enable"), 409, "conflict")
    version = api.ok("GET", "/api/agents/research")["version"]
    assert_envelope(api.call("PATCH", "/api/agents/research", body={"version": version, "description": "x"}),
                    409, "conflict")

    restored = api.ok("POST", "/api/agents/research/restore")
    assert restored["deleted"] is False and restored["deleted_at"] is None
    assert_envelope(api.call("POST", "/api/agents/research/restore"), 409, "conflict")
    assert "research" in [a["name"] for a in api.ok("GET", "/api/me", as_="member")["agents"]]

    actions = [(e.action, e.before["enabled"], e.before["deleted"], e.after["enabled"], e.after["deleted"])
               for e in reversed(audit_entries("agent:research"))]
    assert actions == [
        ("agent.disable", True, False, False, False),
        ("agent.enable", False, False, True, False),
        ("agent.delete", True, False, True, True),
        ("agent.restore", True, True, True, False),
    ]


# -- grants ----------------------------------------------------------------------------------------------


def test_grants_create_replace_count_and_remove(api: Api) -> None:
    make_agent("secret")
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})

    created = api.ok("POST", "/api/agents/secret/grants", 201,
                     body={"principal_type": "group", "principal_id": "sales"})
    assert (created["principal"], created["effect"], created["granted_by"]) == ("group:sales", "allow", ADMIN_ID)
    api.ok("POST", "/api/agents/secret/grants", 201, body={"principal_type": "user", "principal_id": MEMBER_ID})
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    replaced = api.ok("POST", "/api/agents/secret/grants", 200, body={
        "principal_type": "group", "principal_id": "sales", "effect": "deny", "expires_at": expires.isoformat()})
    assert replaced["effect"] == "deny" and replaced["created_at"] == created["created_at"]

    detail = api.ok("GET", "/api/agents/secret")
    assert (detail["group_count"], detail["user_count"]) == (1, 1)  # the replacement counted once
    assert sorted(grant["principal"] for grant in detail["grants"]) == ["group:sales", f"user:{MEMBER_ID}"]
    listed = api.ok("GET", "/api/agents")["items"]
    assert [(a["group_count"], a["user_count"]) for a in listed if a["name"] == "secret"] == [(1, 1)]
    group = api.ok("GET", "/api/groups/sales")
    assert [(g["agent_name"], g["effect"]) for g in group["grants"]] == [("secret", "deny")]

    removed = api.ok("DELETE", "/api/agents/secret/grants/group:sales")
    assert removed["principal"] == "group:sales"
    detail = api.ok("GET", "/api/agents/secret")
    assert (detail["group_count"], detail["user_count"]) == (0, 1)
    assert_envelope(api.call("DELETE", "/api/agents/secret/grants/group:sales"), 404, "not_found")

    entries = [(e.action, e.before, e.after) for e in reversed(audit_entries("agent:secret"))]
    assert [action for action, _, _ in entries] == ["grant.put", "grant.put", "grant.put", "grant.delete"]
    assert entries[0][1] is None and entries[0][2]["principal"] == "group:sales"
    assert entries[2][1]["effect"] == "allow" and entries[2][2]["effect"] == "deny"
    assert entries[3][1]["effect"] == "deny" and entries[3][2] is None


def test_grant_validation_and_missing_principals(api: Api) -> None:
    make_agent("secret")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for body in [{"principal_type": "team", "principal_id": "x"},
                 {"principal_type": "group", "principal_id": "Not A Slug"},
                 {"principal_type": "group", "principal_id": "sales", "effect": "maybe"},
                 {"principal_type": "user", "principal_id": MEMBER_ID, "expires_at": past}]:
        assert_envelope(api.call("POST", "/api/agents/secret/grants", body=body), 422, "validation_error")
    assert_envelope(api.call("POST", "/api/agents/secret/grants",
                             body={"principal_type": "group", "principal_id": "nobody"}), 404, "not_found")
    assert_envelope(api.call("POST", "/api/agents/secret/grants",
                             body={"principal_type": "user", "principal_id": "u-nobody"}), 404, "not_found")
    assert_envelope(api.call("DELETE", "/api/agents/secret/grants/group#sales"), 404, "not_found")  # no route
    assert_envelope(api.call("DELETE", "/api/agents/secret/grants/team:sales"), 422, "validation_error")
    assert api.ok("GET", "/api/agents/secret")["group_count"] == 0
    assert audit_entries("agent:secret") == []


def test_a_deleted_agent_takes_no_new_grants(api: Api) -> None:
    make_agent("old")
    api.ok("DELETE", "/api/agents/old")
    result = api.call("POST", "/api/agents/old/grants", body={"principal_type": "user", "principal_id": MEMBER_ID})
    assert_envelope(result, 409, "conflict")


# -- groups and members ------------------------------------------------------------------------------------


def test_group_lifecycle_with_members(api: Api) -> None:
    created = api.ok("POST", "/api/groups", 201, body={"name": "sales", "description": "The sales team"})
    assert created == {**created, "name": "sales", "description": "The sales team", "is_system": False}
    assert_envelope(api.call("POST", "/api/groups", body={"name": "sales"}), 409, "conflict")
    assert_envelope(api.call("POST", "/api/groups", body={"name": "all_users"}), 409, "conflict")

    patched = api.ok("PATCH", "/api/groups/sales", body={"description": "Sales, EMEA"})
    assert patched["description"] == "Sales, EMEA"

    member = api.ok("POST", "/api/groups/sales/members", 201, body={"user_id": MEMBER_ID})
    assert (member["user_id"], member["email"], member["added_by"]) == (MEMBER_ID, MEMBER_EMAIL, ADMIN_ID)
    assert_envelope(api.call("POST", "/api/groups/sales/members", body={"user_id": MEMBER_ID}), 409, "conflict")
    assert_envelope(api.call("POST", "/api/groups/sales/members", body={"user_id": "u-nobody"}), 404, "not_found")
    members = api.ok("GET", "/api/groups/sales/members")
    assert [(m["user_id"], m["display_name"]) for m in members["items"]] == [(MEMBER_ID, MEMBER_ID)]
    assert "sales" in api.ok("GET", f"/api/users/{MEMBER_ID}")["groups"]

    assert_envelope(api.call("DELETE", "/api/groups/sales"), 409, "conflict")  # still has a member
    api.ok("DELETE", f"/api/groups/sales/members/{MEMBER_ID}")
    assert_envelope(api.call("DELETE", f"/api/groups/sales/members/{MEMBER_ID}"), 404, "not_found")

    make_agent("secret")
    api.ok("POST", "/api/agents/secret/grants", 201, body={"principal_type": "group", "principal_id": "sales"})
    assert_envelope(api.call("DELETE", "/api/groups/sales"), 409, "conflict")  # still has a grant
    api.ok("DELETE", "/api/agents/secret/grants/group:sales")

    deleted = api.ok("DELETE", "/api/groups/sales")
    assert deleted["name"] == "sales"
    assert_envelope(api.call("GET", "/api/groups/sales"), 404, "not_found")
    assert [g["name"] for g in api.ok("GET", "/api/groups")["items"]] == ["all_users"]

    entries = [(e.action, e.before, e.after) for e in reversed(audit_entries("group:sales"))]
    assert [action for action, _, _ in entries] == [
        "group.create", "group.update", "group.member_add", "group.member_remove", "group.delete"]
    assert entries[0][1] is None and entries[0][2]["description"] == "The sales team"
    assert (entries[1][1]["description"], entries[1][2]["description"]) == ("The sales team", "Sales, EMEA")
    assert entries[2][2]["user_id"] == MEMBER_ID and entries[3][1]["user_id"] == MEMBER_ID
    assert entries[4][1]["name"] == "sales" and entries[4][2] is None


def test_groups_page_by_name_system_groups_included(api: Api) -> None:
    for name in ("beta", "alpha", "admins"):
        api.ok("POST", "/api/groups", 201, body={"name": name})  # no description
    first = api.ok("GET", "/api/groups", query={"limit": "2"})
    assert [(g["name"], g["is_system"]) for g in first["items"]] == [("admins", False), ("all_users", True)]
    assert first["next_cursor"]
    second = api.ok("GET", "/api/groups", query={"limit": "1", "cursor": first["next_cursor"]})
    third = api.ok("GET", "/api/groups", query={"limit": "5", "cursor": second["next_cursor"]})
    assert [g["name"] for g in second["items"] + third["items"]] == ["alpha", "beta"]
    assert third["next_cursor"] is None
    assert api.ok("PATCH", "/api/groups/alpha", body={"description": "A"})["description"] == "A"
    assert [g["description"] for g in api.ok("GET", "/api/groups")["items"] if g["name"] == "alpha"] == ["A"]


def test_groups_carry_their_kind_and_nothing_is_kept_beside_them(api: Api) -> None:
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    assert {(g.name, g.kind) for g in Group.by_kind.query(GROUP_KIND)} == {("all_users", "group"), ("sales", "group")}
    assert Group.get("all_users").kind == "group"  # ensure_system_groups (the fixture) wrote it
    groups_partitions = {m.group_name for m in Membership.by_user.query("sales")}
    assert groups_partitions == set()  # no registry row beside the group
    api.ok("DELETE", "/api/groups/sales")
    assert [g.name for g in Group.by_kind.query(GROUP_KIND)] == ["all_users"]


def test_a_system_group_written_without_kind_is_given_one(api: Api) -> None:
    boto3.client("dynamodb").update_item(TableName=Group.Meta.table_name, Key={"name": {"S": "all_users"}},
                                         UpdateExpression="REMOVE kind")
    assert [g["name"] for g in api.ok("GET", "/api/groups")["items"]] == []
    assert ensure_system_groups() == []
    group = Group.get("all_users", consistent_read=True)
    assert (group.kind, group.description) == ("group", "Everyone who has talked to the assistant.")
    assert [g["name"] for g in api.ok("GET", "/api/groups")["items"]] == ["all_users"]


def test_all_users_is_protected(api: Api) -> None:
    for method, path, body in [("PATCH", "/api/groups/all_users", {"description": "mine"}),
                               ("DELETE", "/api/groups/all_users", None),
                               ("POST", "/api/groups/all_users/members", {"user_id": MEMBER_ID}),
                               ("DELETE", f"/api/groups/all_users/members/{MEMBER_ID}", None)]:
        assert_envelope(api.call(method, path, body=body), 409, "conflict")
    group = api.ok("GET", "/api/groups/all_users")
    assert group["is_system"] is True and group["description"] == "Everyone who has talked to the assistant."
    assert {m["user_id"] for m in api.ok("GET", "/api/groups/all_users/members")["items"]} == {ADMIN_ID, MEMBER_ID}
    assert audit_entries("group:all_users") == []


@pytest.mark.parametrize("body", [
    {"name": "Sales"}, {"name": "s"}, {"name": "1sales"}, {"name": "sa les"}, {"name": "s" * 41},
    {"name": "sales", "description": "x" * 501}, {"name": "sales", "extra": 1}, {},
])
def test_invalid_groups_are_422(api: Api, body: dict[str, Any]) -> None:
    assert_envelope(api.call("POST", "/api/groups", body=body), 422, "validation_error")


def test_group_paths_are_validated_and_unknown_groups_404(api: Api) -> None:
    assert_envelope(api.call("GET", "/api/groups/NOPE"), 422, "validation_error")
    assert_envelope(api.call("GET", "/api/groups/nope"), 404, "not_found")
    assert_envelope(api.call("GET", "/api/groups/nope/members"), 404, "not_found")
    assert_envelope(api.call("PATCH", "/api/groups/nope", body={"description": "x"}), 404, "not_found")
    assert_envelope(api.call("POST", "/api/groups/nope/members", body={"user_id": MEMBER_ID}), 404, "not_found")


# -- users ---------------------------------------------------------------------------------------------------


def test_users_list_search_and_detail(api: Api) -> None:
    make_user("u-ann", "ann@example.com")
    make_user("u-bob", "bob@example.org")

    assert {u["user_id"] for u in api.ok("GET", "/api/users")["items"]} == {ADMIN_ID, MEMBER_ID, "u-ann", "u-bob"}
    assert [u["user_id"] for u in api.ok("GET", "/api/users", query={"email": "BOB@example.org"})["items"]] == \
        ["u-bob"]
    assert api.ok("GET", "/api/users", query={"email": "nobody@example.org"})["items"] == []
    assert [u["user_id"] for u in api.ok("GET", "/api/users", query={"email_prefix": "an"})["items"]] == ["u-ann"]
    assert [u["user_id"] for u in api.ok("GET", "/api/users", query={"email_prefix": " AN"})["items"]] == ["u-ann"]
    assert api.ok("GET", "/api/users", query={"email_prefix": "anne"})["items"] == []
    detail = api.ok("GET", "/api/users/u-ann")
    assert (detail["email"], detail["is_admin"], detail["groups"]) == ("ann@example.com", False, ["all_users"])
    assert_envelope(api.call("GET", "/api/users/u-nobody"), 404, "not_found")
    assert_envelope(api.call("GET", "/api/users/bad%20id"), 422, "validation_error")


def test_email_prefix_search_is_in_email_order_and_pages_with_a_cursor(api: Api) -> None:
    emails = ["carol@b.example", "alice@a.example", "al@c.example", "alan@z.example", "bob@a.example",
              "alice.smith@a.example", "alex@y.example"]
    for n, email in enumerate(emails):
        make_user(f"u-{n}", email)
    make_user("u-none", None)  # no address: never matches, and is not in the index

    def search(prefix: str, limit: int) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            query = {"email_prefix": prefix, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            page = api.ok("GET", "/api/users", query=query)
            pages.append([user["email"] for user in page["items"]])
            cursor = page["next_cursor"]
            if not cursor:
                return pages

    def found(prefix: str, limit: int) -> list[str]:
        return [email for page in search(prefix, limit) for email in page]

    expected = ["al@c.example", "alan@z.example", "alex@y.example", "alice.smith@a.example", "alice@a.example"]
    assert found("al", 2) == expected
    assert search("al", 2) == [expected[:2], expected[2:4], expected[4:]]
    assert found("AL", 100) == expected
    assert found("ali", 1) == ["alice.smith@a.example", "alice@a.example"]
    assert found("a", 50) == [ADMIN_EMAIL, *expected]
    assert found("b", 50) == ["bob@a.example"]
    assert found("x", 50) == []
    # A cursor belongs to its prefix: replayed with another prefix, or without one, it is a 422.
    cursor = api.ok("GET", "/api/users", query={"email_prefix": "al", "limit": "1"})["next_cursor"]
    assert_envelope(api.call("GET", "/api/users", query={"email_prefix": "ala", "cursor": cursor}),
                    422, "validation_error")
    assert_envelope(api.call("GET", "/api/users", query={"cursor": cursor}), 422, "validation_error")
    for blank in ("", " "):
        assert_envelope(api.call("GET", "/api/users", query={"email_prefix": blank}), 422, "validation_error")


def test_email_prefix_search_is_one_query_on_the_index_whatever_the_number_of_users(
        api: Api, dynamo_calls: DynamoCalls) -> None:
    query = {"email_prefix": "user01", "limit": "5"}
    api.ok("GET", "/api/users", query=query)  # warm: the token's last-use write is once a minute
    # What authenticating an admin costs on the users table: a request that reads no user itself.
    baseline = dynamo_calls.during(lambda: api.call("GET", "/api/groups/nope"))
    many_users(10)
    small = dynamo_calls.during(lambda: api.ok("GET", "/api/users", query=query))
    many_users(300)
    answers: list[Any] = []
    large = dynamo_calls.during(lambda: answers.append(api.ok("GET", "/api/users", query=query)))
    assert small == large
    assert large.count("Query:test-UsersTable") == 1
    assert not any(call.startswith(("Scan:", "BatchGetItem:")) or call.endswith("MembershipsTable")
                   for call in large)
    # Apart from authenticating the caller, that Query is the only call on the users table.
    assert [call for call in large if call.endswith(":test-UsersTable")] == \
        sorted(["Query:test-UsersTable", *(call for call in baseline if call.endswith(":test-UsersTable"))])
    assert [user["email"] for user in answers[0]["items"]] == [f"user{n:04d}@example.com" for n in range(100, 105)]


def test_every_writer_of_a_user_sets_its_email_initial(api: Api) -> None:
    slack = resolve_slack_user("T1", "U1", profile=lambda: SlackProfile(display_name="S", email="Slack@X.example"))
    cli = find_or_create_user_by_email("Cli@X.example", added_by="cli")
    signed_in = user_for_claims("sso@x.example", {"name": "Sso"})
    sync_users("google", [[ProviderUser(provider_user_id="g-1", email="Google@X.example", display_name="G")]],
               run_id="run-1")
    synced = next(User.by_email.query("google@x.example"))
    ids = {user.user_id for user in (slack, cli, signed_in, synced)}
    assert {User.get(user_id).email_initial for user_id in ids} == {"s", "c", "g"}
    found = [user["email"] for user in api.ok("GET", "/api/users", query={"email_prefix": "s"})["items"]]
    assert found == ["slack@x.example", "sso@x.example"]
    # A sync that changes the address moves the user in the index.
    sync_users("google", [[ProviderUser(provider_user_id="g-1", email="hr@x.example", display_name="G")]],
               run_id="run-2")
    assert User.get(synced.user_id).email_initial == "h"
    assert [u["user_id"] for u in api.ok("GET", "/api/users", query={"email_prefix": "g"})["items"]] == []
    assert [u["user_id"] for u in api.ok("GET", "/api/users", query={"email_prefix": "hr@"})["items"]] == \
        [synced.user_id]


def test_admin_rights_granted_and_revoked_but_never_by_oneself(api: Api) -> None:
    granted = api.ok("POST", f"/api/users/{MEMBER_ID}/admin", body={"is_admin": True})
    assert granted["is_admin"] is True
    assert api.ok("GET", "/api/groups", as_="member")["items"]  # the member is an admin now

    self_demotion = api.call("POST", f"/api/users/{ADMIN_ID}/admin", body={"is_admin": False})
    assert_envelope(self_demotion, 409, "conflict")
    assert api.ok("GET", f"/api/users/{ADMIN_ID}")["is_admin"] is True

    api.ok("POST", f"/api/users/{MEMBER_ID}/admin", body={"is_admin": False})
    assert_envelope(api.call("GET", "/api/groups", as_="member"), 403, "forbidden")
    assert_envelope(api.call("POST", "/api/users/u-nobody/admin", body={"is_admin": True}), 404, "not_found")

    entries = [(e.action, e.before["is_admin"], e.after["is_admin"])
               for e in reversed(audit_entries(f"user:{MEMBER_ID}")) if e.outcome == "allowed"]
    assert entries == [("user.grant_admin", False, True), ("user.revoke_admin", True, False)]
    # Secrets never reach the log; e-mail addresses are shortened.
    assert latest_audit(f"user:{MEMBER_ID}").after["email"] == "m***@example.com"


# -- audit ---------------------------------------------------------------------------------------------------


def test_audit_filters(api: Api) -> None:
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    api.ok("POST", "/api/groups", 201, body={"name": "ops"})
    api.ok("POST", "/api/agents/help/enable")
    api.call("GET", "/api/groups", as_="member")  # denied, audited

    everything = api.ok("GET", "/api/audit")["items"]
    assert [e["action"] for e in everything] == ["group.read", "agent.enable", "group.create", "group.create"]
    assert [e["target"] for e in api.ok("GET", "/api/audit", query={"target": "group:ops"})["items"]] == ["group:ops"]
    assert [e["target"] for e in api.ok("GET", "/api/audit", query={"action": "group.create"})["items"]] == \
        ["group:ops", "group:sales"]
    by_member = api.ok("GET", "/api/audit", query={"actor": MEMBER_EMAIL})["items"]
    assert [(e["outcome"], e["actor_id"]) for e in by_member] == [("denied", MEMBER_ID)]
    assert api.ok("GET", "/api/audit", query={"actor": MEMBER_ID})["items"] == by_member
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.ok("GET", "/api/audit", query={"start": future, "end": future})["items"] == []


def test_audit_time_ranges_are_bounded(api: Api) -> None:
    end = datetime.now(UTC)
    too_long = api.call("GET", "/api/audit", query={"start": (end - timedelta(days=32)).isoformat(),
                                                    "end": end.isoformat()})
    assert_envelope(too_long, 422, "validation_error")
    assert_envelope(api.call("GET", "/api/audit", query={"start": end.isoformat(),
                                                         "end": (end - timedelta(days=1)).isoformat()}),
                    422, "validation_error")
    assert_envelope(api.call("GET", "/api/audit", query={"start": "yesterday"}), 422, "validation_error")
    # With a target the history is one partition: any range.
    api.ok("GET", "/api/audit", query={"target": "group:sales", "start": (end - timedelta(days=400)).isoformat()})


def test_audit_pages_through_days_newest_first(api: Api) -> None:
    now = datetime.now(UTC)
    for days_ago in (0, 1, 3):
        for n in range(3):
            item = entry(actor=None, action="test.event", target=f"test:{days_ago}-{n}", request_id="r",
                         at=now - timedelta(days=days_ago, minutes=n))
            item.save(condition=AuditEntry.put_condition())
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "2", "start": (now - timedelta(days=5)).isoformat(), "end": now.isoformat()}
        if cursor:
            query["cursor"] = cursor
        page = api.ok("GET", "/api/audit", query=query)
        seen.extend(e["target"] for e in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [f"test:{d}-{n}" for d in (0, 1, 3) for n in range(3)]
    assert seen == expected
    assert pages >= 5


# -- pagination ------------------------------------------------------------------------------------------------


def many_users(count: int) -> None:
    with Membership.batch_write() as memberships, User.batch_write() as users:
        for n in range(count):
            memberships.save(Membership("all_users", f"u-{n:04d}", added_by="system"))
            users.save(User(f"u-{n:04d}", email=f"user{n:04d}@example.com", display_name=f"User {n}", version=1))


def test_pagination_default_cap_and_cursor_round_trip(api: Api) -> None:
    many_users(150)  # + the admin and the member

    first = api.ok("GET", "/api/users")
    assert len(first["items"]) == 50 and first["next_cursor"]
    assert len(api.ok("GET", "/api/users", query={"limit": "100"})["items"]) == 100
    for limit in ("101", "0", "-1", "many"):
        assert_envelope(api.call("GET", "/api/users", query={"limit": limit}), 422, "validation_error")

    seen: list[str] = []
    cursor = None
    while True:
        page = api.ok("GET", "/api/users", query={"limit": "40", **({"cursor": cursor} if cursor else {})})
        seen.extend(user["user_id"] for user in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 152


def test_tampered_and_foreign_cursors_are_422(api: Api) -> None:
    many_users(60)
    cursor = api.ok("GET", "/api/users")["next_cursor"]
    payload, mac = cursor.split(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    for bad in (f"{forged_payload}.{mac}", f"{payload}.{mac[:-1]}x", "garbage", "a.b", "." * 3, "x" * 3000):
        result = api.call("GET", "/api/users", query={"cursor": bad})
        assert_envelope(result, 422, "validation_error")
    # A valid cursor of one list is refused by another (and by the same list with other filters).
    assert_envelope(api.call("GET", "/api/groups/all_users/members", query={"cursor": cursor}), 422, "validation_error")
    assert_envelope(api.call("GET", "/api/users", query={"cursor": cursor, "email_prefix": "user"}),
                    422, "validation_error")
    assert api.ok("GET", "/api/users", query={"cursor": cursor})["items"]


LISTS: list[tuple[str, dict[str, str], str]] = [
    ("/api/agents", {}, "admin"),
    ("/api/agents", {}, "member"),
    ("/api/users", {}, "admin"),
    ("/api/users", {"email_prefix": "user00"}, "admin"),
    ("/api/groups", {}, "admin"),
    ("/api/groups/crowd/members", {}, "admin"),
    ("/api/agents/popular/grants", {}, "admin"),
    ("/api/audit", {"target": "agent:popular"}, "admin"),
    ("/api/audit", {"start": "TODAY"}, "admin"),
]


def add_records(start: int, stop: int) -> None:
    """Agents, users (in group crowd), groups, grants on agent popular and audit entries."""
    with AgentRecord.batch_write() as agents, Group.batch_write() as groups, Grant.batch_write() as grants, \
            Membership.batch_write() as memberships, User.batch_write() as users, \
            AuditEntry.batch_write() as audit:
        for n in range(start, stop):
            agents.save(AgentRecord(f"agent-{n:04d}", is_public=True, version=1))
            groups.save(Group(f"group-{n:04d}"))
            users.save(User(f"u-{n:04d}", email=f"user{n:04d}@example.com", version=1))
            memberships.save(Membership("all_users", f"u-{n:04d}"))
            memberships.save(Membership("crowd", f"u-{n:04d}"))
            grants.save(Grant("popular", f"user#u-{n:04d}"))
            audit.save(entry(actor=None, action="test.event", target="agent:popular", request_id="r"))


def test_list_endpoints_make_the_same_calls_for_10_and_150_records(api: Api, dynamo_calls: DynamoCalls) -> None:
    make_agent("popular")
    api.ok("POST", "/api/groups", 201, body={"name": "crowd"})
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).isoformat()

    def measure() -> dict[str, tuple[list[str], int]]:
        found = {}
        for path, query, who in LISTS:
            query = {key: today if value == "TODAY" else value for key, value in query.items()}
            api.ok("GET", path, query=query, as_=who)  # warm: the token's last-use write is once a minute
            answers: list[Any] = []
            calls = dynamo_calls.during(
                lambda path=path, query=query, who=who, answers=answers: answers.append(
                    api.ok("GET", path, query=query, as_=who)))
            found[f"{who} {path} {query}"] = (calls, len(answers[0]["items"]))
        return found

    add_records(0, 10)
    small = measure()
    add_records(10, 150)
    large = measure()

    for name in small:
        assert small[name][0] == large[name][0], name
        assert small[name][0], name
    assert all(not any(call.startswith("Scan:") for call in calls) for calls, _ in large.values())
    users_calls = large["admin /api/users {}"][0]
    assert (users_calls.count("Query:test-MembershipsTable"), users_calls.count("BatchGetItem:-")) == (1, 1)
    assert large["admin /api/agents {}"][0].count("Query:test-AgentsTable") == 1
    groups_calls = large["admin /api/groups {}"][0]
    assert groups_calls.count("Query:test-GroupsTable") == 1
    assert not any(call.startswith("BatchGetItem:") or call.endswith(":test-MembershipsTable") for call in groups_calls)
    prefix_calls = large["admin /api/users {'email_prefix': 'user00'}"][0]
    assert prefix_calls.count("Query:test-UsersTable") == 1
    assert not any(call.startswith("BatchGetItem:") or call.endswith(":test-MembershipsTable") for call in prefix_calls)
    assert large["admin /api/agents {}"][0].count("Query:test-GrantsTable") == 0  # counters, not grants
    sizes = {name: (small[name][1], large[name][1]) for name in small}
    assert sizes["admin /api/agents {}"] == (11 + 4, 50)  # the built-ins and popular, then a full page
    assert sizes["admin /api/users {}"] == (12, 50)
    assert sizes["admin /api/users {'email_prefix': 'user00'}"] == (10, 50)
    assert sizes["admin /api/groups {}"] == (12, 50)  # all_users, crowd and the groups added
    assert sizes["admin /api/groups/crowd/members {}"] == (10, 50)
    assert sizes["admin /api/agents/popular/grants {}"] == (10, 50)
    assert sizes["admin /api/audit {'target': 'agent:popular'}"] == (10, 50)


def test_a_time_range_costs_at_most_one_query_per_day(api: Api, dynamo_calls: DynamoCalls) -> None:
    end = datetime.now(UTC)
    query = {"start": (end - timedelta(days=2)).isoformat(), "end": end.isoformat()}
    api.ok("GET", "/api/audit", query=query)
    calls = dynamo_calls.during(lambda: api.ok("GET", "/api/audit", query=query))
    audit_table = next(name for name in {call.split(":")[1] for call in calls} if "Audit" in name)
    assert calls.count(f"Query:{audit_table}") == 3  # three empty days: one Query each


# -- the OpenAPI document and the sample events ---------------------------------------------------------------


def test_the_openapi_document_is_complete(api: Api) -> None:
    doc = api.ok("GET", "/api/openapi.json", as_=None)

    assert doc["openapi"].startswith("3.1")
    assert "at most 100" in doc["info"]["description"]
    assert set(doc["components"]["securitySchemes"]) >= {"bearerAuth", "sessionCookie"}
    operations = {(method.upper(), path.replace("{", "<").replace("}", ">")): operation
                  for path, item in doc["paths"].items() for method, operation in item.items()}
    routes = {(method, path) for method, path, _ in ROUTES}
    documented = set()
    for method, concrete in routes:
        match = [key for key in operations if key[0] == method and _matches(key[1], concrete)]
        assert len(match) == 1, (method, concrete, match)
        documented.add(match[0])
    assert documented == {key for key in operations if key[1].startswith("/api/")}, "undocumented extra routes"
    for (method, path), operation in operations.items():
        if not path.startswith("/api/"):
            continue
        responses = operation["responses"]
        open_to_members = {("GET", "/api/me"), ("GET", "/api/agents"), ("GET", "/api/me/tokens"),
                           ("DELETE", "/api/me/tokens/<token_id>")}
        errors = {401, 422, 429} | ({403} if (method, path) not in open_to_members else set())
        for status in errors:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
        success = [status for status in responses if status.startswith("2")]
        assert success, (method, path)
        assert operation["security"] and operation["summary"] and operation["tags"]
        for parameter in operation.get("parameters", []):
            assert parameter["schema"], (method, path, parameter)
    assert operations[("GET", "/api/users")]["parameters"]
    limit = next(p for p in operations[("GET", "/api/users")]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100 and limit["schema"]["default"] == 50
    assert "ErrorResponse" in doc["components"]["schemas"]


def _matches(template: str, concrete: str) -> bool:
    left, right = template.split("/"), concrete.split("/")
    return len(left) == len(right) and all(a == b or a.startswith("<") for a, b in zip(left, right, strict=True))


def sample_events() -> list[Path]:
    return sorted(EVENTS.glob("*.json"))


@pytest.mark.parametrize("sample", sample_events(), ids=lambda path: path.stem)
def test_sample_events_are_real_shaped_and_resolve(api: Api, sample: Path) -> None:
    event = json.loads(sample.read_text())
    reference = json.loads((ROOT / "events" / "health" / "live.json").read_text())
    assert set(reference) - {"body"} <= set(event)
    assert set(reference["requestContext"]) <= set(event["requestContext"])
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /api/{proxy+}"
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/api/" + event["pathParameters"]["proxy"]
    response = api.handler.lambda_handler(event, None)
    # The samples carry a well-formed token that no table knows: every protected route says 401.
    expected = 200 if event["rawPath"] == "/api/openapi.json" else 401
    assert response["statusCode"] == expected, response["body"]


# -- agent visibility, grants that change nothing, people by e-mail (issue 12) --------------------------


def test_visibility_is_shown_patched_with_the_version_check_and_audited(api: Api) -> None:
    meddic = api.ok("GET", "/api/agents/meddic")
    assert meddic["visibility"] == "public" and "is_public" not in meddic and "requires_admin" not in meddic
    assert "meddic" in [agent["name"] for agent in api.ok("GET", "/api/me", as_="member")["agents"]]

    changed = api.ok("PATCH", "/api/agents/meddic", body={"version": meddic["version"], "visibility": "restricted"})

    assert (changed["visibility"], changed["version"]) == ("restricted", meddic["version"] + 1)
    entry = latest_audit("agent:meddic")
    assert (entry.action, entry.before["visibility"], entry.after["visibility"]) == \
        ("agent.update", "public", "restricted")
    assert "meddic" not in [agent["name"] for agent in api.ok("GET", "/api/me", as_="member")["agents"]]
    assert "meddic" not in [agent["name"] for agent in api.ok("GET", "/api/agents", as_="member")["items"]]
    stale = api.call("PATCH", "/api/agents/meddic", body={"version": meddic["version"], "visibility": "public"})
    assert_envelope(stale, 409, "conflict")
    assert api.ok("GET", "/api/agents/meddic")["visibility"] == "restricted"
    assert_envelope(api.call("PATCH", "/api/agents/meddic", body={"version": changed["version"],
                                                                   "visibility": "everyone"}), 422, "validation_error")


def test_the_replaced_flags_in_a_patch_say_what_to_send_instead(api: Api) -> None:
    result = api.call("PATCH", "/api/agents/meddic", body={"version": 1, "is_public": False})
    assert_envelope(result, 422, "validation_error")
    assert "is_public is replaced by visibility" in json.dumps(result.body)


def test_system_agents_can_be_restricted_but_help_stays_public(api: Api) -> None:
    assistant = api.ok("GET", "/api/agents/assistant")
    assert api.ok("PATCH", "/api/agents/assistant", body={"version": assistant["version"],
                                                          "visibility": "admins"})["visibility"] == "admins"
    help_agent = api.ok("GET", "/api/agents/help")
    for visibility in ("restricted", "admins"):
        refused = api.call("PATCH", "/api/agents/help", body={"version": help_agent["version"],
                                                              "visibility": visibility})
        assert_envelope(refused, 409, "conflict")
        assert "help must stay public" in refused.body["error"]["message"]
    denied = api.call("POST", "/api/agents/help/grants", body={"principal_type": "group", "principal_id": "all_users",
                                                               "effect": "deny"})
    assert_envelope(denied, 409, "conflict")
    assert "cannot be denied" in denied.body["error"]["message"]
    assert api.ok("GET", "/api/agents/help")["visibility"] == "public"
    assert "help" in [agent["name"] for agent in api.ok("GET", "/api/me", as_="member")["agents"]]
    assert [entry.outcome for entry in audit_entries("agent:help")] == []


def test_restricting_an_agent_to_a_group_named_by_e_mail(api: Api) -> None:
    make_user("u-outsider", "outsider@example.com")
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    added = api.ok("POST", "/api/groups/sales/members", 201, body={"email": " Member@Example.com "})
    assert (added["user_id"], added["email"]) == (MEMBER_ID, MEMBER_EMAIL)
    again = api.call("POST", "/api/groups/sales/members", body={"email": MEMBER_EMAIL})
    assert_envelope(again, 409, "conflict")
    assert MEMBER_EMAIL in again.body["error"]["message"]
    version = api.ok("GET", "/api/agents/meddic")["version"]
    api.ok("PATCH", "/api/agents/meddic", body={"version": version, "visibility": "restricted"})
    api.ok("POST", "/api/agents/meddic/grants", 201, body={"principal_type": "group", "principal_id": "sales"})

    meddic = get_agent("meddic")
    assert evaluate(meddic, User.get(MEMBER_ID)).reason == "granted to group sales"
    assert evaluate(meddic, User.get("u-outsider")) == evaluate(meddic, User.get(ADMIN_ID))
    assert not evaluate(meddic, User.get("u-outsider")).allowed

    by_email = api.ok("POST", "/api/agents/meddic/grants", 201, body={"email": "outsider@example.com"})
    assert (by_email["principal"], by_email["effect"]) == ("user:u-outsider", "allow")
    assert evaluate(get_agent("meddic"), User.get("u-outsider")).reason == "granted to this user"
    denied = api.ok("POST", "/api/agents/meddic/grants", 200, body={"user_id": "u-outsider", "effect": "deny"})
    assert denied["effect"] == "deny"
    assert not evaluate(get_agent("meddic"), User.get("u-outsider")).allowed


def test_grants_that_would_change_nothing_are_refused_saying_what_to_do(api: Api) -> None:
    make_agent("ops")

    AgentRecord.get("ops").update(actions=AgentRecord.visibility_actions("admins"))
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    before = api.ok("GET", "/api/agents/meddic")

    public = api.call("POST", "/api/agents/meddic/grants", body={"principal_type": "group", "principal_id": "sales"})
    assert_envelope(public, 409, "conflict")
    assert public.body["error"]["message"].startswith(
        "meddic is public: set visibility to restricted to limit it to grants")
    admins = api.call("POST", "/api/agents/ops/grants", body={"email": MEMBER_EMAIL})
    assert_envelope(admins, 409, "conflict")
    assert admins.body["error"]["message"].startswith("ops is for admins only: set visibility to restricted")

    # A deny on a public agent does change something; the same grant twice does not.
    deny = {"principal_type": "group", "principal_id": "sales", "effect": "deny"}
    api.ok("POST", "/api/agents/meddic/grants", 201, body=deny)
    duplicate = api.call("POST", "/api/agents/meddic/grants", body=deny)
    assert_envelope(duplicate, 409, "conflict")
    assert "group:sales already has this deny grant on meddic" in duplicate.body["error"]["message"]
    assert "DELETE /api/agents/meddic/grants/group:sales" in duplicate.body["error"]["message"]
    expiring = {**deny, "expires_at": (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()}
    api.ok("POST", "/api/agents/meddic/grants", 200, body=expiring)
    assert_envelope(api.call("POST", "/api/agents/meddic/grants", body=expiring), 409, "conflict")

    after = api.ok("GET", "/api/agents/meddic")
    assert (after["group_count"], after["user_count"]) == (1, 0)
    assert after["visibility"] == before["visibility"] == "public"
    assert [entry.action for entry in audit_entries("agent:meddic")] == ["grant.put", "grant.put"]
    assert audit_entries("agent:ops") == []


def test_an_unknown_person_is_a_404_that_says_how_to_find_one(api: Api) -> None:
    make_agent("secret")
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    for path, body in [("/api/groups/sales/members", {"email": "nobody@example.com"}),
                       ("/api/groups/sales/members", {"user_id": "u-nobody"}),
                       ("/api/agents/secret/grants", {"email": "nobody@example.com"}),
                       ("/api/agents/secret/grants", {"user_id": "u-nobody"}),
                       ("/api/agents/secret/grants", {"principal_type": "user", "principal_id": "u-nobody"})]:
        result = api.call("POST", path, body=body)
        assert_envelope(result, 404, "not_found")
        assert "GET /api/users?email=" in result.body["error"]["message"], (path, body)
    assert api.ok("GET", "/api/groups/sales/members")["items"] == []
    assert api.ok("GET", "/api/agents/secret")["user_count"] == 0


@pytest.mark.parametrize(("path", "body"), [
    ("/api/groups/sales/members", {}),
    ("/api/groups/sales/members", {"user_id": MEMBER_ID, "email": MEMBER_EMAIL}),
    ("/api/groups/sales/members", {"email": "not-an-address"}),
    ("/api/agents/secret/grants", {"effect": "allow"}),
    ("/api/agents/secret/grants", {"email": MEMBER_EMAIL, "user_id": MEMBER_ID}),
    ("/api/agents/secret/grants", {"principal_type": "group", "email": MEMBER_EMAIL}),
    ("/api/agents/secret/grants", {"principal_id": "sales"}),
    ("/api/agents/secret/grants", {"email": "two@at@signs and spaces"}),
])
def test_a_person_is_named_exactly_once_by_a_valid_id_or_address(api: Api, path: str, body: Any) -> None:
    make_agent("secret")
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    assert_envelope(api.call("POST", path, body=body), 422, "validation_error")


def test_the_openapi_document_shows_visibility_and_e_mail(api: Api) -> None:
    schemas = api.ok("GET", "/api/openapi.json", as_=None)["components"]["schemas"]
    assert set(schemas["AgentOut"]["properties"]["visibility"]["enum"]) == {"public", "admins", "restricted"}
    assert "visibility" in schemas["AgentPatch"]["properties"]
    assert {"email", "user_id"} <= set(schemas["MemberIn"]["properties"])
    assert {"email", "user_id", "principal_type", "principal_id"} <= set(schemas["GrantIn"]["properties"])
    assert "GET /api/users?email=" in schemas["MemberIn"]["properties"]["email"]["description"]


def test_records_that_predate_visibility_are_served_and_migrated_by_seeding(api: Api) -> None:
    # meddic as the code before visibility stored it, not public; and an admin-only legacy agent.
    AgentRecord.get("meddic").delete()
    AgentRecord("meddic", display_name="MEDDPICC coach", is_system=True, is_public=False).save()
    AgentRecord("ops", display_name="Ops", is_public=True, requires_admin=True).save()
    assert api.ok("GET", "/api/agents/meddic")["visibility"] == "restricted"
    assert api.ok("GET", "/api/agents/ops")["visibility"] == "admins"

    report = seed_agents(builtin_definitions())

    assert sorted(report.migrated) == ["meddic", "ops"]
    assert AgentRecord.get("meddic").visibility_setting == "restricted"  # not the definition's public
    assert AgentRecord.get("ops").visibility_setting == "admins"
    assert "meddic" not in [agent["name"] for agent in api.ok("GET", "/api/me", as_="member")["agents"]]


def test_an_address_sent_as_a_user_id_is_told_to_send_email(api: Api) -> None:
    make_agent("secret")
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    for path, body in [("/api/groups/sales/members", {"user_id": MEMBER_EMAIL}),
                       ("/api/agents/secret/grants", {"principal_type": "user", "principal_id": MEMBER_EMAIL})]:
        result = api.call("POST", path, body=body)
        assert_envelope(result, 404, "not_found")
        assert f'send {{"email": "{MEMBER_EMAIL}"}}' in result.body["error"]["message"], result.body
