"""Agent permission evaluation against DynamoDB (moto) — insightmesh.directory.permissions."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from insightmesh.agents import catalog
from insightmesh.directory import models, permissions
from insightmesh.observability import get_logger

if TYPE_CHECKING:
    from tests.integration.conftest import DynamoCalls

NOW = datetime(2025, 10, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def env(tables: dict[str, str]) -> dict[str, str]:
    return tables


def agent(env: dict[str, str], name: str = "meddic", **fields: Any) -> Any:
    return catalog.AgentRecord(name, display_name=name.title(), **fields)


def user(env: dict[str, str], user_id: str = "u1", **fields: Any) -> Any:
    return models.User(user_id, display_name=user_id, **fields)


def grant(env: dict[str, str], agent_name: str, principal: str, effect: str = "allow",
          expires_at: datetime | None = None) -> None:
    models.Grant(agent_name, principal, effect=effect, expires_at=expires_at, granted_by="admin").save()


def member(env: dict[str, str], group: str, user_id: str = "u1") -> None:
    models.Membership(group, user_id, added_by="admin").save()


def decide(env: dict[str, str], the_agent: Any, the_user: Any) -> tuple[bool, str]:
    decision = permissions.evaluate(the_agent, the_user, now=NOW)
    return decision.allowed, decision.reason


# -- rules --------------------------------------------------------------------------------------


def test_a_public_agent_is_allowed(env: dict[str, str]) -> None:
    assert decide(env, agent(env, is_public=True), user(env)) == (True, "public agent")


def test_a_private_agent_without_grants_is_denied(env: dict[str, str]) -> None:
    assert decide(env, agent(env), user(env)) == (False, "not granted")


def test_admins_visibility_denies_non_admins_even_when_granted(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1")
    admin_only = agent(env, visibility_setting="admins")
    assert decide(env, admin_only, user(env)) == (False, "requires an admin")
    assert decide(env, admin_only, user(env, "boss", is_admin=True)) == (True, "admins may use it")


def test_restricted_visibility_needs_a_grant_even_for_an_admin(env: dict[str, str]) -> None:
    restricted = agent(env, visibility_setting="restricted")
    assert decide(env, restricted, user(env, "boss", is_admin=True)) == (False, "not granted")
    grant(env, "meddic", "user#boss")
    assert decide(env, restricted, user(env, "boss", is_admin=True)) == (True, "granted to this user")


def test_visibility_is_the_one_source_of_truth_and_legacy_flags_map_onto_it(env: dict[str, str]) -> None:
    # Stale legacy flags never override a stored visibility.
    assert decide(env, agent(env, visibility_setting="restricted", is_public=True), user(env)) == (
        False, "not granted")
    assert decide(env, agent(env, visibility_setting="public", requires_admin=True), user(env)) == (
        True, "public agent")
    # Records written before visibility existed: requires_admin → admins, is_public → public, else restricted.
    assert decide(env, agent(env, is_public=True, requires_admin=True), user(env)) == (False, "requires an admin")
    assert decide(env, agent(env, requires_admin=True), user(env, "boss", is_admin=True)) == (
        True, "admins may use it")
    assert decide(env, agent(env, is_public=True), user(env)) == (True, "public agent")
    assert decide(env, agent(env), user(env)) == (False, "not granted")
    # A value this code does not know fails closed, as restricted.
    assert decide(env, agent(env, visibility_setting="everyone"), user(env)) == (False, "not granted")


def test_an_admin_is_subject_to_deny_grants(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#boss", "deny")
    assert decide(env, agent(env, is_public=True), user(env, "boss", is_admin=True)) == (
        False, "denied for this user")


def test_a_user_allow_grant_allows_that_user_only(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")
    assert decide(env, agent(env), user(env, "u2")) == (False, "not granted")
    assert decide(env, agent(env, "other"), user(env)) == (False, "not granted")


def test_a_user_deny_beats_public(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1", "deny")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied for this user")
    assert decide(env, agent(env, is_public=True), user(env, "u2")) == (True, "public agent")


def test_a_group_allow_grant_allows_its_members(env: dict[str, str]) -> None:
    grant(env, "meddic", "group#sales")
    member(env, "sales", "u1")
    member(env, "support", "u2")
    assert decide(env, agent(env), user(env)) == (True, "granted to group sales")
    assert decide(env, agent(env), user(env, "u2")) == (False, "not granted")


def test_a_group_deny_beats_a_user_allow(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1")
    grant(env, "meddic", "group#sales", "deny")
    grant(env, "meddic", "group#all_users")
    member(env, "sales")
    member(env, "all_users")
    assert decide(env, agent(env), user(env)) == (False, "denied by group sales")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied by group sales")


def test_expired_grants_are_ignored(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1", expires_at=NOW - timedelta(seconds=1))
    grant(env, "meddic", "group#sales", "deny", expires_at=NOW)  # expiry is exclusive of the instant
    member(env, "sales")
    assert decide(env, agent(env), user(env)) == (False, "not granted")
    assert decide(env, agent(env, is_public=True), user(env)) == (True, "public agent")

    grant(env, "meddic", "user#u1", expires_at=NOW + timedelta(days=1))
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")


def test_disabled_deleted_and_missing_agents_are_denied(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env, is_public=True, enabled=False), user(env)) == (False, "the agent is disabled")
    assert decide(env, agent(env, is_public=True, deleted_at=NOW), user(env)) == (False, "the agent was deleted")
    assert decide(env, None, user(env)) == (False, "unknown agent")


def test_an_inactive_user_is_denied(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1")
    assert decide(env, agent(env, is_public=True), user(env, is_active=False)) == (False, "the user is inactive")


def test_a_decision_is_truthy_only_when_allowed(env: dict[str, str]) -> None:
    assert permissions.evaluate(agent(env, is_public=True), user(env))
    assert not permissions.evaluate(agent(env), user(env))


# -- fail closed --------------------------------------------------------------------------------


def capture_logs() -> tuple[io.StringIO, Any]:
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    return stream, previous


def restore_logs(previous: Any) -> None:
    get_logger().registered_handler.setStream(previous)  # type: ignore[attr-defined]


def test_a_missing_grants_table_denies_and_logs(env: dict[str, str]) -> None:
    boto3.client("dynamodb").delete_table(TableName=env["GRANTS_TABLE"])
    stream, previous = capture_logs()
    try:
        decision = permissions.evaluate(agent(env, is_public=True), user(env), now=NOW)
    finally:
        restore_logs(previous)

    assert (decision.allowed, decision.reason) == (False, "the permission check failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["permission check failed; access denied"]
    assert lines[0]["level"] == "ERROR"
    assert lines[0]["agent"] == "meddic"
    assert "ResourceNotFoundException" in lines[0]["exception"]


def test_a_missing_memberships_table_denies(env: dict[str, str]) -> None:
    grant(env, "meddic", "group#sales")
    boto3.client("dynamodb").delete_table(TableName=env["MEMBERSHIPS_TABLE"])
    stream, previous = capture_logs()
    try:
        assert decide(env, agent(env, is_public=True), user(env)) == (False, "the permission check failed")
    finally:
        restore_logs(previous)
    assert "permission check failed; access denied" in stream.getvalue()


def test_an_unreadable_grant_denies(env: dict[str, str]) -> None:
    # A grant whose expiry is not a date (written by hand, or by a buggy tool).
    boto3.client("dynamodb").put_item(TableName=env["GRANTS_TABLE"], Item={
        "agent_name": {"S": "meddic"}, "principal": {"S": "user#u1"}, "effect": {"S": "allow"},
        "expires_at": {"N": "12"}})
    stream, previous = capture_logs()
    try:
        assert decide(env, agent(env, is_public=True), user(env)) == (False, "the permission check failed")
    finally:
        restore_logs(previous)
    assert "permission check failed; access denied" in stream.getvalue()


def test_an_unknown_effect_counts_as_a_deny(env: dict[str, str]) -> None:
    grant(env, "meddic", "user#u1", "allow-ish")
    assert decide(env, agent(env, is_public=True), user(env)) == (False, "denied for this user")


# -- a constant number of calls -----------------------------------------------------------------


def test_evaluate_makes_two_queries_whatever_the_number_of_groups_and_grants(env: dict[str, str],
                                                                            dynamo_calls: DynamoCalls) -> None:
    grant(env, "meddic", "group#g0")
    member(env, "g0")
    calls = dynamo_calls.start()
    assert decide(env, agent(env), user(env)) == (True, "granted to group g0")
    assert calls.operations == ["Query", "Query"]

    for n in range(1, 40):
        member(env, f"g{n}")
        grant(env, "meddic", f"group#g{n}")
        grant(env, "meddic", f"user#other{n}", "deny")
        grant(env, "other-agent", f"group#g{n}", "deny")
    grant(env, "meddic", "group#g39", "deny")
    calls.start()
    assert decide(env, agent(env), user(env)) == (False, "denied by group g39")
    assert calls.operations == ["Query", "Query"]


def test_evaluate_skips_the_memberships_query_when_no_grant_names_a_group(env: dict[str, str],
                                                                          dynamo_calls: DynamoCalls) -> None:
    grant(env, "meddic", "user#u1")
    member(env, "sales")
    calls = dynamo_calls.start()
    assert decide(env, agent(env), user(env)) == (True, "granted to this user")
    assert calls.operations == ["Query"]

    calls.start()
    assert decide(env, agent(env, is_public=True, enabled=False), user(env)) == (False, "the agent is disabled")
    assert calls.operations == []  # decided from the flags alone


# -- agents usable by a user (help listing) -----------------------------------------------------


def test_agents_usable_by_applies_the_same_rules_in_two_calls(env: dict[str, str], dynamo_calls: DynamoCalls) -> None:
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
    calls = dynamo_calls.start()

    usable = permissions.agents_usable_by(user(env), agents, now=NOW)

    assert [a.name for a in usable] == ["help", "meddic", "direct"]
    assert calls.operations == ["Query", "BatchGetItem"]
    for candidate in agents:  # the listing agrees with evaluate
        assert permissions.evaluate(candidate, user(env), now=NOW).allowed == (candidate in usable)


def test_agents_usable_by_an_inactive_user_is_empty_without_calls(env: dict[str, str],
                                                                  dynamo_calls: DynamoCalls) -> None:
    calls = dynamo_calls.start()
    assert permissions.agents_usable_by(user(env, is_active=False), [agent(env, is_public=True)]) == []
    assert calls.operations == []


def test_agents_usable_by_fails_closed(env: dict[str, str]) -> None:
    boto3.client("dynamodb").delete_table(TableName=env["GRANTS_TABLE"])
    stream, previous = capture_logs()
    try:
        assert permissions.agents_usable_by(user(env), [agent(env, is_public=True)]) == []
    finally:
        restore_logs(previous)
    assert "listing usable agents failed; none listed" in stream.getvalue()


def test_grant_principals_name_a_group_or_a_user(env: dict[str, str]) -> None:
    assert models.group_principal("sales") == "group#sales"
    assert models.user_principal("u1") == "user#u1"
    assert models.Grant("a", "group#sales").group_name == "sales"
    assert models.Grant("a", "user#u1").group_name is None
