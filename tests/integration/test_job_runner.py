"""The jobs service and job_runner against moto (DynamoDB, EventBridge Scheduler, SQS): a job and
its schedule stay consistent when a write fails, runs record every outcome with its context, the
lease lets one start run and skips the other, the deadline stops a run with a checkpoint that the
next run continues from, and listing runs costs a constant number of calls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import pytest

from insightmesh.api.errors import ConflictError, ServiceUnavailableError
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.job_contract import JobContext, JobParameters, JobResult
from insightmesh.jobs import registry, runner, service
from insightmesh.jobs.models import Job, JobState, TaskRun
from insightmesh.jobs.schemas import JobCreate, JobPatch

if TYPE_CHECKING:
    from tests.integration.conftest import DynamoCalls

ADMIN = Principal(user_id="u-admin", email="admin@example.com", is_admin=True, via="token")


class CountingParameters(JobParameters):
    items: int = 10
    per_page: int = 3


class CountingJob:
    """Counts ``items`` in pages, checkpointing after each page and stopping when told to."""

    name: ClassVar[str] = "counting"
    title: ClassVar[str] = "Counting (test)"
    description: ClassVar[str] = "Counts items in pages."
    Parameters: ClassVar[type[JobParameters]] = CountingParameters
    pages_seen: ClassVar[list[int]] = []

    def run(self, context: JobContext) -> JobResult:
        parameters = context.parameters
        assert isinstance(parameters, CountingParameters)
        done = (context.load_checkpoint() or {}).get("done", 0)
        while done < parameters.items:
            if context.should_stop():
                return JobResult(processed=done, succeeded=done, summary={"done": done}, complete=False)
            context.step(f"page {done // parameters.per_page + 1}")
            CountingJob.pages_seen.append(done)
            done = min(parameters.items, done + parameters.per_page)
            context.save_checkpoint({"done": done})
            context.progress(processed=done, succeeded=done, failed=0, summary={"done": done})
        return JobResult(processed=done, succeeded=done, summary={"done": done})


class ExplodingJob:
    name: ClassVar[str] = "exploding"
    title: ClassVar[str] = "Exploding (test)"
    description: ClassVar[str] = "Fails at its second step."
    Parameters: ClassVar[type[JobParameters]] = JobParameters

    def run(self, context: JobContext) -> JobResult:
        context.step("connect")
        context.progress(processed=4, succeeded=3, failed=1)
        context.step("fetch page 2")
        raise RuntimeError("provider said no to token xoxb-123456789012-abcdefghijkl")


class FakeLambdaContext:
    """The one Lambda context method the runner uses; time advances by ``tick`` ms per call."""

    def __init__(self, remaining_ms: int, tick: int = 0) -> None:
        self.remaining = remaining_ms
        self.tick = tick

    def get_remaining_time_in_millis(self) -> int:
        self.remaining -= self.tick
        return self.remaining


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[Any]:
    monkeypatch.setitem(registry._TYPES, "counting", f"{__name__}:CountingJob")
    monkeypatch.setitem(registry._TYPES, "exploding", f"{__name__}:ExplodingJob")
    registry.job_type.cache_clear()
    CountingJob.pages_seen.clear()
    scheduler = boto3.client("scheduler")
    scheduler.create_schedule_group(Name="test-jobs")
    queue_url = boto3.client("sqs").create_queue(QueueName="test-job-queue")["QueueUrl"]
    monkeypatch.setenv("JOB_SCHEDULE_GROUP", "test-jobs")
    monkeypatch.setenv("JOB_RUNNER_ARN", "arn:aws:lambda:us-east-1:123456789012:function:runner")
    monkeypatch.setenv("JOB_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    monkeypatch.setenv("JOB_QUEUE_URL", queue_url)
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    yield type("Jobs", (), {"service": service, "runner": runner, "scheduler": scheduler, "queue_url": queue_url})
    registry.job_type.cache_clear()


def create(jobs: Any, **overrides: Any) -> Any:
    body = {"name": "Count", "job_type": "counting", "schedule": {"expression": "rate(1 hour)"},
            "parameters": {"items": 10, "per_page": 3}, **overrides}
    return jobs.service.create_job(JobCreate.model_validate(body), actor=ADMIN, request_id="req-1")


def schedule(jobs: Any, job_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = jobs.scheduler.get_schedule(Name=f"job-{job_id}", GroupName="test-jobs")
    except jobs.scheduler.exceptions.ResourceNotFoundException:
        return None
    return found


def run_now(jobs: Any, job_id: str, context: FakeLambdaContext | None = None) -> Any:
    queued = jobs.service.run_now(job_id, actor=ADMIN, request_id="req-run")
    messages = boto3.client("sqs").receive_message(QueueUrl=jobs.queue_url, MaxNumberOfMessages=10,
                                                   MessageAttributeNames=["All"])["Messages"]
    records = [{"messageId": m["MessageId"], "body": m["Body"], "messageAttributes": {
        "correlation_id": {"stringValue": "corr-1", "dataType": "String"}}} for m in messages]
    result = jobs.runner.handle({"Records": records}, context or FakeLambdaContext(600_000))
    assert result == {"batchItemFailures": []}
    return jobs.service.get_run(queued.run_id)


def test_a_job_is_created_with_its_schedule_and_the_input_names_the_job(jobs: Any) -> None:
    job = create(jobs, schedule={"expression": "cron(0 6 ? * MON *)", "timezone": "Europe/Berlin"})
    found = schedule(jobs, job.job_id)
    assert found is not None and found["ScheduleExpression"] == "cron(0 6 ? * MON *)"
    assert found["ScheduleExpressionTimezone"] == "Europe/Berlin" and found["State"] == "ENABLED"
    target = found["Target"]
    assert target["Arn"].endswith(":function:runner") and target["RoleArn"].endswith("role/scheduler")
    assert json.loads(target["Input"])["job_id"] == job.job_id
    assert job.schedule.next_run is not None and job.version == 1


def test_a_failed_job_write_removes_the_schedule_it_created(jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any) -> None:
        raise ConflictError("simulated")
    monkeypatch.setattr(Tx, "commit", refuse)
    with pytest.raises(ConflictError):
        create(jobs)
    assert jobs.scheduler.list_schedules(GroupName="test-jobs")["Schedules"] == []
    monkeypatch.undo()


def test_a_failed_update_or_delete_puts_the_schedule_back(jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    job = create(jobs)
    original = Tx.commit

    def refuse(self: Any) -> None:
        raise ConflictError("simulated")
    monkeypatch.setattr(Tx, "commit", refuse)
    with pytest.raises(ConflictError):
        jobs.service.update_job(job.job_id, JobPatch(version=1, schedule={"expression": "rate(5 minutes)"}),
                                actor=ADMIN, request_id="r")
    assert schedule(jobs, job.job_id)["ScheduleExpression"] == "rate(1 hour)"
    with pytest.raises(ConflictError):
        jobs.service.set_enabled(job.job_id, False, actor=ADMIN, request_id="r")
    assert schedule(jobs, job.job_id)["State"] == "ENABLED"
    with pytest.raises(ConflictError):
        jobs.service.delete_job(job.job_id, actor=ADMIN, request_id="r")
    assert schedule(jobs, job.job_id) is not None
    monkeypatch.setattr(Tx, "commit", original)
    jobs.service.delete_job(job.job_id, actor=ADMIN, request_id="r")
    assert schedule(jobs, job.job_id) is None


def test_run_now_succeeds_with_counts_and_progress(jobs: Any) -> None:
    job = create(jobs)
    run = run_now(jobs, job.job_id)
    assert run.status == "succeeded" and run.trigger == "manual" and run.triggered_by == ADMIN.user_id
    assert (run.records_processed, run.records_succeeded, run.records_failed) == (10, 10, 0)
    assert run.summary == {"done": 10} and run.duration_ms is not None and run.error is None
    assert run.correlation_id == "req-run" and run.job.name == "Count"
    state = jobs.service.get_job(job.job_id)
    assert state.last_run is not None and state.last_run.status == "succeeded" and not state.has_checkpoint


def test_a_job_that_raises_is_failed_with_type_message_step_and_traceback(jobs: Any) -> None:
    job = create(jobs, job_type="exploding", parameters={})
    run = run_now(jobs, job.job_id)
    assert run.status == "failed" and run.error is not None
    assert run.error.type == "RuntimeError" and run.error.step == "fetch page 2"
    assert "provider said no" in run.error.message and "xoxb-123456789012" not in run.error.message
    assert "raise RuntimeError" in (run.error.traceback or "")
    assert (run.records_processed, run.records_failed) == (4, 1)


def test_the_deadline_stops_a_run_with_a_checkpoint_and_the_next_run_continues(
        jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_DEADLINE_MARGIN_SECONDS", "5")
    job = create(jobs)
    # 12 s left, 1.5 s per look at the clock: the run stops after a few pages.
    stopped = run_now(jobs, job.job_id, FakeLambdaContext(12_000, tick=1_500))
    assert stopped.status == "timed_out" and stopped.error is not None
    assert stopped.error.type == "DeadlineApproaching" and 0 < stopped.records_processed < 10
    assert jobs.service.get_job(job.job_id).has_checkpoint
    resumed = run_now(jobs, job.job_id)
    assert resumed.status == "succeeded" and resumed.resumed_from == stopped.run_id
    assert resumed.records_processed == 10
    assert CountingJob.pages_seen == [0, 3, 6, 9][:len(CountingJob.pages_seen)]  # no page done twice
    assert sorted(set(CountingJob.pages_seen)) == CountingJob.pages_seen
    assert not jobs.service.get_job(job.job_id).has_checkpoint


def test_a_start_while_the_lease_is_held_is_skipped_and_an_expired_lease_is_taken_over(jobs: Any) -> None:
    job = create(jobs)
    holder = run_now(jobs, job.job_id)  # a real run, then pretend it is still running
    TaskRun(holder.run_id).update(actions=[TaskRun.status.set("running")])
    JobState(job.job_id).update(actions=[JobState.lease_run_id.set(holder.run_id),
                                         JobState.lease_expires_at.set(int(time.time()) + 300)])
    skipped = run_now(jobs, job.job_id)
    assert skipped.status == "skipped" and skipped.summary["running_run_id"] == holder.run_id

    JobState(job.job_id).update(actions=[JobState.lease_expires_at.set(int(time.time()) - 1)])
    taken = run_now(jobs, job.job_id)
    assert taken.status == "succeeded"
    stale = jobs.service.get_run(holder.run_id)
    assert stale.status == "timed_out" and stale.error is not None and stale.error.type == "LeaseExpired"


def test_scheduled_runs_are_idempotent_per_firing_skip_when_paused_and_repair_orphans(jobs: Any) -> None:
    job = create(jobs)
    context = FakeLambdaContext(600_000)
    event = {"job_id": job.job_id, "scheduled_time": "2026-11-27T10:00:00Z", "execution_id": "exec-1",
             "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/test-jobs/job-x"}
    first = jobs.runner.handle(event, context)
    again = jobs.runner.handle(event, context)  # Scheduler's retry of the same firing
    assert first == again
    runs = jobs.service.list_runs(job_id=job.job_id, status=None, limit=10, cursor=None).items
    assert len(runs) == 1 and runs[0].trigger == "scheduler" and runs[0].status == "succeeded"
    assert runs[0].scheduled_time == "2026-11-27T10:00:00Z" and runs[0].correlation_id == "exec-1"

    jobs.service.set_enabled(job.job_id, False, actor=ADMIN, request_id="r")
    paused = jobs.runner.handle({**event, "scheduled_time": "2026-11-27T11:00:00Z"}, context)
    assert jobs.service.get_run(paused["run_id"]).status == "skipped"

    orphan = create(jobs)
    Job.get(orphan.job_id).delete()  # a crash left the schedule without its job
    assert jobs.runner.handle({**event, "job_id": orphan.job_id}, context) == {"run_id": None}
    assert schedule(jobs, orphan.job_id) is None


def test_a_queued_run_of_a_deleted_job_is_cancelled(jobs: Any) -> None:
    job = create(jobs)
    queued = jobs.service.run_now(job.job_id, actor=ADMIN, request_id="r")
    jobs.service.delete_job(job.job_id, actor=ADMIN, request_id="r")
    messages = boto3.client("sqs").receive_message(QueueUrl=jobs.queue_url)["Messages"]
    jobs.runner.handle({"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]},
                       FakeLambdaContext(60_000))
    run = jobs.service.get_run(queued.run_id)
    assert run.status == "cancelled" and run.job.exists is False and run.job.name is None


def test_a_run_now_batch_reports_only_the_records_not_processed(jobs: Any) -> None:
    """Powertools' partial batch response: the good record runs, the unreadable ones are failed (so SQS
    delivers them again), and a batch where every record fails is still answered, not raised."""
    job = create(jobs)
    queued = jobs.service.run_now(job.job_id, actor=ADMIN, request_id="r")
    message = boto3.client("sqs").receive_message(QueueUrl=jobs.queue_url)["Messages"][0]
    records = [{"messageId": message["MessageId"], "body": message["Body"]},
               {"messageId": "not-json", "body": "{"}, {"messageId": "no-run-id", "body": "{}"}]
    result = jobs.runner.handle({"Records": records}, FakeLambdaContext(600_000))
    assert result == {"batchItemFailures": [{"itemIdentifier": "not-json"}, {"itemIdentifier": "no-run-id"}]}
    assert jobs.service.get_run(queued.run_id).status == "succeeded"
    every = jobs.runner.handle({"Records": records[1:]}, FakeLambdaContext(600_000))
    assert every == {"batchItemFailures": [{"itemIdentifier": "not-json"}, {"itemIdentifier": "no-run-id"}]}


def test_a_run_that_cannot_be_queued_is_recorded_failed(jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    job = create(jobs)
    monkeypatch.setenv("JOB_QUEUE_URL", jobs.queue_url + "-missing")
    with pytest.raises(ServiceUnavailableError):
        jobs.service.run_now(job.job_id, actor=ADMIN, request_id="r")
    runs = jobs.service.list_runs(job_id=job.job_id, status=None, limit=10, cursor=None).items
    assert [(run.status, run.error.type if run.error else None) for run in runs] == [("failed", "EnqueueError")]


def test_listing_runs_costs_two_calls_whatever_the_page_size(jobs: Any, dynamo_calls: DynamoCalls) -> None:
    first, second = create(jobs, name="A"), create(jobs, name="B")
    for job in (first, second, first, second, first):
        run_now(jobs, job.job_id)
    for filters in ({}, {"job_id": first.job_id}, {"status": "succeeded"}, {"job_id": first.job_id,
                                                                            "status": "succeeded"}):
        arguments = {"job_id": None, "status": None, "cursor": None, **filters}
        small = dynamo_calls.during(lambda arguments=arguments: jobs.service.list_runs(limit=1, **arguments))
        large = dynamo_calls.during(lambda arguments=arguments: jobs.service.list_runs(limit=100, **arguments))
        assert len(small) == len(large) == 2, (filters, small, large)
    page = jobs.service.list_runs(job_id=None, status=None, limit=2, cursor=None)
    assert len(page.items) == 2 and page.next_cursor
    rest = jobs.service.list_runs(job_id=None, status=None, limit=100, cursor=page.next_cursor)
    assert len(rest.items) == 3
    assert {item.run_id for item in page.items}.isdisjoint({item.run_id for item in rest.items})
    created = [item.created_at for item in [*page.items, *rest.items]]
    assert created == sorted(created, reverse=True)
