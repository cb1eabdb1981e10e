"""Agent permission evaluation against DynamoDB (moto) — insightmesh.directory.permissions."""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from insightmesh.observability import get_logger
from tests.helpers import create_dynamodb_table

# env variable -> (table name, key schema, GSIs); exactly the tables of infra/template.yaml.
TABLES: dict[str, tuple[str, list[tuple[str, str]], dict[str, list[tuple[str, str]]]]] = {
    "USERS_TABLE": ("test-users", [("user_id", "HASH")], {"by-email": [("email", "HASH")]}),
    "IDENTITIES_TABLE": ("test-identities", [("identity_key", "HASH")], {"by-user": [("user_id", "HASH")]}),
    "GROUPS_TABLE": ("test-groups", [("name", "HASH")], {}),
    "MEMBERSHIPS_TABLE": ("test-memberships", [("group_name", "HASH"), ("user_id", "RANGE")],
                          {"by-user": [("user_id", "HASH"), ("group_name", "RANGE")]}),
    "AGENTS_TABLE": ("test-agents", [("name", "HASH")], {"by-kind": [("kind", "HASH"), ("name", "RANGE")]}),
    "GRANTS_TABLE": ("test-grants", [("agent_name", "HASH"), ("principal", "RANGE")],
                     {"by-principal": [("principal", "HASH"), ("agent_name", "RANGE")]}),
}
MODULES = ("insightmesh.directory.models", "insightmesh.agents.catalog", "insightmesh.directory.users",
           "insightmesh.directory.permissions")
NOW = datetime(2025, 10, 21, 12, 0, tzinfo=UTC)


def create_tables() -> None:
    client = boto3.client("dynamodb")
    for name, keys, indexes in TABLES.values():
        create_dynamodb_table(client, name, keys, indexes)


def reload_modules() -> SimpleNamespace:
    # pynamodb reads the table names from the environment when the model classes are created.
    loaded = [importlib.reload(importlib.import_module(name)) for name in MODULES]
    return SimpleNamespace(models=loaded[0], catalog=loaded[1], users=loaded[2], permissions=loaded[3])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    for variable, (name, _, _) in TABLES.items():
        monkeypatch.setenv(variable, name)
    with mock_aws():
        create_tables()
        modules = reload_modules()
        assert modules.models.Grant.Meta.table_name == "test-grants"
        yield modules
    monkeypatch.undo()
    reload_modules()  # leave the modules bound to the environment the process started with


class CallLog:
    """DynamoDB operations made through the given models' clients (botocore 'before-call' hook)."""

    def __init__(self, *models: Any) -> None:
        self.operations: list[str] = []
        for model in models:
            client = model._get_connection().connection.client
            client.meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def clear(self) -> None:
        self.operations.clear()


def agent(env: SimpleNamespace, name: str = "meddic", **fields: Any) -> Any:
    return env.catalog.AgentRecord(name, display_name=name.title(), **fields)


def user(env: SimpleNamespace, user_id: str = "u1", **fields: Any) -> Any:
    return env.models.User(user_id, display_name=user_id, **fields)


def grant(env: SimpleNamespace, agent_name: str, principal: str, effect: str = "allow",
          expires_at: datetime | None = None) -> None:
    env.models.Grant(agent_name, principal, effect=effect, expires_at=expires_at, granted_by="admin").save()


def member(env: SimpleNamespace, group: str, user_id: str = "u1") -> None:
    env.models.Membership(group, user_id, added_by="admin").save()


def decide(env: SimpleNamespace, the_agent: Any, the_user: Any) -> tuple[bool, str]:
    decision = env.permissions.evaluate(the_agent, the_user, now=NOW)
    return decision.allowed, decision.reason


# -- rules --------------------------------------------------------------------------------------


def test_a_public_agent_is_allowed(env: SimpleNamespace) -> None:
    assert decide(env, agent(env, is_public=True), user(env)) == (True, "public agent")


def test_a_private_agent_without_grants_is_denied(env: SimpleNamespace) -> None:
    assert decide(env, agent(env), user(env)) == (False, "not granted")


def test_requires_admin_denies_non_admins_even_when_public_or_granted(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1")
    admin_only = agent(env, is_public=True, requires_admin=True)
    assert decide(env, admin_only, user(env)) == (False, "requires an admin")
    assert decide(env, admin_only, user(env, "boss", is_admin=True)) == (True, "public agent")


def test_an_admin_still_needs_the_agent_public_or_granted(env: SimpleNamespace) -> None:
    admin_only = agent(env, requires_admin=True)
    assert decide(env, admin_only, user(env, "boss", is_admin=True)) == (False, "not granted")
    grant(env, "meddic", "user#boss")
    assert decide(env, admin_only, user(env, "boss", is_admin=True)) == (True, "granted to this user")


def test_an_admin_is_subject_to_deny_grants(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#boss", "deny")
    assert decide(env, agent(env, is_public=True), user(env, "boss", is_admin=True)) == (
        False, "denied for this user")


def test_a_user_allow_grant_allows_that_user_only(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")
    assert decide(env, agent(env), user(env, "u2")) == (False, "not granted")
    assert decide(env, agent(env, "other"), user(env)) == (False, "not granted")


def test_a_user_deny_beats_public(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1", "deny")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied for this user")
    assert decide(env, agent(env, is_public=True), user(env, "u2")) == (True, "public agent")


def test_a_group_allow_grant_allows_its_members(env: SimpleNamespace) -> None:
    grant(env, "meddic", "group#sales")
    member(env, "sales", "u1")
    member(env, "support", "u2")
    assert decide(env, agent(env), user(env)) == (True, "granted to group sales")
    assert decide(env, agent(env), user(env, "u2")) == (False, "not granted")


def test_a_group_deny_beats_a_user_allow(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1")
    grant(env, "meddic", "group#sales", "deny")
    grant(env, "meddic", "group#all_users")
    member(env, "sales")
    member(env, "all_users")
    assert decide(env, agent(env), user(env)) == (False, "denied by group sales")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied by group sales")


def test_expired_grants_are_ignored(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1", expires_at=NOW - timedelta(seconds=1))
    grant(env, "meddic", "group#sales", "deny", expires_at=NOW)  # expiry is exclusive of the instant
    member(env, "sales")
    assert decide(env, agent(env), user(env)) == (False, "not granted")
    assert decide(env, agent(env, is_public=True), user(env)) == (True, "public agent")

    grant(env, "meddic", "user#u1", expires_at=NOW + timedelta(days=1))
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")


def test_disabled_deleted_and_missing_agents_are_denied(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env, is_public=True, enabled=False), user(env)) == (False, "the agent is disabled")
    assert decide(env, agent(env, is_public=True, deleted_at=NOW), user(env)) == (False, "the agent was deleted")
    assert decide(env, None, user(env)) == (False, "unknown agent")


def test_an_inactive_user_is_denied(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env, is_public=True), user(env, is_active=False)) == (False, "the user is inactive")


def test_a_decision_is_truthy_only_when_allowed(env: SimpleNamespace) -> None:
    assert env.permissions.evaluate(agent(env, is_public=True), user(env))
    assert not env.permissions.evaluate(agent(env), user(env))


# -- fail closed --------------------------------------------------------------------------------


def capture_logs() -> tuple[io.StringIO, Any]:
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    return stream, previous


def restore_logs(previous: Any) -> None:
    get_logger().registered_handler.setStream(previous)  # type: ignore[attr-defined]


def test_a_missing_grants_table_denies_and_logs(env: SimpleNamespace) -> None:
    boto3.client("dynamodb").delete_table(TableName="test-grants")
    stream, previous = capture_logs()
    try:
        decision = env.permissions.evaluate(agent(env, is_public=True), user(env), now=NOW)
    finally:
        restore_logs(previous)

    assert (decision.allowed, decision.reason) == (False, "the permission check failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["permission check failed; access denied"]
    assert lines[0]["level"] == "ERROR"
    assert lines[0]["agent"] == "meddic"
    assert "ResourceNotFoundException" in lines[0]["exception"]


def test_a_missing_memberships_table_denies(env: SimpleNamespace) -> None:
    grant(env, "meddic", "group#sales")
    boto3.client("dynamodb").delete_table(TableName="test-memberships")
    stream, previous = capture_logs()
    try:
        assert decide(env, agent(env, is_public=True), user(env)) == (False, "the permission check failed")
    finally:
        restore_logs(previous)
    assert "permission check failed; access denied" in stream.getvalue()


def test_an_unreadable_grant_denies(env: SimpleNamespace) -> None:
    # A grant whose expiry is not a date (written by hand, or by a buggy tool).
    boto3.client("dynamodb").put_item(TableName="test-grants", Item={
        "agent_name": {"S": "meddic"}, "principal": {"S": "user#u1"}, "effect": {"S": "allow"},
        "expires_at": {"N": "12"}})
    stream, previous = capture_logs()
    try:
        assert decide(env, agent(env, is_public=True), user(env)) == (False, "the permission check failed")
    finally:
        restore_logs(previous)
    assert "permission check failed; access denied" in stream.getvalue()


def test_an_unknown_effect_counts_as_a_deny(env: SimpleNamespace) -> None:
    grant(env, "meddic", "user#u1", "allow-ish")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied for this user")


# -- a constant number of calls -----------------------------------------------------------------


def test_evaluate_makes_two_queries_whatever_the_number_of_groups_and_grants(env: SimpleNamespace) -> None:
    calls = CallLog(env.models.Grant, env.models.Membership, env.models.User, env.catalog.AgentRecord)
    grant(env, "meddic", "group#g0")
    member(env, "g0")
    calls.clear()
    assert decide(env, agent(env), user(env)) == (True, "granted to group g0")
    assert calls.operations == ["Query", "Query"]

    for n in range(1, 40):
        member(env, f"g{n}")
        grant(env, "meddic", f"group#g{n}")
        grant(env, "meddic", f"user#other{n}", "deny")
        grant(env, "other-agent", f"group#g{n}", "deny")
    grant(env, "meddic", "group#g39", "deny")
    calls.clear()
    assert decide(env, agent(env), user(env)) == (False, "denied by group g39")
    assert calls.operations == ["Query", "Query"]


def test_evaluate_skips_the_memberships_query_when_no_grant_names_a_group(env: SimpleNamespace) -> None:
    calls = CallLog(env.models.Grant, env.models.Membership)
    grant(env, "meddic", "user#u1")
    member(env, "sales")
    calls.clear()
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")
    assert calls.operations == ["Query"]

    calls.clear()
    assert decide(env, agent(env, is_public=True, enabled=False), user(env)) == (False, "the agent is disabled")
    assert calls.operations == []  # decided from the flags alone


# -- agents usable by a user (help listing) -----------------------------------------------------


def test_agents_usable_by_applies_the_same_rules_in_two_calls(env: SimpleNamespace) -> None:
    agents = [
        agent(env, "help", is_public=True),
        agent(env, "meddic"),  # granted to a group of u1
        agent(env, "profile"),  # granted to u1, expired
        agent(env, "research", is_public=True),  # denied to u1 through a group
        agent(env, "admin-tools", is_public=True, requires_admin=True),
        agent(env, "legacy", is_public=True, enabled=False),
        agent(env, "gone", is_public=True, deleted_at=NOW),
        agent(env, "secret"),  # granted to somebody else
        agent(env, "direct"),  # granted to u1
    ]
    member(env, "sales")
    member(env, "contractors")
    grant(env, "meddic", "group#sales")
    grant(env, "profile", "user#u1", expires_at=NOW - timedelta(hours=1))
    grant(env, "research", "group#contractors", "deny")
    grant(env, "secret", "user#u2")
    grant(env, "direct", "user#u1")
    calls = CallLog(env.models.Grant, env.models.Membership)

    usable = env.permissions.agents_usable_by(user(env), agents, now=NOW)

    assert [a.name for a in usable] == ["help", "meddic", "direct"]
    assert calls.operations == ["Query", "BatchGetItem"]
    for candidate in agents:  # the listing agrees with evaluate
        assert env.permissions.evaluate(candidate, user(env), now=NOW).allowed == (candidate in usable)


def test_agents_usable_by_an_inactive_user_is_empty_without_calls(env: SimpleNamespace) -> None:
    calls = CallLog(env.models.Grant, env.models.Membership)
    assert env.permissions.agents_usable_by(user(env, is_active=False), [agent(env, is_public=True)]) == []
    assert calls.operations == []


def test_agents_usable_by_fails_closed(env: SimpleNamespace) -> None:
    boto3.client("dynamodb").delete_table(TableName="test-grants")
    stream, previous = capture_logs()
    try:
        assert env.permissions.agents_usable_by(user(env), [agent(env, is_public=True)]) == []
    finally:
        restore_logs(previous)
    assert "listing usable agents failed; none listed" in stream.getvalue()


def test_grant_principals_name_a_group_or_a_user(env: SimpleNamespace) -> None:
    models: ModuleType = env.models
    assert models.group_principal("sales") == "group#sales"
    assert models.user_principal("u1") == "user#u1"
    assert models.Grant("a", "group#sales").group_name == "sales"
    assert models.Grant("a", "user#u1").group_name is None
