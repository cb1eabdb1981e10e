"""The directory-sync job types against their stand-ins over loopback HTTP and DynamoDB in moto.

``slack_user_sync`` talks to the Slack Web API sandbox through the process's slack_sdk client;
``google_workspace_sync`` talks to the Admin SDK Directory API stand-in over httpx. Both write
through ``insightmesh.directory.sync`` into the template's tables. The job runner is tested
elsewhere: here a small recording :class:`Context` plays its part (steps, progress, checkpoints,
a controllable ``should_stop``), and a run that completes clears the checkpoint as the runner does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError

from insightmesh.directory.models import Grant, Group, Identity, Membership, User, group_principal
from insightmesh.directory.providers.google_workspace_sync import (
    GROUP_NAME_PATTERN,
    GROUP_SCOPE,
    USER_SCOPE,
    GoogleAuthError,
    GoogleWorkspaceSync,
    group_name_candidates,
)
from insightmesh.directory.providers.slack_user_sync import SlackUserSync
from insightmesh.directory.sync import ProviderUser, sync_users
from insightmesh.directory.users import ALL_USERS, ensure_system_groups
from insightmesh.resilience import CircuitBreaker
from insightmesh.slack import client as slack_client
from tests.job_context import RecordingContext, run
from tests.standins.google_directory_server import GoogleDirectoryServer

pytestmark = pytest.mark.timeout(120)

TEAM = "TLOCAL0001"
GOOD_TOKEN = "ya29.good-token"


class Context(RecordingContext):
    """A recording JobContext (tests/job_context.py) for the job ``job``."""

    def __init__(self, job: Any, parameters: Mapping[str, Any], **options: Any) -> None:
        super().__init__(job, parameters, **options)


def items(table: str) -> list[dict[str, Any]]:
    """Every item of a table (a test may scan; the code under test never does)."""
    client = boto3.client("dynamodb")
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        found.extend(page["Items"])
    return found


def identities(provider: str) -> dict[str, Identity]:
    return {item["identity_key"]["S"]: Identity.get(item["identity_key"]["S"], consistent_read=True)
            for item in items(Identity.Meta.table_name) if item["provider_type"]["S"] == provider}


def members_of(group: str) -> set[str]:
    return {membership.user_id for membership in Membership.query(group, consistent_read=True)}




class Tokens:
    """A token provider: hands out ``tokens`` in turn (the last one again and again), recording calls."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens) or [GOOD_TOKEN]
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, credential_id: str, *, required_scopes: Any) -> str:
        self.calls.append((credential_id, tuple(required_scopes)))
        return self.tokens[min(len(self.calls), len(self.tokens)) - 1]


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleDirectoryServer]:
    server = GoogleDirectoryServer(port=0, tokens=[GOOD_TOKEN]).start()
    monkeypatch.setenv("GOOGLE_DIRECTORY_API_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


def google_job(tokens: Tokens | None = None) -> GoogleWorkspaceSync:
    # A breaker of its own per test: the process-wide one would carry failures across tests.
    return GoogleWorkspaceSync(token_provider=tokens or Tokens(), breaker=CircuitBreaker("google-directory-test"))


# -- parameters ------------------------------------------------------------------------------------


def test_parameters_are_validated():
    slack_parameters = SlackUserSync.Parameters
    assert slack_parameters.model_validate({}).model_dump() == {"email_domains": [], "page_size": 200,
                                                                 "deactivate_missing": True,
                                                                 "max_deactivate_percent": 20}
    normalised = slack_parameters.model_validate({"email_domains": ["Corp.Example", "corp.example.", "b.co"]})
    assert normalised.model_dump()["email_domains"] == ["corp.example", "b.co"]
    for bad in ({"email_domains": ["not a domain"]}, {"email_domains": ["@corp.example"]},
                {"email_domains": ["localhost"]}, {"page_size": 0}, {"page_size": 1001}, {"page_size": "many"},
                {"surprise": 1}, {"max_deactivate_percent": -1}, {"max_deactivate_percent": 101}):
        with pytest.raises(ValidationError):
            slack_parameters.model_validate(bad)

    google_parameters = GoogleWorkspaceSync.Parameters
    defaults = google_parameters.model_validate({"credential_id": "cred-1"}).model_dump()
    assert defaults == {"credential_id": "cred-1", "customer": "my_customer", "domain": None, "sync_groups": True,
                        "primary": True, "page_size": 200, "deactivate_missing": True,
                        "max_deactivate_percent": 20}
    assert google_parameters.model_validate({"credential_id": "c", "domain": "Corp.Example"}).model_dump()[
        "domain"] == "corp.example"
    for bad in ({}, {"credential_id": ""}, {"credential_id": "c", "page_size": 501},
                {"credential_id": "c", "page_size": 0}, {"credential_id": "c", "domain": "corp_example"},
                {"credential_id": "c", "customer": "my customer"}, {"credential_id": "c", "groups": True}):
        with pytest.raises(ValidationError):
            google_parameters.model_validate(bad)


def test_group_names_are_deterministic_slugs():
    first, second = group_name_candidates("Eng.Team@corp.example", "03abc")
    assert first == "gw-eng-team" and second.startswith("gw-eng-team-") and len(second) == len("gw-eng-team-") + 8
    assert group_name_candidates("Eng.Team@corp.example", "03abc") == (first, second)
    assert group_name_candidates("eng.team@other.example", "04def")[0] == first  # a collision: second differs
    assert group_name_candidates("eng.team@other.example", "04def")[1] != second
    long_first, long_second = group_name_candidates("a-very-long-distribution-list-name-for-everyone@x.example", "9")
    assert len(long_first) <= 40 and long_first.startswith("gw-a-very-long-distribution-li")
    for name in (first, second, long_first, long_second, *group_name_candidates("---@x.example", "1"),
                 *group_name_candidates("ÜBER+ops@x.example", "2")):
        assert GROUP_NAME_PATTERN.match(name), name


# -- slack_user_sync -------------------------------------------------------------------------------


def test_slack_sync_of_1000_users_over_5_pages_survives_a_429(tables, slack):
    slack.generate_users(1000, domain="corp.example")
    slack.fail("users.list", "ratelimit", 1, retry_after=1)
    context = Context(SlackUserSync, {"page_size": 200})
    result = run(SlackUserSync(), context)

    assert (result.complete, result.processed, result.succeeded, result.failed) == (True, 1000, 1000, 0)
    summary = result.summary
    assert summary["team_id"] == TEAM and summary["sync_run_id"] == context.run_id
    assert (summary["pages"], summary["seen"], summary["created"], summary["linked"]) == (5, 1000, 1000, 0)
    assert summary["listed"] == 1000 and summary["deactivated"] == 0 and summary["swept"] is True
    assert summary["rate_limited_retries"] == 1  # the 429 was retried by slack_sdk and is reported

    limited, *pages = slack.calls("users.list")
    assert (limited["status"], limited["error"]) == (429, "ratelimited")
    assert len(pages) == 5 and all(call["ok"] for call in pages)
    assert pages[0]["at"] - limited["at"] >= 1.0  # Retry-After was honoured
    assert [call["args"].get("limit") for call in pages] == ["200"] * 5
    assert [call["args"].get("cursor") for call in pages][1:] == [c["cursor"] for c in context.checkpoints[:4]]

    assert [step for step in context.steps if step.startswith("users.list")] == [
        f"users.list page {n}" for n in range(1, 6)]
    assert context.steps[0] == "auth.test"
    assert [checkpoint["pages_done"] for checkpoint in context.checkpoints] == [1, 2, 3, 4, 5]
    assert context.checkpoints[-1]["listing_done"] is True and context.checkpoints[-1]["cursor"] == ""
    assert context.checkpoints[2]["progress"]["seen"] == 600 and context.checkpoints[2]["sync_run_id"] == context.run_id
    assert [report["processed"] for report in context.reports] == [200, 400, 600, 800, 1000]

    slack_identities = identities("slack")
    assert len(slack_identities) == 1000 and f"slack#{TEAM}:U00000001" in slack_identities
    assert all(identity.sync_scope == f"slack#{TEAM}" and identity.is_active for identity in slack_identities.values())
    assert len(items(User.Meta.table_name)) == 1000 and len(members_of(ALL_USERS)) == 1000
    user = User.get(slack_identities[f"slack#{TEAM}:U00000042"].user_id)
    assert (user.email, user.display_name, user.real_name, user.slack_ids) == (
        "user42@corp.example", "user42", "User 42", {TEAM: "U00000042"})


def test_slack_sync_skips_bots_deleted_no_email_and_other_domains(tables, slack):
    slack.add_users(
        {"id": "U1", "name": "ada", "real_name": "Ada Lovelace", "display_name": "ada", "email": "ada@corp.example"},
        {"id": "U2", "name": "bob", "real_name": "Bob", "display_name": "", "email": "Bob@Corp.Example"},
        {"id": "U3", "name": "carol", "email": "carol@other.example"},
        {"id": "U4", "name": "helper", "is_bot": True},
        {"id": "USLACKBOT", "name": "slackbot", "real_name": "Slackbot", "email": None},
        {"id": "U5", "name": "dave", "email": "dave@corp.example", "deleted": True},
        {"id": "U6", "name": "erin", "email": None},
        {"id": "W7", "name": "guest", "email": "guest@sub.corp.example", "is_restricted": True},
        {"id": "U8", "name": "frank", "email": "frank@labs.example"},
    )
    context = Context(SlackUserSync, {"email_domains": ["CORP.example", "labs.example"], "page_size": 4})
    result = run(SlackUserSync(), context)

    assert (result.processed, result.succeeded, result.failed) == (9, 3, 0)
    assert {key: result.summary[key] for key in ("skipped_bots", "skipped_deleted", "skipped_no_email",
                                                  "skipped_other_domain", "skipped_guests", "pages",
                                                  "created")} == {
        "skipped_bots": 2, "skipped_deleted": 1, "skipped_no_email": 1, "skipped_other_domain": 1,
        "skipped_guests": 1, "pages": 3, "created": 3}  # W7 is a guest: skipped as one, whatever its domain
    synced = identities("slack")
    assert sorted(synced) == [f"slack#{TEAM}:U1", f"slack#{TEAM}:U2", f"slack#{TEAM}:U8"]
    ada = User.get(synced[f"slack#{TEAM}:U1"].user_id)
    assert (ada.display_name, ada.real_name, ada.email) == ("ada", "Ada Lovelace", "ada@corp.example")
    bob = User.get(synced[f"slack#{TEAM}:U2"].user_id)
    assert (bob.email, bob.display_name) == ("bob@corp.example", "Bob")  # no display name: the real name


def test_slack_user_links_by_email_to_an_existing_google_user(tables, slack):
    sync_users("google", [[ProviderUser("g-100", email="ada@corp.example", display_name="Ada (HR)",
                                        is_primary_hint=True)]], run_id="seed", scope="my_customer")
    [google_identity] = identities("google").values()
    slack.add_users({"id": "U1", "name": "ada", "real_name": "Ada Lovelace", "email": "Ada@corp.example"},
                    {"id": "U2", "name": "bob", "email": "bob@corp.example"})
    result = run(SlackUserSync(), Context(SlackUserSync, {}))

    assert (result.summary["linked"], result.summary["created"]) == (1, 1)
    slack_ada = Identity.get(f"slack#{TEAM}:U1")
    assert slack_ada.user_id == google_identity.user_id and slack_ada.is_primary is False
    user = User.get(google_identity.user_id)
    assert user.primary_provider == "google" and user.display_name == "Ada (HR)"  # Google's profile stays
    assert user.slack_ids == {TEAM: "U1"}
    assert len(items(User.Meta.table_name)) == 2


def test_slack_user_gone_or_deleted_is_deactivated_by_the_next_run(tables, slack):
    slack.add_users({"id": "U1", "email": "ada@corp.example"}, {"id": "U2", "email": "bob@corp.example"},
                    {"id": "U3", "email": "carol@corp.example"})
    run(SlackUserSync(), Context(SlackUserSync, {}))
    user_of = {key: identity.user_id for key, identity in identities("slack").items()}

    slack.remove_users("U2")
    slack.add_users({"id": "U3", "email": "carol@corp.example", "deleted": True})
    second = run(SlackUserSync(), Context(SlackUserSync, {"max_deactivate_percent": 100}))  # 2 of 3 left
    assert (second.summary["deactivated"], second.summary["skipped_deleted"], second.summary["swept"]) == (2, 1, True)
    assert User.get(user_of[f"slack#{TEAM}:U1"]).is_active is True
    for gone in ("U2", "U3"):
        assert User.get(user_of[f"slack#{TEAM}:{gone}"]).is_active is False
        assert Identity.get(f"slack#{TEAM}:{gone}").is_active is False
    assert members_of(ALL_USERS) == {user_of[f"slack#{TEAM}:U1"]}

    slack.add_users({"id": "U2", "email": "bob@corp.example"})  # back in the workspace
    third = run(SlackUserSync(), Context(SlackUserSync, {"deactivate_missing": False}))
    assert (third.summary["reactivated"], third.summary["deactivated"], third.summary["swept"]) == (1, 0, False)
    assert User.get(user_of[f"slack#{TEAM}:U2"]).is_active is True


def test_slack_sync_stopped_after_page_2_resumes_from_the_cursor(tables, slack):
    slack.generate_users(1000, domain="corp.example")
    first_context = Context(SlackUserSync, {"page_size": 200}, stop_when=lambda c: len(c.checkpoints) >= 2)
    first = run(SlackUserSync(), first_context)

    assert (first.complete, first.processed, first.succeeded) == (False, 400, 400)
    assert len(slack.calls("users.list")) == 2  # it stopped before fetching page 3
    saved = first_context.saved
    assert saved is not None and saved["pages_done"] == 2 and saved["cursor"] and saved["listing_done"] is False
    assert saved["sync_run_id"] == first_context.run_id and saved["progress"]["created"] == 400

    second_context = Context(SlackUserSync, {"page_size": 200}, checkpoint=saved)
    second = run(SlackUserSync(), second_context)
    assert (second.complete, second.processed, second.succeeded, second.failed) == (True, 1000, 1000, 0)
    assert second.summary["resumed"] is True and second.summary["sync_run_id"] == first_context.run_id
    assert (second.summary["pages"], second.summary["created"], second.summary["deactivated"]) == (5, 1000, 0)
    resumed_calls = slack.calls("users.list")[2:]
    assert len(resumed_calls) == 3 and resumed_calls[0]["args"]["cursor"] == saved["cursor"]
    assert [step for step in second_context.steps if step.startswith("users.list")] == [
        "users.list page 3", "users.list page 4", "users.list page 5"]

    assert len(items(User.Meta.table_name)) == 1000  # no duplicates
    assert {identity.last_seen_run for identity in identities("slack").values()} == {first_context.run_id}


def test_slack_sync_stopped_before_its_sweep_finishes_the_sweep_next_run(tables, slack):
    slack.generate_users(300, domain="corp.example")
    run(SlackUserSync(), Context(SlackUserSync, {"page_size": 100}))
    slack.remove_users(*[f"U{n:08d}" for n in range(151, 301)])

    stop_once_listed = Context(SlackUserSync, {"page_size": 100, "max_deactivate_percent": 50},
                               stop_when=lambda c: bool(c.checkpoints) and c.checkpoints[-1]["listing_done"])
    stopped = run(SlackUserSync(), stop_once_listed)
    assert stopped.complete is False and stopped.summary["deactivated"] == 0
    assert stop_once_listed.saved is not None and stop_once_listed.saved["listing_done"] is True
    calls_before = len(slack.calls("users.list"))

    finishing = Context(SlackUserSync, {"page_size": 100, "max_deactivate_percent": 50},
                        checkpoint=stop_once_listed.saved)
    finished = run(SlackUserSync(), finishing)
    assert len(slack.calls("users.list")) == calls_before  # nothing left to list: only the sweep
    assert (finished.complete, finished.summary["deactivated"], finished.summary["swept"]) == (True, 150, True)
    assert (finished.processed, finished.succeeded) == (150, 150)
    assert sum(1 for identity in identities("slack").values() if identity.is_active) == 150


def test_slack_errors_propagate_with_their_step(tables, slack, monkeypatch):
    slack.add_users({"id": "U1", "email": "ada@corp.example"})
    slack.fail("users.list", "error", 1, error="invalid_auth")
    context = Context(SlackUserSync, {})
    with pytest.raises(SlackApiError) as refused:
        SlackUserSync().run(context)
    assert refused.value.response["error"] == "invalid_auth" and context.steps[-1] == "users.list page 1"

    monkeypatch.setenv("SLACK_BOT_TOKEN", "revoked-token")  # not a Slack token: auth.test says invalid_auth
    slack_client.reset_for_tests()
    context = Context(SlackUserSync, {})
    with pytest.raises(SlackApiError) as invalid:
        SlackUserSync().run(context)
    assert invalid.value.response["error"] == "invalid_auth" and context.steps == ["auth.test"]
    assert context.checkpoints == [] and identities("slack") == {}


# -- google_workspace_sync ------------------------------------------------------------------------


def seed_google(server: GoogleDirectoryServer, people: int = 25) -> None:
    server.add_users([{"primaryEmail": f"person{n:02d}@corp.example", "name": f"Person {n:02d}"}
                      for n in range(1, people + 1)])
    server.update_user("person03@corp.example", suspended=True)
    server.update_user("person04@corp.example", archived=True)
    server.add_group("eng@corp.example", name="Engineering", description="Builders",
                     members=[f"person{n:02d}@corp.example" for n in range(1, 24)] + ["outsider@partner.example"])
    server.add_group("eng@labs.corp.example", name="Labs engineering", members=["person24@corp.example"])
    server.add_group("all-staff@corp.example", name="All staff",
                     members=["eng@corp.example", "person25@corp.example", {"type": "CUSTOMER"}])
    server.add_group("a-very-long-distribution-list-name-for-everyone@corp.example",
                     members=["person01@corp.example"])
    server.add_group("ops@corp.example", name="Operations", members=["person05@corp.example"])


def google_params(**extra: Any) -> dict[str, Any]:
    return {"credential_id": "cred-1", **extra}


def user_of(google_id: str) -> str:
    return Identity.get(f"google#{google_id}").user_id


def test_google_sync_users_groups_and_members_over_several_pages(tables, google):
    ensure_system_groups()
    Group("gw-ops", description="Made by an admin", is_system=False).save()  # not the sync's to touch
    seed_google(google)
    tokens = Tokens()
    context = Context(GoogleWorkspaceSync, google_params(page_size=10))
    result = run(google_job(tokens), context)

    assert result.complete is True
    summary = result.summary
    assert (summary["users_listed"], summary["seen"], summary["created"], summary["users_inactive"]) == (25, 25, 25, 2)
    assert (summary["pages"], summary["groups_listed"], summary["groups_created"]) == (3, 5, 5)
    assert summary["group_pages"] == 1
    assert (result.processed, result.succeeded, result.failed) == (30, 30, 0)
    # The outsider (in eng, and derived into all-staff) matches nobody; GROUP and CUSTOMER members are skipped.
    assert summary["members_unmatched"] == 2 and summary["members_skipped"] == 2
    assert tokens.calls == [("cred-1", (USER_SCOPE, GROUP_SCOPE))]

    google_ids = {identity.provider_email: identity.provider_user_id for identity in identities("google").values()}
    assert len(google_ids) == 25
    assert User.get(user_of(google_ids["person03@corp.example"])).is_active is False  # suspended
    assert User.get(user_of(google_ids["person04@corp.example"])).is_active is False  # archived
    person01 = User.get(user_of(google_ids["person01@corp.example"]))
    assert (person01.display_name, person01.primary_provider, person01.is_active) == ("Person 01", "google", True)
    assert len(members_of(ALL_USERS)) == 23

    groups = {group.name: group for group in Group.scan()}
    eng = groups["gw-eng"]
    assert (eng.source, eng.email, eng.description) == ("google", "eng@corp.example", "Builders")
    [labs] = [g for g in groups.values() if g.email == "eng@labs.corp.example"]
    assert labs.name != "gw-eng" and labs.name.startswith("gw-eng-")  # the collision got the second name
    [ops] = [g for g in groups.values() if g.email == "ops@corp.example"]
    assert ops.name.startswith("gw-ops-") and groups["gw-ops"].description == "Made by an admin"
    assert groups["gw-ops"].source is None and groups[ALL_USERS].is_system is True
    [long] = [g for g in groups.values() if (g.email or "").startswith("a-very-long")]
    assert len(long.name) <= 40 and GROUP_NAME_PATTERN.match(long.name)

    assert members_of("gw-eng") == {user_of(google_ids[f"person{n:02d}@corp.example"]) for n in range(1, 24)}
    staff = members_of("gw-all-staff")  # derived membership: eng's people, and person25
    assert staff == members_of("gw-eng") | {user_of(google_ids["person25@corp.example"])}
    assert members_of(labs.name) == {user_of(google_ids["person24@corp.example"])}
    assert members_of("gw-ops") == set()
    assert summary["memberships_added"] == 23 + 24 + 1 + 1 + 1

    assert ["directory users page 1", "directory users page 2", "directory users page 3"] == [
        step for step in context.steps if step.startswith("directory users page")]
    assert "groups page 1" in context.steps
    assert "members of eng@corp.example page 3" in context.steps  # 24 members, 10 a page
    calls = google.calls("users")
    assert calls[0]["query"]["customer"] == "my_customer" and calls[0]["query"]["maxResults"] == "10"
    assert calls[0]["query"]["projection"] == "basic" and calls[0]["query"]["orderBy"] == "email"
    assert [call["status"] for call in google.calls()] == [200] * len(google.calls())


def test_google_resync_mirrors_membership_changes_and_removed_groups(tables, google):
    seed_google(google)
    run(google_job(), Context(GoogleWorkspaceSync, google_params(page_size=10)))
    ids = {identity.provider_email: identity.provider_user_id for identity in identities("google").values()}
    Grant("help", group_principal("gw-ops")).save()  # an admin granted an agent to a Google group

    google.set_members("eng@corp.example", [f"person{n:02d}@corp.example" for n in range(2, 24)]
                       + ["person25@corp.example"])
    google.remove_group("eng@labs.corp.example")
    google.remove_group("ops@corp.example")
    google.update_user("person05@corp.example", suspended=True)
    second = run(google_job(), Context(GoogleWorkspaceSync, google_params(page_size=10)))

    summary = second.summary
    assert (summary["created"], summary["deactivated"], summary["groups_created"]) == (0, 1, 0)
    assert (summary["groups_removed"], summary["groups_kept_with_grants"], summary["groups_swept"]) == (1, 1, True)
    assert summary["memberships_added"] == 1  # person25 into gw-eng (all-staff already had them)
    # gw-eng lost person01; all-staff lost person01 too (derived); the two removed groups lost theirs.
    assert summary["memberships_removed"] == 1 + 1 + 1 + 1
    eng = members_of("gw-eng")
    assert user_of(ids["person01@corp.example"]) not in eng and user_of(ids["person25@corp.example"]) in eng
    names = {group.name for group in Group.scan()}
    assert not any(name.startswith("gw-eng-") for name in names)  # the labs group is gone
    [ops] = [group for group in Group.scan() if group.email == "ops@corp.example"]
    assert members_of(ops.name) == set() and ops.source == "google"  # kept (granted) but emptied
    assert User.get(user_of(ids["person05@corp.example"])).is_active is False


def test_google_retries_429_and_5xx_honouring_retry_after(tables, google):
    seed_google(google, people=5)
    google.fail_next("429", 1, retry_after=1, endpoint="users")
    google.fail_next("5xx", 1, status=503, endpoint="members")
    result = run(google_job(), Context(GoogleWorkspaceSync, google_params()))

    assert result.complete is True and result.summary["http_retries"] == 2
    limited, answered = google.calls("users")[:2]
    assert (limited["status"], answered["status"]) == (429, 200)
    assert answered["at"] - limited["at"] >= 1.0
    assert [call["status"] for call in google.calls("members")][:2] == [503, 200]
    assert result.summary["seen"] == 5


def test_google_401_fetches_the_token_again_once_then_fails_clearly(tables, google):
    seed_google(google, people=5)
    refreshed = Tokens("ya29.expired", GOOD_TOKEN)
    result = run(google_job(refreshed), Context(GoogleWorkspaceSync, google_params(sync_groups=False)))
    assert result.complete is True and result.summary["reauthentications"] == 1 and len(refreshed.calls) == 2
    assert refreshed.calls[0] == ("cred-1", (USER_SCOPE,))  # no group scope without group sync
    assert [call["status"] for call in google.calls("users")] == [401, 200]

    revoked = Tokens("ya29.revoked")
    context = Context(GoogleWorkspaceSync, google_params())
    with pytest.raises(GoogleAuthError) as refused:
        run(google_job(revoked), context)
    assert refused.value.status == 401 and "401" in str(refused.value) and "reconnect" in str(refused.value)
    assert len(revoked.calls) == 2 and context.steps[-1] == "directory users page 1"


def test_google_sync_resumes_from_its_checkpoints_in_every_phase(tables, google):
    seed_google(google)
    params = google_params(page_size=10)
    in_users = Context(GoogleWorkspaceSync, params, stop_when=lambda c: len(c.checkpoints) >= 2)
    first = run(google_job(), in_users)
    assert first.complete is False and first.processed == 20
    saved = in_users.saved
    assert saved is not None and saved["phase"] == "users" and saved["pages_done"] == 2 and saved["cursor"]
    users_calls = len(google.calls("users"))

    def one_group_done(context: Context) -> bool:
        last = context.checkpoints[-1] if context.checkpoints else {}
        return last.get("phase") == "groups" and len(last.get("groups_done", [])) == 1

    in_groups = Context(GoogleWorkspaceSync, params, checkpoint=saved, stop_when=one_group_done)
    second = run(google_job(), in_groups)
    assert second.complete is False and second.summary["resumed"] is True
    assert google.calls("users")[users_calls]["query"]["pageToken"] == saved["cursor"]
    assert second.summary["sync_run_id"] == in_users.run_id and second.summary["pages"] == 3
    assert in_groups.saved is not None and in_groups.saved["phase"] == "groups"
    assert second.summary["groups_listed"] == 1

    last = Context(GoogleWorkspaceSync, params, checkpoint=in_groups.saved)
    third = run(google_job(), last)
    assert third.complete is True
    summary = third.summary
    assert (summary["created"], summary["seen"], summary["pages"], summary["users_listed"]) == (25, 25, 3, 25)
    assert (summary["groups_listed"], summary["groups_created"], summary["groups_synced"]) == (5, 5, 5)
    assert (third.processed, third.succeeded) == (30, 30)
    assert not any(step.startswith("directory users") for step in last.steps)  # the users were done
    assert len(items(User.Meta.table_name)) == 25
    assert {identity.last_seen_run for identity in identities("google").values()} == {in_users.run_id}
    assert len(members_of("gw-eng")) == 23


def test_google_and_slack_name_the_same_person_once_with_google_as_primary(tables, google, slack):
    slack.add_users({"id": "U1", "name": "ada", "real_name": "ada l.", "display_name": "ada",
                     "email": "ada@corp.example"})
    run(SlackUserSync(), Context(SlackUserSync, {}))
    google.add_users([{"primaryEmail": "ada@corp.example", "name": "Ada Lovelace"}])
    run(google_job(), Context(GoogleWorkspaceSync, google_params(sync_groups=False)))

    [slack_identity] = identities("slack").values()
    [google_identity] = identities("google").values()
    assert slack_identity.user_id == google_identity.user_id and google_identity.is_primary is True
    user = User.get(google_identity.user_id)
    assert (user.primary_provider, user.display_name, user.slack_ids) == ("google", "Ada Lovelace", {TEAM: "U1"})
    run(SlackUserSync(), Context(SlackUserSync, {}))  # Slack's next sync leaves Google's profile alone
    assert User.get(user.user_id).display_name == "Ada Lovelace"
    assert Identity.get(slack_identity.identity_key).is_primary is False
