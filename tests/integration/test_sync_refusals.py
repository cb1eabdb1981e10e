"""A directory sync never switches the company off (issue 12, item 4): a listing of nobody, or a sweep
that would deactivate more than ``max_deactivate_percent`` of the users the sync manages, stops
before deactivating anyone, and the run is recorded ``failed`` with the reason, the numbers and a
warning. The real job code runs against the Slack Web API sandbox and the Google Directory API
stand-in over loopback HTTP, with every table of the template in moto; the last test runs the
Slack sync through the job runner and reads the run back through the jobs service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from insightmesh.directory.models import Identity, User
from insightmesh.directory.providers.google_workspace_sync import GoogleWorkspaceSync
from insightmesh.directory.providers.slack_user_sync import SlackUserSync
from insightmesh.directory.sync import ProviderUser, SyncRefusedError, sync_users
from insightmesh.jobs import runner, service
from insightmesh.jobs.models import JOB_KIND, RUN_KIND, Job, JobState, TaskRun, created_sort, retention
from insightmesh.resilience import CircuitBreaker
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.job_context import RecordingContext, run
from tests.standins.google_directory_server import GoogleDirectoryServer

pytestmark = pytest.mark.timeout(120)

TEAM = "TLOCAL0001"  # the sandbox's workspace
GOOD_TOKEN = "ya29.refusal-token"
NOW = datetime(2026, 3, 1, tzinfo=UTC)




@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[GoogleDirectoryServer]:
    server = GoogleDirectoryServer(port=0, tokens=[GOOD_TOKEN]).start()
    monkeypatch.setenv("GOOGLE_DIRECTORY_API_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


def people(count: int, prefix: str = "U") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{n:03d}", "email": f"person{n:03d}@corp.example"} for n in range(count)]


def active_slack_users() -> set[str]:
    return {key for key in (f"slack#{TEAM}:U{n:03d}" for n in range(20))
            if _exists(key) and User.get(Identity.get(key).user_id).is_active}


def _exists(key: str) -> bool:
    try:
        Identity.get(key)
    except Identity.DoesNotExist:
        return False
    return True


def records(count: int) -> list[ProviderUser]:
    return [ProviderUser(f"T1:U{n}", email=f"u{n}@corp.example") for n in range(count)]


# -- the data layer --------------------------------------------------------------------------------


def test_an_empty_listing_is_refused_with_the_number_of_users_managed(tables: dict[str, str]) -> None:
    sync_users("slack", [records(10)], run_id="run-1", now=NOW, scope="T1")
    report = sync_users("slack", [[]], run_id="run-2", now=NOW, scope="T1", max_deactivate_percent=100)

    assert report.refusal is not None and not report.swept
    assert (report.refusal.reason, report.refusal.listed, report.refusal.managed) == ("listed 0 users", 0, 10)
    assert "listed 0 users" in report.refusal.message("Slack") and "10 active users" in report.refusal.message(
        "Slack")
    assert all(Identity.get(f"slack#T1:U{n}").is_active for n in range(10))


def test_a_sweep_past_the_bound_deactivates_nobody_and_one_within_it_runs(tables: dict[str, str]) -> None:
    sync_users("slack", [records(10)], run_id="run-1", now=NOW, scope="T1")

    refused = sync_users("slack", [records(7)], run_id="run-2", now=NOW, scope="T1", max_deactivate_percent=20)
    assert refused.refusal is not None and not refused.swept and refused.progress.deactivated == 0
    assert (refused.refusal.to_deactivate, refused.refusal.managed, refused.refusal.allowed) == (3, 10, 2)
    assert refused.refusal.reason == "would deactivate 3 of 10 users"
    message = refused.refusal.message("Slack users.list")
    assert "3 of the 10 users" in message and "max_deactivate_percent=20" in message and "(2)" in message
    assert all(Identity.get(f"slack#T1:U{n}").is_active for n in range(10))

    allowed = sync_users("slack", [records(8)], run_id="run-3", now=NOW, scope="T1", max_deactivate_percent=20)
    assert allowed.refusal is None and allowed.swept and allowed.progress.deactivated == 2  # 20% exactly
    assert [Identity.get(f"slack#T1:U{n}").is_active for n in (7, 8, 9)] == [True, False, False]


def test_without_a_bound_the_sweep_runs_as_before(tables: dict[str, str]) -> None:
    sync_users("slack", [records(4)], run_id="run-1", now=NOW, scope="T1")
    report = sync_users("slack", [records(1)], run_id="run-2", now=NOW, scope="T1")
    assert report.refusal is None and report.swept and report.progress.deactivated == 3


# -- the Slack job against the sandbox ---------------------------------------------------------------


def test_slack_listing_nobody_fails_the_run_and_deactivates_nobody(
        slack: SlackSandbox, tables: dict[str, str]) -> None:
    slack.add_users(people(10))
    run(SlackUserSync(), RecordingContext(SlackUserSync, {}))
    assert len(active_slack_users()) == 10

    slack.remove_users(*(person["id"] for person in people(10)))  # users.list now answers nobody but bots
    context = RecordingContext(SlackUserSync, {})
    with pytest.raises(SyncRefusedError, match=r"Slack users\.list listed 0 users") as refused:
        SlackUserSync().run(context)

    assert "10 active users" in str(refused.value)
    assert len(active_slack_users()) == 10  # the company is not switched off
    assert context.warnings == ["listed 0 users"]
    assert context.saved == {}  # the checkpoint is cleared: the next run lists again
    summary = context.reports[-1]["summary"]
    assert (summary["refused"], summary["listed"], summary["managed"], summary["deactivated"]) == (
        "listed 0 users", 0, 10, 0)


def test_slack_sweep_past_the_bound_fails_and_a_raised_bound_lets_it_through(
        slack: SlackSandbox, tables: dict[str, str]) -> None:
    slack.add_users(people(10))
    run(SlackUserSync(), RecordingContext(SlackUserSync, {}))
    slack.remove_users("U000", "U001", "U002")  # 30% gone

    context = RecordingContext(SlackUserSync, {})
    with pytest.raises(SyncRefusedError, match="would deactivate 3 of the 10 users"):
        SlackUserSync().run(context)
    assert len(active_slack_users()) == 10
    assert context.warnings == ["would deactivate 3 of 10 users"]
    assert context.reports[-1]["summary"]["allowed_deactivations"] == 2

    raised = run(SlackUserSync(), RecordingContext(SlackUserSync, {"max_deactivate_percent": 30}))
    assert raised.complete and raised.summary["deactivated"] == 3 and raised.summary["swept"] is True
    assert len(active_slack_users()) == 7


# -- the Google job against the Directory stand-in --------------------------------------------------


def google_job() -> GoogleWorkspaceSync:
    return GoogleWorkspaceSync(token_provider=lambda credential_id, *, required_scopes: GOOD_TOKEN,
                               breaker=CircuitBreaker("google-directory-refusals"))


def test_google_listing_nobody_or_too_many_gone_deactivates_nobody(google: GoogleDirectoryServer) -> None:
    ids = google.add_users([{"primaryEmail": f"person{n:02d}@corp.example", "name": f"Person {n:02d}"}
                            for n in range(10)])
    parameters = {"credential_id": "cred-1", "sync_groups": False}
    run(google_job(), RecordingContext(GoogleWorkspaceSync, parameters))

    def active() -> int:
        return sum(User.get(Identity.get(f"google#{gid}").user_id).is_active for gid in ids)
    assert active() == 10

    for n in range(5):
        google.remove_user(f"person{n:02d}@corp.example")
    context = RecordingContext(GoogleWorkspaceSync, parameters)
    with pytest.raises(SyncRefusedError, match="Google Workspace directory listed 5 users: the sync would "
                                               "deactivate 5 of the 10 users it manages"):
        google_job().run(context)
    assert active() == 10 and context.warnings == ["would deactivate 5 of 10 users"]

    for n in range(5, 10):
        google.remove_user(f"person{n:02d}@corp.example")
    context = RecordingContext(GoogleWorkspaceSync, {**parameters, "max_deactivate_percent": 100})
    with pytest.raises(SyncRefusedError, match="listed 0 users"):  # whatever the bound
        google_job().run(context)
    assert active() == 10 and context.warnings == ["listed 0 users"] and context.saved == {}


# -- through the job runner --------------------------------------------------------------------------


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def test_the_runner_records_the_refused_run_failed_with_reason_numbers_and_warning(
        slack: SlackSandbox, tables: dict[str, str]) -> None:
    slack.add_users(people(4))
    job = Job("d" * 32, kind=JOB_KIND, created_sort=created_sort(NOW, "d" * 32), job_type="slack_user_sync",
              name="Slack directory", schedule_expression="rate(1 day)", schedule_anchor=NOW, parameters={},
              created_by="u-admin", created_at=NOW)
    job.save()

    def run_now(run_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        TaskRun(run_id, job_id=job.job_id, job_type=job.job_type, kind=RUN_KIND, created_sort=created_sort(now, run_id),
                status="queued", trigger="manual", triggered_by="u-admin", created_at=now,
                expires_at=retention(now), summary={}).save()
        runner.run_manual(run_id, job.job_id, LambdaContext())
        return service.get_run(run_id).model_dump(mode="json")

    first = run_now("1" * 32)
    assert first["status"] == "succeeded" and first["warnings"] == [], first
    slack.remove_users(*(person["id"] for person in people(4)))

    refused = run_now("2" * 32)
    assert refused["status"] == "failed", refused
    assert refused["error"]["type"] == "SyncRefusedError"
    assert "listed 0 users" in refused["error"]["message"] and "4 active users" in refused["error"]["message"]
    assert refused["warnings"] == ["listed 0 users"]
    assert (refused["summary"]["listed"], refused["summary"]["managed"], refused["summary"]["deactivated"]) == (
        0, 4, 0)
    assert len(active_slack_users()) == 4
    state = JobState.get(job.job_id, consistent_read=True)
    assert state.last_status == "failed" and state.checkpoint is None  # the next run lists again
