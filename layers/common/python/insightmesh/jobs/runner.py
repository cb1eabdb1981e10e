"""job_runner: run one job and record its task run — whatever happens.

**Triggers.** A job's EventBridge Scheduler schedule invokes the function with
``{"job_id", "scheduled_time", "execution_id", "schedule_arn"}``; "run now" sends
``{"run_id", "job_id"}`` to ``JOB_QUEUE_URL`` (an SQS event, one record per invocation). A
scheduled run's id is derived from the job and the scheduled time, so a retried delivery of the
same firing finds its run and does nothing.

**Lease.** Before running, the runner takes the job's lease in ``JOB_STATE_TABLE`` with one
conditional ``UpdateItem``: free, expired, or already this run's. The lease lasts the Lambda's
remaining time plus a minute. A start that finds the lease held is recorded as ``skipped`` (with
the run holding it); a start that finds it expired takes it over and records the run that held
it as ``timed_out`` (its Lambda was stopped without recording an outcome). The lease is released
(conditional on holding it) when the run ends.

**Deadline.** ``should_stop()`` turns true when the remaining time drops below the margin
(``JOB_DEADLINE_MARGIN_SECONDS``, default the smaller of 30 s and a fifth of the time the run
started with). A job type stops there, saves its checkpoint and returns incomplete; the run is
recorded ``timed_out`` with its progress, and the next run continues from the checkpoint.

**Outcome.** ``succeeded`` with counts and a summary; ``failed`` with the error type, message, a
traceback excerpt and the step (messages and tracebacks redacted); ``timed_out``; ``skipped``;
``cancelled`` (the job was deleted before a queued run started). The warnings a job gave
(``context.warn``) are recorded with any of its outcomes. A job's exception never fails
the invocation (the run is recorded; retrying is the schedule's business); an infrastructure
failure before the outcome is recorded does, so SQS or Scheduler retries it.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from insightmesh import tracing, tracing_messaging
from insightmesh.aws import LambdaContextLike, condition_failed, put_if_absent
from insightmesh.clock import utc_now
from insightmesh.job_contract import JobParameters, JobResult
from insightmesh.jobs import schedules
from insightmesh.jobs.models import (
    FINISHED,
    MAX_WARNING_LENGTH,
    MAX_WARNINGS,
    RUN_KIND,
    Job,
    JobState,
    TaskRun,
    created_sort,
    retention,
)
from insightmesh.jobs.registry import job_type
from insightmesh.observability import bind_correlation_id, get_logger, redact, redact_text

logger = get_logger("job_runner")

RUN_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://insightmesh/jobs/scheduled-run")
LEASE_GRACE_SECONDS: Final = 60
PROGRESS_INTERVAL_SECONDS: Final = 2.0
TRACEBACK_LINES: Final = 24
MAX_MESSAGE: Final = 2000
MAX_TRACEBACK: Final = 6000


def scheduled_run_id(job_id: str, scheduled_time: str | None) -> str:
    if not scheduled_time:
        return uuid.uuid4().hex
    return uuid.uuid5(RUN_ID_NAMESPACE, f"{job_id}|{scheduled_time}").hex


# -- the context a job type sees ---------------------------------------------------------------------


@dataclass
class RunContext:
    """:class:`insightmesh.job_contract.JobContext` for one run."""

    run: TaskRun
    parameters: JobParameters
    remaining_ms: Callable[[], int]
    margin_ms: int
    checkpoint: dict[str, Any] | None
    clock: Callable[[], float] = time.monotonic
    current_step: str | None = None
    _last_progress: float = field(default=0.0)
    _counts: tuple[int, int, int] = (0, 0, 0)
    _summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.run.job_id

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def credential_token(self, credential_id: str, *, required_scopes: Sequence[str]) -> str:
        """The stored credential's access token (``insightmesh.credentials``, imported on use: only the
        function that runs a job that asks for one loads the credentials code)."""
        from insightmesh.credentials.service import google_access_token

        return google_access_token(credential_id, required_scopes=tuple(required_scopes))

    def step(self, name: str) -> None:
        self.current_step = name[:200]

    def warn(self, message: str) -> None:
        """Kept for the run's record (redacted, each once, at most MAX_WARNINGS), and logged."""
        text = redact_text(" ".join(message.split()))[:MAX_WARNING_LENGTH]
        logger.warning("job warning", extra={"job_id": self.job_id, "run_id": self.run_id, "warning": text})
        if text and text not in self.warnings and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)

    def should_stop(self) -> bool:
        return self.remaining_ms() <= self.margin_ms

    def progress(self, *, processed: int, succeeded: int, failed: int,
                 summary: Mapping[str, Any] | None = None) -> None:
        self._counts = (processed, succeeded, failed)
        if summary is not None:
            self._summary = dict(summary)
        now = self.clock()
        if now - self._last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_progress = now
        actions: list[Action] = [TaskRun.records_processed.set(processed), TaskRun.records_succeeded.set(succeeded),
                   TaskRun.records_failed.set(failed)]
        if summary is not None:
            actions.append(TaskRun.summary.set(dict(summary)))
        self.run.update(actions=actions, condition=TaskRun.status == "running")

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.checkpoint

    def save_checkpoint(self, data: Mapping[str, Any]) -> None:
        value = json.loads(json.dumps(dict(data)))  # JSON-serialisable, and a copy
        actions: list[Action] = [JobState.checkpoint.set(value), JobState.checkpoint_run_id.set(self.run_id),
                                 JobState.checkpoint_at.set(utc_now())]
        if not value:  # an empty checkpoint clears it: the next run starts over
            actions = [JobState.checkpoint.remove(), JobState.checkpoint_run_id.remove(),
                       JobState.checkpoint_at.remove()]
        JobState(self.job_id).update(
            actions=actions, condition=JobState.lease_run_id == self.run_id)  # a run that lost its lease writes nothing
        self.checkpoint = value or None


# -- entry points ------------------------------------------------------------------------------------


# Run-now messages: a record whose run's outcome is not recorded is reported failed (a partial batch
# response), so SQS delivers it again; when every record failed, they are all reported the same way.
run_now_batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def run_now_record(record: SQSRecord, lambda_context: LambdaContextLike) -> None:
    """One run-now message (``{"run_id", "job_id"}``): run it; raise when its outcome is not recorded."""
    try:
        with tracing_messaging.process_span(record.raw_event):  # the child of the API's send span
            body = json.loads(record.body)
            attributes = record.raw_event.get("messageAttributes") or {}
            correlation = (attributes.get("correlation_id") or {}).get("stringValue")
            run_manual(str(body["run_id"]), str(body["job_id"]), lambda_context, correlation_id=correlation)
    except Exception:  # logged with its message id, then reported failed: SQS delivers it again
        logger.exception("run-now message not processed; it will be retried",
                         extra={"message_id": record.message_id})
        raise


def handle(event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    """The Lambda handler's body: an SQS batch (run now, through powertools' batch processor) or a
    scheduler invocation."""
    if "Records" in event:
        response = process_partial_response(event=dict(event), record_handler=run_now_record,
                                            processor=run_now_batch, context=cast(LambdaContext, context))
        return dict(response)
    if "job_id" in event:
        run_id = run_scheduled(str(event["job_id"]), event.get("scheduled_time"), context,
                               schedule_arn=event.get("schedule_arn"), correlation_id=event.get("execution_id"))
        return {"run_id": run_id}
    raise ValueError("not a job_runner event: expected SQS records or {'job_id': ...}")


def run_manual(run_id: str, job_id: str, context: LambdaContextLike, *, correlation_id: str | None = None) -> str:
    try:
        run = TaskRun.get(run_id, consistent_read=True)
    except TaskRun.DoesNotExist:
        logger.warning("run-now message for an unknown run; dropped", extra={"run_id": run_id, "job_id": job_id})
        return run_id
    bind_correlation_id(logger, run.correlation_id or correlation_id or run_id)
    if run.status != "queued":
        logger.info("run already started or finished; duplicate delivery ignored",
                    extra={"run_id": run_id, "status": run.status})
        return run_id
    try:
        job = Job.get(job_id, consistent_read=True)
    except Job.DoesNotExist:
        _finish(run, "cancelled", summary={"reason": "the job was deleted before the run started"}, started=None)
        return run_id
    _execute(job, run, context)
    return run_id


def run_scheduled(job_id: str, scheduled_time: str | None, context: LambdaContextLike, *,
                  schedule_arn: str | None = None, correlation_id: str | None = None) -> str | None:
    run_id = scheduled_run_id(job_id, scheduled_time)
    bind_correlation_id(logger, correlation_id or run_id)
    try:
        job = Job.get(job_id, consistent_read=True)
    except Job.DoesNotExist:
        # A schedule without a job (a crash between the API's two writes): repair it.
        removed = _delete_orphan_schedule(job_id)
        logger.warning("schedule fired for a job that does not exist; schedule deleted" if removed else
                       "schedule fired for a job that does not exist", extra={"job_id": job_id})
        return None
    now = utc_now()
    run = TaskRun(run_id, job_id=job_id, job_type=job.job_type, kind=RUN_KIND, created_sort=created_sort(now, run_id),
                  status="queued", trigger="scheduler", triggered_by=schedule_arn, scheduled_time=scheduled_time,
                  created_at=now, correlation_id=correlation_id or run_id, expires_at=retention(now), summary={})
    if not put_if_absent(run, TaskRun.run_id.does_not_exist()):
        logger.info("scheduled run already recorded; duplicate delivery ignored", extra={"run_id": run_id})
        return run_id
    if not job.enabled:
        _finish(run, "skipped", summary={"reason": "the job is paused"}, started=None)
        return run_id
    _execute(job, run, context)
    return run_id


def _delete_orphan_schedule(job_id: str) -> bool:
    try:
        return schedules.delete(job_id)
    except Exception as error:  # noqa: BLE001 - repairing is best effort; the next firing tries again
        logger.warning("orphan schedule not deleted", extra={"job_id": job_id, "error": str(error)})
        return False


# -- one run ---------------------------------------------------------------------------------------------


def _margin_ms(remaining_ms: int) -> int:
    configured = os.environ.get("JOB_DEADLINE_MARGIN_SECONDS", "").strip()
    if configured:
        return int(float(configured) * 1000)
    return int(min(30_000, remaining_ms / 5))


def _execute(job: Job, run: TaskRun, context: LambdaContextLike) -> None:
    remaining = context.get_remaining_time_in_millis()
    state = _acquire_lease(job.job_id, run, lease_seconds=remaining / 1000 + LEASE_GRACE_SECONDS)
    if state is None:
        return
    started = utc_now()
    clock_start = time.monotonic()
    resumed_from = state.checkpoint_run_id if state.checkpoint is not None else None
    actions: list[Action] = [TaskRun.status.set("running"), TaskRun.started_at.set(started)]
    if resumed_from:
        actions.append(TaskRun.resumed_from.set(resumed_from))
    run.update(actions=actions, condition=TaskRun.status == "queued")
    ctx: RunContext | None = None
    try:
        try:
            cls = job_type(job.job_type)
        except KeyError:
            raise LookupError(f"unknown job type {job.job_type!r}") from None
        step = "validate parameters"
        parameters = cls.Parameters.model_validate(dict(job.parameters or {}))
        ctx = RunContext(run=run, parameters=parameters, remaining_ms=context.get_remaining_time_in_millis,
                         margin_ms=_margin_ms(remaining), checkpoint=state.checkpoint, current_step=step)
        logger.info("job run started", extra={"job_id": job.job_id, "run_id": run.run_id, "job_type": job.job_type,
                                               "resumed_from": resumed_from})
        with tracing.span(f"job {job.job_type}") as span:
            if span.is_recording():
                span.set_attributes({"insightmesh.job.id": job.job_id, "insightmesh.job.type": job.job_type,
                                     "insightmesh.job.run_id": run.run_id,
                                     "insightmesh.job.trigger": str(run.trigger or "")})
            result = cls().run(ctx)
            if span.is_recording():
                span.set_attributes({"insightmesh.job.complete": result.complete,
                                     "insightmesh.job.processed": result.processed})
    except Exception as error:  # every failure of the job is recorded on its run
        processed, succeeded, failed = ctx._counts if ctx is not None else (0, 0, 0)
        step_name = ctx.current_step if ctx is not None else "load job type"
        logger.exception("job run failed", extra={"job_id": job.job_id, "run_id": run.run_id, "step": step_name})
        _finish(run, "failed", started=started, clock_start=clock_start,
                counts=(processed, succeeded, failed), summary=ctx._summary if ctx is not None else {},
                error=_error_record(error, step_name), warnings=ctx.warnings if ctx is not None else ())
        _release(job.job_id, run.run_id, "failed", keep_checkpoint=True)
        return
    if result.complete:
        _finish(run, "succeeded", started=started, clock_start=clock_start,
                counts=(result.processed, result.succeeded, result.failed), summary=dict(result.summary),
                warnings=ctx.warnings if ctx is not None else ())
        _release(job.job_id, run.run_id, "succeeded", keep_checkpoint=False)
    else:
        seconds = round((ctx.margin_ms if ctx else 0) / 1000, 1)
        _finish(run, "timed_out", started=started, clock_start=clock_start,
                counts=(result.processed, result.succeeded, result.failed), summary=dict(result.summary),
                error={"type": "DeadlineApproaching", "step": ctx.current_step if ctx else None, "traceback": None,
                       "message": f"stopped {seconds} s before the Lambda deadline; the next run continues "
                                  "from the saved checkpoint"}, warnings=ctx.warnings if ctx is not None else ())
        _release(job.job_id, run.run_id, "timed_out", keep_checkpoint=True)
    logger.info("job run finished", extra={"job_id": job.job_id, "run_id": run.run_id,
                                            "complete": result.complete, "processed": result.processed})


def _acquire_lease(job_id: str, run: TaskRun, *, lease_seconds: float) -> JobState | None:
    """Take the job's lease for ``run``; ``None`` (and the run recorded skipped) if it is held."""
    now = time.time()
    free: Condition = (JobState.lease_run_id.does_not_exist() | (JobState.lease_expires_at < now)
                       | (JobState.lease_run_id == run.run_id))
    previous = _read_state(job_id)
    try:
        JobState(job_id).update(actions=[JobState.lease_run_id.set(run.run_id),
                                         JobState.lease_expires_at.set(int(now + lease_seconds))], condition=free)
    except UpdateError as error:
        if not condition_failed(error):
            raise
        holder = _read_state(job_id)
        held_by = holder.lease_run_id if holder else None
        until = holder.lease_expires_at if holder else None
        logger.info("job already running; this start is skipped", extra={"job_id": job_id, "run_id": run.run_id,
                                                                         "held_by": held_by})
        _finish(run, "skipped", started=None, summary={
            "reason": "another run of this job holds its lease", "running_run_id": held_by,
            "lease_expires_at": datetime.fromtimestamp(until).astimezone().isoformat() if until else None})
        return None
    if previous is not None and previous.lease_run_id and previous.lease_run_id != run.run_id:
        _expire_stale_run(previous.lease_run_id)
    state = _read_state(job_id)
    return state if state is not None else JobState(job_id)


def _read_state(job_id: str) -> JobState | None:
    try:
        return JobState.get(job_id, consistent_read=True)
    except JobState.DoesNotExist:
        return None


def _expire_stale_run(run_id: str) -> None:
    """The run whose lease expired never recorded an outcome: its Lambda was stopped."""
    try:
        stale = TaskRun.get(run_id, consistent_read=True)
        if stale.status in FINISHED:
            return
        finished = utc_now()
        stale.update(actions=[
            TaskRun.status.set("timed_out"), TaskRun.finished_at.set(finished),
            TaskRun.error.set({"type": "LeaseExpired", "step": None, "traceback": None,
                               "message": "the runner stopped without recording an outcome (killed at the Lambda "
                                          "deadline or crashed); its lease expired"})],
            condition=TaskRun.status.is_in("queued", "running"))
    except (TaskRun.DoesNotExist, UpdateError) as error:
        logger.info("stale run not updated", extra={"run_id": run_id, "error": str(error)})


def _error_record(error: BaseException, step: str | None) -> dict[str, Any]:
    lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
    excerpt = "\n".join(lines[-TRACEBACK_LINES:])
    return {"type": type(error).__name__, "message": redact_text(str(error) or type(error).__name__)[:MAX_MESSAGE],
            "step": step, "traceback": redact_text(excerpt)[-MAX_TRACEBACK:]}


def _finish(run: TaskRun, status: str, *, started: datetime | None, clock_start: float | None = None,
            counts: tuple[int, int, int] = (0, 0, 0), summary: Mapping[str, Any] | None = None,
            error: dict[str, Any] | None = None, warnings: Sequence[str] = ()) -> None:
    finished = utc_now()
    actions: list[Action] = [TaskRun.status.set(status), TaskRun.finished_at.set(finished),
               TaskRun.records_processed.set(counts[0]), TaskRun.records_succeeded.set(counts[1]),
               TaskRun.records_failed.set(counts[2]), TaskRun.summary.set(redact(dict(summary or {})))]
    if clock_start is not None:
        actions.append(TaskRun.duration_ms.set(int((time.monotonic() - clock_start) * 1000)))
    if error is not None:
        actions.append(TaskRun.error.set(error))
    if warnings:
        actions.append(TaskRun.warnings.set(list(warnings)))
    run.update(actions=actions)
    get_logger("job_runner").info("task run recorded", extra={"run_id": run.run_id, "job_id": run.job_id,
                                                               "status": status})


def _release(job_id: str, run_id: str, status: str, *, keep_checkpoint: bool) -> None:
    actions: list[Action] = [JobState.lease_run_id.remove(), JobState.lease_expires_at.remove(),
               JobState.last_run_id.set(run_id), JobState.last_status.set(status),
               JobState.last_finished_at.set(utc_now())]
    if not keep_checkpoint:
        actions += [JobState.checkpoint.remove(), JobState.checkpoint_run_id.remove(), JobState.checkpoint_at.remove()]
    try:
        JobState(job_id).update(actions=actions, condition=JobState.lease_run_id == run_id)
    except UpdateError as error:
        if not condition_failed(error):
            raise
        logger.warning("lease was taken over before the run ended; state left to its new holder",
                       extra={"job_id": job_id, "run_id": run_id})


__all__ = ["JobResult", "RunContext", "handle", "run_manual", "run_scheduled", "scheduled_run_id"]
