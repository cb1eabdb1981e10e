"""Slack users resolved to directory users against DynamoDB (moto) — insightmesh.directory.users."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

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
        assert modules.models.User.Meta.table_name == "test-users"
        yield modules
    monkeypatch.undo()
    reload_modules()  # leave the modules bound to the environment the process started with


def items(table: str) -> list[dict[str, Any]]:
    """Every item of a table (a test may scan; the code under test never does)."""
    return boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]


def item_counts() -> dict[str, int]:
    return {name: len(items(name)) for name in ("test-users", "test-identities", "test-memberships", "test-groups")}


class Profile:
    """A profile fetcher that counts its calls."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.profile


def alice(env: SimpleNamespace) -> Profile:
    return Profile(env.users.SlackProfile(display_name="alice", real_name="Alice Liddell",
                                          email=" Alice@Example.COM ", is_bot=False))


# -- first and later contacts -------------------------------------------------------------------


def test_first_contact_creates_the_user_its_identity_and_all_users_membership(env: SimpleNamespace) -> None:
    profile = alice(env)
    user = env.users.resolve_slack_user("T1", "U1", profile=profile)

    assert profile.calls == 1
    stored = env.models.User.get(user.user_id)
    assert stored.display_name == "alice"
    assert stored.real_name == "Alice Liddell"
    assert stored.email == "alice@example.com"
    assert stored.is_active is True
    assert stored.is_admin is False
    assert stored.is_bot is False
    assert stored.primary_provider == "slack"
    assert stored.slack_ids == {"T1": "U1"}
    assert stored.last_synced_at is not None
    assert stored.created_at is not None
    assert stored.version == 1

    identity = env.models.Identity.get("slack#T1:U1")
    assert identity.user_id == user.user_id
    assert identity.provider_type == "slack"
    assert identity.provider_user_id == "T1:U1"
    assert identity.provider_email == "alice@example.com"
    assert identity.is_primary is True
    assert identity.is_active is True

    membership = env.models.Membership.get("all_users", user.user_id)
    assert membership.added_by == "system"
    assert item_counts() == {"test-users": 1, "test-identities": 1, "test-memberships": 1, "test-groups": 0}


def test_the_stored_map_and_indexes_are_queryable(env: SimpleNamespace) -> None:
    user = env.users.resolve_slack_user("T1", "U1", profile=alice(env))

    raw = items("test-users")[0]
    assert raw["slack_ids"] == {"M": {"T1": {"S": "U1"}}}
    assert [u.user_id for u in env.models.User.by_email.query("alice@example.com")] == [user.user_id]
    assert [i.identity_key for i in env.models.Identity.by_user.query(user.user_id)] == ["slack#T1:U1"]
    assert [m.group_name for m in env.models.Membership.by_user.query(user.user_id)] == ["all_users"]


def test_a_later_contact_returns_the_same_user_with_two_reads_and_no_writes(env: SimpleNamespace) -> None:
    first = env.users.resolve_slack_user("T1", "U1", profile=alice(env))
    before = item_counts()
    operations: list[str] = []
    for model in (env.models.User, env.models.Identity, env.models.Membership):
        model._get_connection().connection.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: operations.append(model.name))

    profile = alice(env)
    again = env.users.resolve_slack_user("T1", "U1", profile=profile)

    assert again.user_id == first.user_id
    assert profile.calls == 0  # Slack is not asked about a known user
    assert operations == ["GetItem", "GetItem"]
    assert item_counts() == before


def test_the_same_slack_user_id_in_another_workspace_is_another_identity(env: SimpleNamespace) -> None:
    one = env.users.resolve_slack_user("T1", "U1")
    other = env.users.resolve_slack_user("T2", "U1")
    assert one.user_id != other.user_id
    assert item_counts()["test-identities"] == 2


def test_without_a_profile_the_slack_id_is_the_display_name(env: SimpleNamespace) -> None:
    user = env.users.resolve_slack_user("T1", "U9", profile=Profile(None))
    stored = env.models.User.get(user.user_id)
    assert stored.display_name == "U9"
    assert stored.real_name is None
    assert stored.email is None  # unset, so the by-email index stays sparse
    assert stored.last_synced_at is None
    assert "email" not in items("test-users")[0]
    assert env.users.resolve_slack_user("T1", "U10").display_name == "U10"  # no fetcher at all


def test_a_bot_profile_is_recorded(env: SimpleNamespace) -> None:
    profile = Profile(env.users.SlackProfile(real_name="Deploy Bot", email="", is_bot=True))
    user = env.users.resolve_slack_user("T1", "B1", profile=profile)
    stored = env.models.User.get(user.user_id)
    assert stored.is_bot is True
    assert stored.display_name == "Deploy Bot"  # real name when there is no display name
    assert stored.email is None  # a blank e-mail is not stored


def test_missing_ids_are_refused(env: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="required"):
        env.users.resolve_slack_user("", "U1")


# -- concurrent first contacts ------------------------------------------------------------------


@pytest.fixture
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB evaluates a conditional put atomically; moto's in-process backend checks then
    writes without a lock, so concurrent threads get the real guarantee through this lock."""
    original = DynamoDBBackend.put_item
    lock = threading.Lock()

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "put_item", put_item)


@pytest.mark.usefixtures("atomic_moto_writes")
def test_eight_concurrent_first_contacts_create_exactly_one_user(env: SimpleNamespace) -> None:
    start = threading.Barrier(8)
    profile = alice(env)

    def contact() -> str:
        start.wait(timeout=30)
        return str(env.users.resolve_slack_user("T1", "U1", profile=profile).user_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(contact) for _ in range(8)]
        results = [future.result(timeout=60) for future in futures]  # re-raises a thread's error

    assert len(results) == 8
    assert len(set(results)) == 1
    assert item_counts() == {"test-users": 1, "test-identities": 1, "test-memberships": 1, "test-groups": 0}
    assert items("test-users")[0]["user_id"] == {"S": results[0]}


def test_the_loser_of_a_first_contact_race_returns_the_winners_user(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = env.users.resolve_slack_user("T1", "U1", profile=alice(env))
    # The loser's first read happened before the winner's write: it saw no identity.
    real_get_identity = env.users._get_identity
    monkeypatch.setattr(env.users, "_get_identity",
                        lambda key, *, consistent: real_get_identity(key, consistent=True) if consistent else None)
    profile = alice(env)

    loser = env.users.resolve_slack_user("T1", "U1", profile=profile)

    assert loser.user_id == winner.user_id
    assert profile.calls == 1  # it did prepare a user before its conditional write failed
    assert item_counts() == {"test-users": 1, "test-identities": 1, "test-memberships": 1, "test-groups": 0}


def test_an_identity_without_its_user_is_completed_by_the_next_contact(env: SimpleNamespace) -> None:
    # The first contact wrote the identity, then stopped (crash, timeout) before the user.
    env.models.Identity("slack#T1:U1", provider_type="slack", provider_user_id="T1:U1", user_id="fixed-id",
                        is_primary=True).save()
    profile = alice(env)

    user = env.users.resolve_slack_user("T1", "U1", profile=profile)

    assert user.user_id == "fixed-id"
    assert profile.calls == 1
    assert env.models.User.get("fixed-id").display_name == "alice"
    assert env.models.Membership.get("all_users", "fixed-id").added_by == "system"
    assert item_counts() == {"test-users": 1, "test-identities": 1, "test-memberships": 1, "test-groups": 0}


def test_a_user_written_concurrently_with_the_repair_is_kept(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.models.Identity("slack#T1:U1", provider_type="slack", provider_user_id="T1:U1", user_id="fixed-id").save()
    env.models.User("fixed-id", display_name="written by the winner").save()
    # This contact's read of the user happened before the winner's write.
    real_get_user = env.users._get_user
    monkeypatch.setattr(env.users, "_get_user",
                        lambda user_id, *, consistent: real_get_user(user_id, consistent=True) if consistent else None)

    user = env.users.resolve_slack_user("T1", "U1", profile=alice(env))

    assert user.display_name == "written by the winner"
    assert env.models.User.get("fixed-id").display_name == "written by the winner"


def test_profile_errors_propagate_and_write_nothing(env: SimpleNamespace) -> None:
    def failing() -> Any:
        raise TimeoutError("slack users.info timed out")

    with pytest.raises(TimeoutError):
        env.users.resolve_slack_user("T1", "U1", profile=failing)
    assert item_counts() == {"test-users": 0, "test-identities": 0, "test-memberships": 0, "test-groups": 0}


# -- system groups ------------------------------------------------------------------------------


def test_ensure_system_groups_creates_all_users_once_and_never_overwrites(env: SimpleNamespace) -> None:
    assert env.users.ensure_system_groups() == ["all_users"]
    group = env.models.Group.get("all_users")
    assert group.is_system is True
    assert group.description

    group.description = "Everybody at Example Corp"  # an admin's edit
    group.save()
    assert env.users.ensure_system_groups() == []
    assert env.models.Group.get("all_users").description == "Everybody at Example Corp"
    assert item_counts()["test-groups"] == 1


def test_ensure_system_groups_reports_other_failures(env: SimpleNamespace) -> None:
    from pynamodb.exceptions import PutError

    boto3.client("dynamodb").delete_table(TableName="test-groups")
    with pytest.raises(PutError):
        env.users.ensure_system_groups()
