"""Slack users resolved to directory users against DynamoDB (moto) — insightmesh.directory.users."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.dynamodb.models import DynamoDBBackend
from pynamodb.exceptions import PutError

from insightmesh.directory import models, users
from tests.integration.conftest import items

if TYPE_CHECKING:
    from tests.integration.conftest import DynamoCalls

COUNTED = {"users": "USERS_TABLE", "identities": "IDENTITIES_TABLE", "memberships": "MEMBERSHIPS_TABLE",
           "groups": "GROUPS_TABLE"}


@pytest.fixture
def env(tables: dict[str, str]) -> dict[str, str]:
    return tables


def item_counts() -> dict[str, int]:
    return {name: len(items(variable)) for name, variable in COUNTED.items()}


class Profile:
    """A profile fetcher that counts its calls."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.profile


def alice(env: dict[str, str]) -> Profile:
    return Profile(users.SlackProfile(display_name="alice", real_name="Alice Liddell",
                                          email=" Alice@Example.COM ", is_bot=False))


# -- first and later contacts -------------------------------------------------------------------


def test_first_contact_creates_the_user_its_identity_and_all_users_membership(env: dict[str, str]) -> None:
    profile = alice(env)
    user = users.resolve_slack_user("T1", "U1", profile=profile)

    assert profile.calls == 1
    stored = models.User.get(user.user_id)
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

    identity = models.Identity.get("slack#T1:U1")
    assert identity.user_id == user.user_id
    assert identity.provider_type == "slack"
    assert identity.provider_user_id == "T1:U1"
    assert identity.provider_email == "alice@example.com"
    assert identity.is_primary is True
    assert identity.is_active is True

    membership = models.Membership.get("all_users", user.user_id)
    assert membership.added_by == "system"
    assert item_counts() == {"users": 1, "identities": 1, "memberships": 1, "groups": 0}


def test_the_stored_map_and_indexes_are_queryable(env: dict[str, str]) -> None:
    user = users.resolve_slack_user("T1", "U1", profile=alice(env))

    raw = items("USERS_TABLE")[0]
    assert raw["slack_ids"] == {"M": {"T1": {"S": "U1"}}}
    assert [u.user_id for u in models.User.by_email.query("alice@example.com")] == [user.user_id]
    assert [i.identity_key for i in models.Identity.by_user.query(user.user_id)] == ["slack#T1:U1"]
    assert [m.group_name for m in models.Membership.by_user.query(user.user_id)] == ["all_users"]


def test_a_later_contact_returns_the_same_user_with_two_reads_and_no_writes(env: dict[str, str],
                                                                           dynamo_calls: DynamoCalls) -> None:
    first = users.resolve_slack_user("T1", "U1", profile=alice(env))
    before = item_counts()

    profile = alice(env)
    calls = dynamo_calls.start()
    again = users.resolve_slack_user("T1", "U1", profile=profile)
    operations = calls.operations

    assert again.user_id == first.user_id
    assert profile.calls == 0  # Slack is not asked about a known user
    assert operations == ["GetItem", "GetItem"]
    assert item_counts() == before


def test_the_same_slack_user_id_in_another_workspace_is_another_identity(env: dict[str, str]) -> None:
    one = users.resolve_slack_user("T1", "U1")
    other = users.resolve_slack_user("T2", "U1")
    assert one.user_id != other.user_id
    assert item_counts()["identities"] == 2


def test_without_a_profile_the_slack_id_is_the_display_name(env: dict[str, str]) -> None:
    user = users.resolve_slack_user("T1", "U9", profile=Profile(None))
    stored = models.User.get(user.user_id)
    assert stored.display_name == "U9"
    assert stored.real_name is None
    assert stored.email is None  # unset, so the by-email index stays sparse
    assert stored.last_synced_at is None
    assert "email" not in items("USERS_TABLE")[0]
    assert users.resolve_slack_user("T1", "U10").display_name == "U10"  # no fetcher at all


def test_a_bot_profile_is_recorded(env: dict[str, str]) -> None:
    profile = Profile(users.SlackProfile(real_name="Deploy Bot", email="", is_bot=True))
    user = users.resolve_slack_user("T1", "B1", profile=profile)
    stored = models.User.get(user.user_id)
    assert stored.is_bot is True
    assert stored.display_name == "Deploy Bot"  # real name when there is no display name
    assert stored.email is None  # a blank e-mail is not stored


def test_missing_ids_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="required"):
        users.resolve_slack_user("", "U1")


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
def test_eight_concurrent_first_contacts_create_exactly_one_user(env: dict[str, str]) -> None:
    start = threading.Barrier(8)
    profile = alice(env)

    def contact() -> str:
        start.wait(timeout=30)
        return str(users.resolve_slack_user("T1", "U1", profile=profile).user_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(contact) for _ in range(8)]
        results = [future.result(timeout=60) for future in futures]  # re-raises a thread's error

    assert len(results) == 8
    assert len(set(results)) == 1
    assert item_counts() == {"users": 1, "identities": 1, "memberships": 1, "groups": 0}
    assert items("USERS_TABLE")[0]["user_id"] == {"S": results[0]}


def test_the_loser_of_a_first_contact_race_returns_the_winners_user(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = users.resolve_slack_user("T1", "U1", profile=alice(env))
    # The loser's first read happened before the winner's write: it saw no identity.
    real_get_identity = users._get_identity
    monkeypatch.setattr(users, "_get_identity",
                        lambda key, *, consistent: real_get_identity(key, consistent=True) if consistent else None)
    profile = alice(env)

    loser = users.resolve_slack_user("T1", "U1", profile=profile)

    assert loser.user_id == winner.user_id
    assert profile.calls == 1  # it did prepare a user before its conditional write failed
    assert item_counts() == {"users": 1, "identities": 1, "memberships": 1, "groups": 0}


def test_an_identity_without_its_user_is_completed_by_the_next_contact(env: dict[str, str]) -> None:
    # The first contact wrote the identity, then stopped (crash, timeout) before the user.
    models.Identity("slack#T1:U1", provider_type="slack", provider_user_id="T1:U1", user_id="fixed-id",
                        is_primary=True).save()
    profile = alice(env)

    user = users.resolve_slack_user("T1", "U1", profile=profile)

    assert user.user_id == "fixed-id"
    assert profile.calls == 1
    assert models.User.get("fixed-id").display_name == "alice"
    assert models.Membership.get("all_users", "fixed-id").added_by == "system"
    assert item_counts() == {"users": 1, "identities": 1, "memberships": 1, "groups": 0}


def test_a_user_written_concurrently_with_the_repair_is_kept(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    models.Identity("slack#T1:U1", provider_type="slack", provider_user_id="T1:U1", user_id="fixed-id").save()
    models.User("fixed-id", display_name="written by the winner").save()
    # This contact's read of the user happened before the winner's write.
    real_get_user = users._get_user
    monkeypatch.setattr(users, "_get_user",
                        lambda user_id, *, consistent: real_get_user(user_id, consistent=True) if consistent else None)

    user = users.resolve_slack_user("T1", "U1", profile=alice(env))

    assert user.display_name == "written by the winner"
    assert models.User.get("fixed-id").display_name == "written by the winner"


def test_profile_errors_propagate_and_write_nothing(env: dict[str, str]) -> None:
    def failing() -> Any:
        raise TimeoutError("slack users.info timed out")

    with pytest.raises(TimeoutError):
        users.resolve_slack_user("T1", "U1", profile=failing)
    assert item_counts() == {"users": 0, "identities": 0, "memberships": 0, "groups": 0}


# -- system groups ------------------------------------------------------------------------------


def test_ensure_system_groups_creates_all_users_once_and_never_overwrites(env: dict[str, str]) -> None:
    assert users.ensure_system_groups() == ["all_users"]
    group = models.Group.get("all_users")
    assert group.is_system is True
    assert group.description

    group.description = "Everybody at Example Corp"  # an admin's edit
    group.save()
    assert users.ensure_system_groups() == []
    assert models.Group.get("all_users").description == "Everybody at Example Corp"
    assert item_counts()["groups"] == 1


def test_ensure_system_groups_reports_other_failures(env: dict[str, str]) -> None:
    boto3.client("dynamodb").delete_table(TableName=env["GROUPS_TABLE"])
    with pytest.raises(PutError):
        users.ensure_system_groups()
