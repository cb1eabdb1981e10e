"""Directory sync against DynamoDB (moto) — insightmesh.directory.sync, on the template's tables."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pynamodb.exceptions import PutError

from insightmesh.directory import models, users
from insightmesh.directory import sync as directory_sync
from insightmesh.directory.email_users import new_user_id
from tests.integration.conftest import DynamoCalls, items

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SNAPSHOT = ("USERS_TABLE", "IDENTITIES_TABLE", "GROUPS_TABLE", "MEMBERSHIPS_TABLE")


@pytest.fixture
def env(tables: dict[str, str], dynamo_calls: DynamoCalls) -> SimpleNamespace:
    """The template's tables, and the recorder of the DynamoDB calls a sync makes (``env.calls``)."""
    return SimpleNamespace(tables=tables, calls=dynamo_calls)


def snapshot() -> dict[str, list[dict[str, Any]]]:
    return {variable: sorted(items(variable), key=repr) for variable in SNAPSHOT}


def person(env: SimpleNamespace, provider_user_id: str, email: str | None = None, name: str | None = None,
           **more: Any) -> Any:
    display = name or provider_user_id.split(":")[-1].lower()
    return directory_sync.ProviderUser(provider_user_id, email=email, display_name=display,
                                 real_name=more.pop("real_name", display.title()), **more)


def team(env: SimpleNamespace, count: int, *, prefix: str = "T1:U", domain: str = "example.com") -> list[Any]:
    return [person(env, f"{prefix}{n:05d}", f"user{n}@{domain}", f"user{n}") for n in range(count)]


def pages_of(records: list[Any], size: int = 100) -> list[list[Any]]:
    return [records[start:start + size] for start in range(0, len(records), size)]


def sync(env: SimpleNamespace, records: list[Any], run_id: str, provider: str = "slack", **kwargs: Any) -> Any:
    return directory_sync.sync_users(provider, pages_of(records), run_id=run_id, now=NOW, **kwargs)


def user_of(env: SimpleNamespace, key: str) -> Any:
    return models.User.get(models.Identity.get(key).user_id, consistent_read=True)


def is_member(env: SimpleNamespace, user_id: str) -> bool:
    return models.Membership.count("all_users", models.Membership.user_id == user_id) == 1


def counters(report: Any) -> dict[str, int]:
    return {name: value for name, value in vars(report.progress).items() if value}


# -- first sync ---------------------------------------------------------------------------------


def test_the_first_sync_creates_users_identities_claims_and_memberships(env: SimpleNamespace) -> None:
    records = [person(env, "T1:U1", " Alice@Example.COM ", "alice", real_name="Alice Liddell"),
               person(env, "T1:U2", "bob@example.com", "bob"),
               person(env, "T1:B1", None, "deploybot")]

    report = sync(env, records, "run-1")

    assert report.complete and report.swept and report.resume_token is None
    assert report.sync_scope == "slack"
    assert counters(report) == {"pages": 1, "seen": 3, "created": 3}
    identity = models.Identity.get("slack#T1:U1")
    assert (identity.provider_type, identity.provider_user_id) == ("slack", "T1:U1")
    assert identity.provider_email == "alice@example.com"
    assert identity.is_primary and identity.is_active
    assert identity.last_seen_run == "run-1"
    assert identity.last_seen_at == NOW
    assert (identity.sync_scope, identity.sync_mark) == ("slack", "run-1#slack#T1:U1")
    user = models.User.get(identity.user_id)
    assert user.user_id == new_user_id("slack#T1:U1")
    assert (user.email, user.display_name, user.real_name) == ("alice@example.com", "alice", "Alice Liddell")
    assert user.is_active and not user.is_admin
    assert user.primary_provider == "slack"
    assert user.slack_ids == {"T1": "U1"}
    assert user.version == 1
    assert user.last_synced_at == NOW
    assert models.Identity.get("email#alice@example.com").user_id == user.user_id  # the claim
    bot = user_of(env, "slack#T1:B1")
    assert (bot.email, bot.display_name) == (None, "deploybot")  # no address: no by-email entry
    assert len(items("USERS_TABLE")) == 3
    assert len(items("IDENTITIES_TABLE")) == 3 + 2  # three identities, two e-mail claims
    assert sorted(m["user_id"]["S"] for m in items("MEMBERSHIPS_TABLE")) == sorted(
        i["user_id"]["S"] for i in items("USERS_TABLE"))
    assert {m["group_name"]["S"] for m in items("MEMBERSHIPS_TABLE")} == {"all_users"}


def test_the_sweep_index_holds_exactly_the_active_identities(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "a@x.io"), person(env, "T1:U2", "b@x.io", is_active=False)], "run-1")
    marked = [i.identity_key for i in models.Identity.by_sync_scope.query("slack")]
    assert marked == ["slack#T1:U1"]  # the inactive one and the claims carry no mark


def test_records_without_an_id_fail_and_the_others_are_synced(env: SimpleNamespace) -> None:
    report = sync(env, [person(env, "T1:U1", "a@x.io"), directory_sync.ProviderUser(" ", email="c@x.io")], "run-1")
    assert counters(report) == {"pages": 1, "seen": 1, "created": 1, "failed": 1}


def test_a_page_larger_than_100_is_processed_in_slices(env: SimpleNamespace) -> None:
    report = directory_sync.sync_users("slack", [team(env, 250)], run_id="run-1", now=NOW)
    assert counters(report) == {"pages": 1, "seen": 250, "created": 250}
    assert len(items("USERS_TABLE")) == 250


# -- idempotence and updates --------------------------------------------------------------------


def test_rerunning_the_same_run_writes_nothing(env: SimpleNamespace) -> None:
    records = [*team(env, 120), person(env, "T1:B1", None)]
    sync(env, records, "run-1")
    before = snapshot()
    calls = env.calls.start()

    report = sync(env, records, "run-1")

    assert calls.writes == 0
    assert calls.items_written == 0
    assert snapshot() == before
    assert counters(report) == {"pages": 2, "seen": 121}


def test_a_new_run_with_unchanged_data_only_marks_the_identities_as_seen(env: SimpleNamespace) -> None:
    records = team(env, 30)
    sync(env, records, "run-1")
    users_before = sorted(items("USERS_TABLE"), key=repr)
    memberships_before = sorted(items("MEMBERSHIPS_TABLE"), key=repr)
    calls = env.calls.start()

    report = sync(env, records, "run-2")

    assert counters(report) == {"pages": 1, "seen": 30}
    assert calls.counts["BatchWriteItem"] == 2  # 30 identities: 25 + 5
    assert calls.items_written == 30
    assert sorted(items("USERS_TABLE"), key=repr) == users_before
    assert sorted(items("MEMBERSHIPS_TABLE"), key=repr) == memberships_before
    assert models.Identity.get("slack#T1:U00007").last_seen_run == "run-2"
    assert models.Identity.get("slack#T1:U00007").sync_mark == "run-2#slack#T1:U00007"


def test_a_changed_name_or_address_updates_the_user(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "alice@example.com", "alice", real_name="Alice Liddell")], "run-1")
    calls = env.calls.start()

    report = sync(env, [person(env, "T1:U1", "alice@wonderland.example", "ally", real_name="Alice L.")], "run-2")

    assert counters(report) == {"pages": 1, "seen": 1, "updated": 1}
    user = user_of(env, "slack#T1:U1")
    assert (user.display_name, user.real_name, user.email) == ("ally", "Alice L.", "alice@wonderland.example")
    assert user.version == 2
    assert models.Identity.get("slack#T1:U1").provider_email == "alice@wonderland.example"
    assert models.Identity.get("email#alice@wonderland.example").user_id == user.user_id
    assert calls.writes == 2  # the user; the identity with the new claim
    assert models.User.by_email.query("alice@wonderland.example").next().user_id == user.user_id


# -- deactivation and reactivation --------------------------------------------------------------


def test_a_removed_user_is_deactivated_and_leaves_all_users(env: SimpleNamespace) -> None:
    records = team(env, 5)
    sync(env, records, "run-1")
    gone = user_of(env, "slack#T1:U00003")
    calls = env.calls.start()

    report = sync(env, records[:3] + records[4:], "run-2")
    operations = calls.counts

    assert counters(report) == {"pages": 1, "seen": 4, "deactivated": 1}
    identity = models.Identity.get("slack#T1:U00003")
    assert identity.is_active is False
    assert identity.last_seen_run == "run-1"
    assert identity.sync_mark is None
    assert user_of(env, "slack#T1:U00003").is_active is False
    assert not is_member(env, gone.user_id)
    assert all(user_of(env, r_key).is_active for r_key in ("slack#T1:U00000", "slack#T1:U00004"))
    assert len(items("MEMBERSHIPS_TABLE")) == 4
    assert operations["Query"] == 2  # the sweep: below and above this run's marks
    assert operations["Scan"] == operations["GetItem"] == 0


def test_a_user_reported_inactive_is_deactivated(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "a@x.io")], "run-1")
    report = sync(env, [person(env, "T1:U1", "a@x.io", is_active=False)], "run-2")
    assert counters(report) == {"pages": 1, "seen": 1, "deactivated": 1}
    user = user_of(env, "slack#T1:U1")
    assert user.is_active is False
    assert not is_member(env, user.user_id)


def test_a_reappearing_user_is_reactivated(env: SimpleNamespace) -> None:
    records = team(env, 3)
    sync(env, records, "run-1")
    sync(env, records[:2], "run-2")
    returning = user_of(env, "slack#T1:U00002")
    assert not returning.is_active

    report = sync(env, records, "run-3")

    assert counters(report) == {"pages": 1, "seen": 3, "reactivated": 1}
    assert user_of(env, "slack#T1:U00002").is_active is True
    assert is_member(env, returning.user_id)
    assert models.Identity.get("slack#T1:U00002").sync_mark == "run-3#slack#T1:U00002"
    assert len(items("USERS_TABLE")) == 3


def test_an_admins_deactivation_is_kept_while_the_provider_reports_no_change(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "a@x.io")], "run-1")
    user = user_of(env, "slack#T1:U1")
    user.is_active = False
    user.save()

    sync(env, [person(env, "T1:U1", "a@x.io")], "run-2")

    assert user_of(env, "slack#T1:U1").is_active is False
    assert not is_member(env, user.user_id)  # membership re-derived from the user


def test_an_empty_listing_deactivates_nobody(env: SimpleNamespace) -> None:
    sync(env, team(env, 3), "run-1")
    report = directory_sync.sync_users("slack", [[]], run_id="run-2", now=NOW)
    assert report.complete and not report.swept
    assert all(item["is_active"]["BOOL"] for item in items("USERS_TABLE"))


def test_the_sweep_is_limited_to_the_runs_scope(env: SimpleNamespace) -> None:
    sync(env, team(env, 2, prefix="T1:U"), "run-1", scope="T1")
    sync(env, team(env, 2, prefix="T2:U", domain="t2.example"), "run-1", scope="T2")

    report = sync(env, team(env, 1, prefix="T1:U"), "run-2", scope="T1")

    assert report.sync_scope == "slack#T1"
    assert counters(report) == {"pages": 1, "seen": 1, "deactivated": 1}
    assert models.Identity.get("slack#T1:U00001").is_active is False
    assert models.Identity.get("slack#T2:U00000").is_active is True
    assert models.Identity.get("slack#T2:U00001").is_active is True


def test_a_sweep_of_many_identities_is_paginated(env: SimpleNamespace) -> None:
    sync(env, team(env, 230), "run-1")
    calls = env.calls.start()
    report = sync(env, team(env, 5), "run-2")
    operations = calls.counts
    assert report.progress.deactivated == 225
    assert models.Membership.count("all_users") == 5
    assert operations["Query"] >= 3  # 100 keys a Query page
    assert operations["BatchGetItem"] <= 4 + 3 * 3  # the page; per sweep page: identities, users, memberships
    assert operations["GetItem"] == operations["Scan"] == 0


# -- matching across providers ------------------------------------------------------------------


def test_an_email_links_a_google_identity_to_the_slack_user(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "alice@example.com", "alice", real_name="Alice Liddell")], "slack-1")
    slack_user = user_of(env, "slack#T1:U1")

    report = sync(env, [person(env, "g-100", "ALICE@example.com", "Alice (Google)", real_name="Alice G")],
                  "google-1", provider="google")

    assert counters(report) == {"pages": 1, "seen": 1, "linked": 1}
    google = models.Identity.get("google#g-100")
    assert google.user_id == slack_user.user_id
    assert google.is_primary is False
    identities = {i.identity_key for i in models.Identity.by_user.query(slack_user.user_id)}
    assert identities == {"slack#T1:U1", "google#g-100", "email#alice@example.com"}
    user = user_of(env, "slack#T1:U1")
    assert (user.display_name, user.primary_provider, user.version) == ("alice", "slack", 1)  # Slack is primary
    assert len(items("USERS_TABLE")) == 1

    # Google disappearing leaves the user alone: it is not the primary identity.
    directory_sync.sync_users("google", [[person(env, "g-200", "zed@example.com")]], run_id="google-2", now=NOW)
    assert models.Identity.get("google#g-100").is_active is False
    assert user_of(env, "slack#T1:U1").is_active is True


def test_a_primary_hint_moves_the_primary_identity_to_the_linked_provider(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "alice@example.com", "alice")], "slack-1")

    sync(env, [person(env, "g-100", "alice@example.com", "Alice Liddell", is_primary_hint=True)],
         "google-1", provider="google")

    user = user_of(env, "slack#T1:U1")
    assert (user.primary_provider, user.display_name) == ("google", "Alice Liddell")
    assert models.Identity.get("google#g-100").is_primary is True
    sync(env, [person(env, "T1:U1", "alice@example.com", "alice")], "slack-2")  # demotes the old primary
    assert models.Identity.get("slack#T1:U1").is_primary is False
    assert user_of(env, "slack#T1:U1").display_name == "Alice Liddell"  # Slack no longer sets the names
    sync(env, [person(env, "T1:U9", "other@example.com")], "slack-3")  # Slack drops Alice: still active
    assert user_of(env, "slack#T1:U1").is_active is True
    directory_sync.sync_users("google", [[person(env, "g-300", "x@example.com")]], run_id="google-2", now=NOW)
    assert user_of(env, "slack#T1:U1").is_active is False  # Google drops her: deactivated


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_duplicate_emails_in_one_page_resolve_the_same_way_whatever_the_order(
    env: SimpleNamespace, order: str
) -> None:
    records = [person(env, "T1:U5", "Sam@example.com", "sam"), person(env, "T2:U1", "sam@example.com", "sam2"),
               person(env, "T3:U7", "sam@EXAMPLE.com", "sam3")]
    if order == "reversed":
        records.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(records)

    report = sync(env, records, "run-1")

    assert counters(report) == {"pages": 1, "seen": 3, "created": 1, "linked": 2}
    owner = new_user_id("slack#T1:U5")  # the lowest identity key creates the user
    assert {models.Identity.get(k).user_id for k in ("slack#T1:U5", "slack#T2:U1", "slack#T3:U7")} == {owner}
    user = models.User.get(owner)
    assert user.display_name == "sam"
    assert user.slack_ids == {"T1": "U5", "T2": "U1", "T3": "U7"}
    assert len(items("USERS_TABLE")) == 1


def test_a_duplicate_provider_id_in_one_page_keeps_the_last_record(env: SimpleNamespace) -> None:
    report = sync(env, [person(env, "T1:U1", "a@x.io", "first"), person(env, "T1:U1", "a@x.io", "last")], "run-1")
    assert counters(report) == {"pages": 1, "seen": 1, "created": 1}
    assert user_of(env, "slack#T1:U1").display_name == "last"


def test_an_address_is_matched_only_to_an_active_user(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", "alice@example.com")], "slack-1")
    sync(env, [person(env, "T1:U1", "alice@example.com", is_active=False)], "slack-2")  # left the company

    sync(env, [person(env, "g-1", "alice@example.com")], "google-1", provider="google")  # a recycled address

    assert models.Identity.get("google#g-1").user_id != models.Identity.get("slack#T1:U1").user_id
    assert models.Identity.get("email#alice@example.com").user_id == models.Identity.get("google#g-1").user_id


def test_users_without_email_are_never_matched(env: SimpleNamespace) -> None:
    sync(env, [person(env, "T1:U1", None, "alice")], "slack-1")
    sync(env, [person(env, "g-1", None, "alice")], "google-1", provider="google")
    assert len(items("USERS_TABLE")) == 2


def test_a_first_contact_user_is_adopted_and_then_matched(env: SimpleNamespace) -> None:
    profile = users.SlackProfile(display_name="alice", email="alice@example.com")
    first_contact = users.resolve_slack_user("T1", "U1", profile=lambda: profile)

    report = sync(env, [person(env, "T1:U1", "alice@example.com", "alice", real_name=None)], "slack-1")
    sync(env, [person(env, "g-1", "alice@example.com")], "google-1", provider="google")

    assert counters(report) == {"pages": 1, "seen": 1}  # nothing about the user changed
    assert models.Identity.get("email#alice@example.com").user_id == first_contact.user_id
    assert models.Identity.get("google#g-1").user_id == first_contact.user_id
    assert len(items("USERS_TABLE")) == 1


# -- robustness ---------------------------------------------------------------------------------


def test_an_identity_without_its_user_is_repaired(env: SimpleNamespace) -> None:
    models.Identity("slack#T1:U1", provider_type="slack", provider_user_id="T1:U1", user_id="fixed-id").save()
    report = sync(env, [person(env, "T1:U1", "a@x.io", "alice")], "run-1")
    assert counters(report) == {"pages": 1, "seen": 1, "updated": 1}
    assert models.User.get("fixed-id").display_name == "alice"
    assert is_member(env, "fixed-id")


def test_a_page_interrupted_after_its_users_is_redone_without_orphans(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = team(env, 10)
    real_batch_write = models.Identity.batch_write

    def failing() -> Any:
        raise PutError("throttled")

    monkeypatch.setattr(models.Identity, "batch_write", failing)
    with pytest.raises(PutError):
        sync(env, records, "run-1")
    assert len(items("USERS_TABLE")) == 10 and len(items("IDENTITIES_TABLE")) == 0
    monkeypatch.setattr(models.Identity, "batch_write", real_batch_write)

    report = sync(env, records, "run-1")

    assert report.complete
    assert len(items("USERS_TABLE")) == 10  # the same users, found again
    assert len(items("IDENTITIES_TABLE")) == 20
    assert len(items("MEMBERSHIPS_TABLE")) == 10


def test_invalid_arguments_are_refused(env: SimpleNamespace) -> None:
    for provider, run_id in (("slack", "run#1"), ("slack", ""), ("email", "r"), ("", "r"), ("a#b", "r")):
        with pytest.raises(ValueError):
            directory_sync.sync_users(provider, [], run_id=run_id)
    with pytest.raises(ValueError, match="timezone"):
        directory_sync.sync_users("slack", [], run_id="r", now=datetime(2025, 1, 1))


# -- checkpoints, deadlines, resume -------------------------------------------------------------


def test_checkpoint_is_called_after_each_page_with_cumulative_counters(env: SimpleNamespace) -> None:
    seen: list[Any] = []
    sync(env, team(env, 250), "run-1", checkpoint=seen.append)
    assert [(p.pages, p.seen, p.created) for p in seen][:3] == [(1, 100, 100), (2, 200, 200), (3, 250, 250)]


def test_should_stop_returns_a_partial_report_and_the_run_resumes(env: SimpleNamespace) -> None:
    sync(env, team(env, 400), "run-1")
    records = team(env, 300)  # users 300-399 left
    pages = pages_of(records)
    checkpoints: list[Any] = []

    partial = directory_sync.sync_users("slack", iter(pages), run_id="run-2", now=NOW, checkpoint=checkpoints.append,
                                  should_stop=lambda: len(checkpoints) >= 2)

    assert partial.complete is False and partial.swept is False
    assert partial.resume_token == directory_sync.ResumeToken("run-2", pages_done=2, sweeping=False)
    assert partial.progress.pages == 2 and partial.progress.seen == 200
    assert partial.progress.deactivated == 0  # no sweep before every page was seen
    assert models.Membership.count("all_users") == 400

    rest = directory_sync.sync_users("slack", pages[partial.resume_token.pages_done:], run_id="run-2", now=NOW,
                               start=partial.progress)

    assert rest.complete and rest.swept
    assert (rest.progress.pages, rest.progress.seen, rest.progress.deactivated) == (3, 300, 100)
    assert models.Membership.count("all_users") == 300
    assert models.Identity.get("slack#T1:U00000").is_active  # seen before the stop: kept


def test_should_stop_during_the_sweep_resumes_the_sweep(env: SimpleNamespace) -> None:
    sync(env, team(env, 250), "run-1")
    state = {"sweeping": False}

    def stop() -> bool:
        return state["sweeping"]

    def checkpoint(progress: Any) -> None:
        state["sweeping"] = progress.deactivated > 0

    partial = sync(env, team(env, 10), "run-2", checkpoint=checkpoint, should_stop=stop)

    assert partial.complete is False
    assert partial.resume_token == directory_sync.ResumeToken("run-2", pages_done=1, sweeping=True)
    assert partial.progress.deactivated == 100

    done = directory_sync.sync_users("slack", [], run_id="run-2", now=NOW, start=partial.progress)

    assert done.complete and done.swept
    assert done.progress.deactivated == 240
    assert models.Membership.count("all_users") == 10


# -- calls per page -----------------------------------------------------------------------------


def calls_for(env: SimpleNamespace, records: list[Any], run_id: str, scope: str) -> Counter[str]:
    calls = env.calls.start()
    sync(env, records, run_id, scope=scope)  # one scope per population: no sweep of the others
    return calls.counts


def test_calls_grow_with_pages_only_not_with_the_users_already_stored(env: SimpleNamespace) -> None:
    directory_sync.sync_users("google", pages_of(team(env, 500, prefix="g-", domain="other.example")),
                        run_id="g-1", now=NOW)  # 500 users already stored, of another provider

    first = {n: calls_for(env, team(env, n, prefix=f"T{n}:U", domain=f"d{n}.example"), f"first-{n}", f"T{n}")
             for n in (10, 100, 300)}
    again = {n: calls_for(env, team(env, n, prefix=f"T{n}:U", domain=f"d{n}.example"), f"again-{n}", f"T{n}")
             for n in (10, 100, 300)}

    for counts in (*first.values(), *again.values()):
        assert set(counts) <= {"BatchGetItem", "BatchWriteItem", "Query"}  # no GetItem, PutItem, Scan
    # Per page of 100: a first sync reads 100 identity + 100 claim keys (2 calls) and the users
    # the new identities would create (1); it writes 100 users, 100 memberships, 100 identities
    # and 100 claims (16 calls of 25). A re-sync reads identities + claims (2), users (1),
    # memberships (1), and marks 100 identities seen (4 calls). The sweep is 2 Queries a run.
    assert first[100] == Counter(BatchGetItem=3, BatchWriteItem=16, Query=2)
    assert again[100] == Counter(BatchGetItem=4, BatchWriteItem=4, Query=2)
    for runs in (first, again):
        per_page = runs[100] - Counter(Query=2)
        assert runs[300] - Counter(Query=2) == Counter({op: 3 * count for op, count in per_page.items()})
        assert runs[10]["BatchGetItem"] <= per_page["BatchGetItem"]  # one page: no more reads
        assert runs[10]["BatchWriteItem"] <= per_page["BatchWriteItem"]


def test_the_calls_of_a_page_do_not_depend_on_the_table_size(env: SimpleNamespace) -> None:
    empty_table = calls_for(env, team(env, 100, prefix="T1:U"), "run-a", "T1")
    directory_sync.sync_users("google", pages_of(team(env, 1000, prefix="g-", domain="big.example")),
                        run_id="g-1", now=NOW)
    full_table = calls_for(env, team(env, 100, prefix="T2:U", domain="t2.example"), "run-b", "T2")
    assert full_table == empty_table
