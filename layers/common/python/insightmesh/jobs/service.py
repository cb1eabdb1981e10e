"""Jobs and task runs for the API: a job and its schedule change together, runs are listed with
their job joined in.

**A job and its schedule, consistently.** DynamoDB and EventBridge Scheduler share no
transaction, so each operation orders its two writes so that a failure in between is undone
(compensated) or harmless:

* create: the schedule first (``job-<id>``), then the job with its audit entry in one
  transaction; if that fails, the schedule is deleted again. A crash between the two leaves a
  schedule without a job; when it fires, the runner finds no job and deletes the schedule.
* update (incl. pause/resume): the schedule is replaced, then the job is written conditional on
  the version read (with its audit entry); if that fails (409: changed meanwhile), the old
  schedule definition is put back. Resuming a job whose one-off ``at()`` has passed is a 422
  (it would fire at once), as creating one is.
* delete: the schedule is deleted, then the job (conditional on its version, with its audit
  entry); if that fails, the schedule is recreated. A job is never left without a schedule by a
  failure the API sees.

**Run now** writes a ``queued`` task run with its audit entry, then sends ``{"run_id", "job_id"}``
to ``JOB_QUEUE_URL`` for job_runner. If the send fails, the run is marked failed (error type
``EnqueueError``) and the API answers 503 — a run is never left queued forever.

**Listing runs**: one Query of the index that fits the filters (``by-job`` when ``job_id`` is
given, with ``status`` as a filter expression; else ``by-status``; else ``by-kind``, every run),
newest first, then one ``BatchGetItem`` of the page's jobs — 2 calls whatever the page size.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from insightmesh import tracing_messaging
from insightmesh.api.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationFailedError
from insightmesh.api.pagination import key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.aws import client
from insightmesh.clock import utc_now
from insightmesh.job_contract import JobParameters
from insightmesh.jobs import schedules
from insightmesh.jobs.models import JOB_KIND, RUN_KIND, Job, JobState, TaskRun, created_sort, retention
from insightmesh.jobs.registry import job_type, job_type_names
from insightmesh.jobs.schedule_expressions import PastScheduleError, parse_schedule_expression
from insightmesh.jobs.schemas import (
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    JobTypeOut,
    LastRun,
    RunErrorOut,
    RunJobOut,
    ScheduleIn,
    ScheduleOut,
    SchedulePreview,
    TaskRunOut,
    TaskRunPage,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import Timeouts

ENQUEUE_TIMEOUTS: Final = Timeouts(connect=2, read=5)


def job_target(job_id: str) -> str:
    return f"job:{job_id}"


def run_target(run_id: str) -> str:
    return f"task-run:{run_id}"


# -- job types ------------------------------------------------------------------------------------


def list_job_types() -> list[JobTypeOut]:
    out = []
    for name in job_type_names():
        cls = job_type(name)
        out.append(JobTypeOut(name=name, title=cls.title, description=cls.description,
                              parameters_schema=cls.Parameters.model_json_schema()))
    return out


def validate_parameters(type_name: str, parameters: dict[str, Any]) -> JobParameters:
    """The job type's parameters model, or 422 naming what is wrong."""
    try:
        cls = job_type(type_name)
    except KeyError:
        raise ValidationFailedError(f"unknown job type {type_name!r}; one of: {', '.join(job_type_names())}",
                                    details=[{"loc": ["body", "job_type"], "msg": "unknown job type",
                                              "type": "value_error"}]) from None
    try:
        return cls.Parameters.model_validate(parameters)
    except ValidationError as error:
        details = [{"loc": ["body", "parameters", *map(str, issue["loc"])], "msg": issue["msg"],
                    "type": issue["type"]} for issue in error.errors()]
        raise ValidationFailedError(f"the parameters are not valid for job type {type_name!r}",
                                    details=details) from None


def preview_schedule(expression: str, timezone: str, *, count: int = 3) -> SchedulePreview:
    """When a schedule saved now would fire (its ``rate()`` anchored now, as create and update do),
    or 422 with the same messages as POST /api/jobs."""
    try:
        schedule = ScheduleIn(expression=expression, timezone=timezone)
    except ValidationError as error:
        details = [{"loc": ["query", *map(str, issue["loc"])], "msg": issue["msg"], "type": issue["type"]}
                   for issue in error.errors()]
        raise ValidationFailedError("the schedule is not valid", details=details) from None
    now = utc_now()
    return SchedulePreview(expression=schedule.expression.strip(), timezone=schedule.timezone,
                           upcoming=schedules.upcoming(schedule.expression.strip(), schedule.timezone, anchor=now,
                                                       enabled=True, count=count, now=now))


# -- jobs ------------------------------------------------------------------------------------------


def _spec(job: Job) -> schedules.ScheduleSpec:
    return schedules.ScheduleSpec(job.schedule_expression, job.schedule_timezone, job.enabled)


def _snapshot(job: Job) -> dict[str, Any]:
    return {"name": job.name, "job_type": job.job_type, "description": job.description,
            "schedule": {"expression": job.schedule_expression, "timezone": job.schedule_timezone},
            "parameters": job.parameters, "enabled": job.enabled}


def job_out(job: Job, state: JobState | None = None, *, now: datetime | None = None) -> JobOut:
    last = None
    if state is not None and state.last_run_id:
        last = LastRun(run_id=state.last_run_id, status=state.last_status or "unknown",
                       finished_at=state.last_finished_at)
    return JobOut(
        job_id=job.job_id, name=job.name, job_type=job.job_type, description=job.description,
        schedule=ScheduleOut(
            expression=job.schedule_expression, timezone=job.schedule_timezone, enabled=job.enabled,
            next_run=schedules.next_run(job.schedule_expression, job.schedule_timezone, anchor=job.schedule_anchor,
                                        enabled=job.enabled, now=now),
            upcoming=schedules.upcoming(job.schedule_expression, job.schedule_timezone, anchor=job.schedule_anchor,
                                        enabled=job.enabled, now=now),
            schedule_name=schedules.schedule_name(job.job_id)),
        parameters=dict(job.parameters or {}), enabled=job.enabled, created_by=job.created_by,
        created_at=job.created_at, updated_by=job.updated_by, updated_at=job.updated_at, version=job.version or 1,
        last_run=last, has_checkpoint=bool(state is not None and state.checkpoint is not None),
    )


def require_job(job_id: str) -> Job:
    try:
        return Job.get(job_id, consistent_read=True)
    except Job.DoesNotExist:
        raise NotFoundError(f"no job {job_id!r}") from None


def _state(job_id: str) -> JobState | None:
    try:
        return JobState.get(job_id, consistent_read=True)
    except JobState.DoesNotExist:
        return None


def get_job(job_id: str) -> JobOut:
    return job_out(require_job(job_id), _state(job_id))


def list_jobs(*, limit: int, cursor: str | None) -> JobPage:
    """One ``Query by-kind`` + one ``BatchGetItem`` of the jobs' states."""
    scope = "jobs|by-kind"
    found, last_key = query_page(Job.by_kind.query(JOB_KIND, limit=limit,
                                                   last_evaluated_key=start_key(cursor, scope=scope)), Job)
    states = _batch_states(job.job_id for job in found)
    return JobPage(items=[job_out(job, states.get(job.job_id)) for job in found],
                   next_cursor=key_cursor(last_key, scope=scope))


def _batch_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    keys = sorted(set(job_ids))
    return {state.job_id: state for state in JobState.batch_get(keys)} if keys else {}


def create_job(body: JobCreate, *, actor: Principal, request_id: str) -> JobOut:
    parameters = validate_parameters(body.job_type, body.parameters)
    now = utc_now()
    job_id = uuid.uuid4().hex
    job = Job(job_id, kind=JOB_KIND, created_sort=created_sort(now, job_id), job_type=body.job_type,
              name=body.name, description=body.description, schedule_expression=body.schedule.expression.strip(),
              schedule_timezone=body.schedule.timezone, schedule_anchor=now,
              parameters=parameters.model_dump(mode="json"), enabled=body.enabled, created_by=actor.user_id,
              created_at=now)
    schedules.create(job_id, _spec(job))
    with _undone_on_failure(lambda: schedules.delete(job_id), "delete the schedule of a job that was not created",
                            job_id):
        tx = Tx()
        tx.put(job, condition=Job.job_id.does_not_exist(), error=ConflictError("the job id is taken; retry"))
        tx.audit(audit_log.entry(actor=actor, action="job.create", target=job_target(job_id),
                                 after=_snapshot(job), request_id=request_id))
        tx.commit()  # sets job.version (pynamodb updates the local version after the transaction)
    return job_out(job)


def update_job(job_id: str, patch: JobPatch, *, actor: Principal, request_id: str,
               action: str = "job.update") -> JobOut:
    job = require_job(job_id)
    if job.version != patch.version:
        raise ConflictError(f"the job changed since you read it (version {job.version}, not {patch.version}); "
                            "read it again")
    changes = {name: getattr(patch, name) for name in patch.model_fields_set - {"version"}}
    if patch.schedule is not None:
        changes["schedule"] = patch.schedule.model_dump()  # with its defaults (timezone)
    return _apply(job, changes, actor=actor, request_id=request_id, action=action)


def set_enabled(job_id: str, enabled: bool, *, actor: Principal, request_id: str) -> JobOut:
    """Pause (``False``) or resume: the schedule is disabled or enabled with the job."""
    job = require_job(job_id)
    action = "job.resume" if enabled else "job.pause"
    if job.enabled == enabled:
        return job_out(job, _state(job_id))
    return _apply(job, {"enabled": enabled}, actor=actor, request_id=request_id, action=action)


def _require_future_at(job: Job) -> None:
    """Resuming a one-off ``at()`` whose time has passed would fire it at once: 422 instead."""
    try:
        parse_schedule_expression(job.schedule_expression, job.schedule_timezone, not_before=utc_now())
    except PastScheduleError as error:
        raise ValidationFailedError(
            f"{error}; give the job a schedule to come (PATCH schedule) to enable it again",
            details=[{"loc": ["body", "enabled"], "msg": str(error), "type": "value_error"}]) from None


def _apply(job: Job, changes: dict[str, Any], *, actor: Principal, request_id: str, action: str) -> JobOut:
    before = _snapshot(job)
    old_spec = _spec(job)
    if changes.get("enabled") is True and not job.enabled and "schedule" not in changes:
        _require_future_at(job)  # a new schedule was checked when the request was read
    if "parameters" in changes:
        job.parameters = validate_parameters(job.job_type, changes["parameters"]).model_dump(mode="json")
    for field in ("name", "description", "enabled"):
        if field in changes:
            setattr(job, field, changes[field])
    now = utc_now()
    if "schedule" in changes:
        job.schedule_expression = changes["schedule"]["expression"].strip()
        job.schedule_timezone = changes["schedule"]["timezone"]
        job.schedule_anchor = now
    job.updated_at, job.updated_by = now, actor.user_id
    new_spec = _spec(job)
    schedule_changed = new_spec != old_spec
    if schedule_changed:
        schedules.update(job.job_id, new_spec)

    def undo() -> None:
        if schedule_changed:
            schedules.update(job.job_id, old_spec)

    with _undone_on_failure(undo, "restore the schedule of a job whose update failed", job.job_id):
        tx = Tx()
        tx.put(job, condition=None, error=ConflictError("the job changed meanwhile; read it again"))
        tx.audit(audit_log.entry(actor=actor, action=action, target=job_target(job.job_id), before=before,
                                 after=_snapshot(job), request_id=request_id))
        tx.commit()
    return job_out(job, _state(job.job_id))


def delete_job(job_id: str, *, actor: Principal, request_id: str) -> None:
    job = require_job(job_id)
    schedules.delete(job_id)
    with _undone_on_failure(lambda: schedules.create(job_id, _spec(job)),
                            "recreate the schedule of a job that was not deleted", job_id):
        tx = Tx()
        tx.delete(job, condition=None, error=ConflictError("the job changed meanwhile; read it again"))
        tx.audit(audit_log.entry(actor=actor, action="job.delete", target=job_target(job_id), before=_snapshot(job),
                                 request_id=request_id))
        tx.commit()
    try:
        JobState(job_id).delete()
    except (ClientError, BotoCoreError) as error:  # the state is only runtime data; the job is gone
        get_logger().warning("job state not deleted", extra={"job_id": job_id, "error": str(error)})


@contextmanager
def _undone_on_failure(undo: Callable[[], object], what: str, job_id: str) -> Iterator[None]:
    """Run the block (the job's write); if it fails, ``undo`` the schedule change made before it,
    then re-raise the original failure — an undo that fails too is logged, not raised over it."""
    try:
        yield
    except BaseException:
        try:
            undo()
        except Exception as error:  # noqa: BLE001 - the original failure is what the caller must see
            get_logger().error(f"could not {what}; the runner repairs a schedule without a job when it fires",
                               extra={"job_id": job_id, "error": str(error)})
        raise


# -- run now --------------------------------------------------------------------------------------


def run_now(job_id: str, *, actor: Principal, request_id: str) -> TaskRunOut:
    job = require_job(job_id)
    validate_parameters(job.job_type, dict(job.parameters or {}))
    now = utc_now()
    run_id = uuid.uuid4().hex
    run = TaskRun(run_id, job_id=job_id, job_type=job.job_type, kind=RUN_KIND, created_sort=created_sort(now, run_id),
                  status="queued", trigger="manual", triggered_by=actor.user_id, created_at=now,
                  correlation_id=request_id, expires_at=retention(now), summary={})
    tx = Tx()
    tx.put(run, condition=TaskRun.run_id.does_not_exist(), error=ConflictError("the run id is taken; retry"))
    tx.audit(audit_log.entry(actor=actor, action="job.run", target=job_target(job_id),
                             after={"run_id": run_id, "trigger": "manual"}, request_id=request_id))
    tx.commit()
    queue_url = os.environ.get("JOB_QUEUE_URL", "")
    try:
        if not queue_url:
            raise ValueError("JOB_QUEUE_URL is not set")
        with tracing_messaging.send_span(queue_url) as span:  # the runner's span is this one's child
            tracing_messaging.sent(span, client("sqs", timeouts=ENQUEUE_TIMEOUTS, attempts=3).send_message(
                QueueUrl=queue_url, MessageBody=json.dumps({"run_id": run_id, "job_id": job_id}),
                MessageAttributes=tracing_messaging.message_attributes(request_id)))
    except (ClientError, BotoCoreError, ValueError) as error:
        get_logger().error("run not enqueued", extra={"job_id": job_id, "run_id": run_id, "error": str(error)})
        finished = utc_now()
        run.update(actions=[TaskRun.status.set("failed"), TaskRun.finished_at.set(finished),
                            TaskRun.error.set({"type": "EnqueueError", "message": "the run could not be queued: "
                                               + type(error).__name__, "step": "enqueue", "traceback": None})])
        raise ServiceUnavailableError("the run could not be queued; it is recorded as failed — try again") from error
    return run_out(run, {job_id: job})


# -- runs -----------------------------------------------------------------------------------------


def run_out(run: TaskRun, jobs: dict[str, Job]) -> TaskRunOut:
    job = jobs.get(run.job_id)
    error = None
    if run.error is not None:
        error = RunErrorOut(type=run.error.type, message=run.error.message, step=run.error.step,
                            traceback=run.error.traceback)
    return TaskRunOut(
        run_id=run.run_id, job_id=run.job_id, job_type=run.job_type,
        job=RunJobOut(job_id=run.job_id, name=job.name if job else None, job_type=run.job_type, exists=job is not None),
        status=run.status, trigger=run.trigger, triggered_by=run.triggered_by,
        scheduled_time=run.scheduled_time, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, duration_ms=int(run.duration_ms) if run.duration_ms is not None else None,
        records_processed=int(run.records_processed or 0), records_succeeded=int(run.records_succeeded or 0),
        records_failed=int(run.records_failed or 0), summary=dict(run.summary or {}),
        warnings=list(run.warnings or []), error=error,
        resumed_from=run.resumed_from, correlation_id=run.correlation_id,
    )


def _jobs_of(runs: list[TaskRun]) -> dict[str, Job]:
    keys = sorted({run.job_id for run in runs})
    return {job.job_id: job for job in Job.batch_get(keys)} if keys else {}


def get_run(run_id: str) -> TaskRunOut:
    try:
        run = TaskRun.get(run_id, consistent_read=True)
    except TaskRun.DoesNotExist:
        raise NotFoundError(f"no task run {run_id!r}") from None
    return run_out(run, _jobs_of([run]))


def list_runs(*, job_id: str | None, status: str | None, limit: int, cursor: str | None) -> TaskRunPage:
    """Newest first; one Query and one BatchGetItem per page (module docstring)."""
    scope = f"task-runs|{job_id or ''}|{status or ''}"
    last = start_key(cursor, scope=scope)
    if job_id is not None:
        results = TaskRun.by_job.query(job_id, filter_condition=(TaskRun.status == status) if status else None,
                                       scan_index_forward=False, limit=limit, last_evaluated_key=last)
    elif status is not None:
        results = TaskRun.by_status.query(status, scan_index_forward=False, limit=limit, last_evaluated_key=last)
    else:
        results = TaskRun.by_kind.query(RUN_KIND, scan_index_forward=False, limit=limit, last_evaluated_key=last)
    runs, last_key = query_page(results, TaskRun)
    jobs = _jobs_of(runs)
    return TaskRunPage(items=[run_out(run, jobs) for run in runs], next_cursor=key_cursor(last_key, scope=scope))
