"""The jobs context's tables: job definitions, their runtime state, and task runs.

``JOBS_TABLE`` — :class:`Job`, hash ``job_id``; GSI ``by-kind`` (hash ``kind`` = ``"job"``,
range ``created_sort``) lists jobs oldest first in one Query per page. An admin edits a job;
writes are optimistic (``version``).

``JOB_STATE_TABLE`` — :class:`JobState`, hash ``job_id``: what the runner writes, kept apart from
the definition so a run never conflicts with an admin's edit — the **lease** (``lease_run_id``
until ``lease_expires_at``, taken by a conditional write), the **checkpoint** a stopped run left
for the next one, and the last run.

``TASK_RUNS_TABLE`` — :class:`TaskRun`, hash ``run_id``; GSIs ``by-job`` (``job_id``),
``by-status`` (``status``) and ``by-kind`` (``kind`` = ``"run"``: every run), each ranged by
``created_sort`` = ``"<UTC ISO created_at>#<run_id>"`` and listed newest first. TTL
``expires_at``: a run is kept :data:`RUN_RETENTION_DAYS` days. A run's ``warnings`` (short
strings such as "listed 0 users", at most :data:`MAX_WARNINGS`) are what the job wanted an admin to
see, whatever the outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.api.pagination import created_sort as created_sort  # re-exported: jobs.service and tests use it here
from insightmesh.aws import model_meta
from insightmesh.clock import utc_now

JOB_KIND: Final = "job"
RUN_KIND: Final = "run"
RUN_RETENTION_DAYS: Final = 90
MAX_WARNINGS: Final = 20
MAX_WARNING_LENGTH: Final = 300

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "skipped"]
RUN_STATUSES: Final[tuple[str, ...]] = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out",
                                        "skipped")
FINISHED: Final = frozenset({"succeeded", "failed", "cancelled", "timed_out", "skipped"})
Trigger = Literal["scheduler", "manual"]


class JobsByKind(GlobalSecondaryIndex["Job"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class Job(Model):
    """A scheduled job: its type, schedule and parameters (validated by the type's model)."""

    Meta = model_meta("JOBS_TABLE")

    job_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default=JOB_KIND)
    created_sort = UnicodeAttribute()
    job_type = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    schedule_expression = UnicodeAttribute()  # rate(...), cron(...) or at(...)
    schedule_timezone = UnicodeAttribute(default="UTC")
    schedule_anchor = UTCDateTimeAttribute()  # when the schedule was (re)created: a rate's origin
    parameters = JSONAttribute(default=dict)
    enabled = BooleanAttribute(default=True)
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute(default=utc_now)
    updated_by = UnicodeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    version = VersionAttribute()

    by_kind = JobsByKind()


class JobState(Model):
    """The runner's state of one job: lease, checkpoint, last run (see the module docstring)."""

    Meta = model_meta("JOB_STATE_TABLE")

    job_id = UnicodeAttribute(hash_key=True)
    lease_run_id = UnicodeAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)  # epoch seconds
    checkpoint = JSONAttribute(null=True)
    checkpoint_run_id = UnicodeAttribute(null=True)
    checkpoint_at = UTCDateTimeAttribute(null=True)
    last_run_id = UnicodeAttribute(null=True)
    last_status = UnicodeAttribute(null=True)
    last_finished_at = UTCDateTimeAttribute(null=True)


class RunError(MapAttribute[str, Any]):
    """Why a run failed: the exception's type and message, where, and a traceback excerpt."""

    type = UnicodeAttribute()
    message = UnicodeAttribute()
    step = UnicodeAttribute(null=True)
    traceback = UnicodeAttribute(null=True)


class RunsByJob(GlobalSecondaryIndex["TaskRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-job"
        projection = AllProjection()

    job_id = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class RunsByStatus(GlobalSecondaryIndex["TaskRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class RunsByKind(GlobalSecondaryIndex["TaskRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class TaskRun(Model):
    """One run of a job (see the module docstring)."""

    Meta = model_meta("TASK_RUNS_TABLE")

    run_id = UnicodeAttribute(hash_key=True)
    job_id = UnicodeAttribute()
    job_type = UnicodeAttribute()
    kind = UnicodeAttribute(default=RUN_KIND)
    created_sort = UnicodeAttribute()
    status = UnicodeAttribute()
    trigger = UnicodeAttribute()  # "scheduler" | "manual"
    triggered_by = UnicodeAttribute(null=True)  # the user id of a manual run; the schedule's ARN
    scheduled_time = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(default=utc_now)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)
    duration_ms = NumberAttribute(null=True)
    records_processed = NumberAttribute(default=0)
    records_succeeded = NumberAttribute(default=0)
    records_failed = NumberAttribute(default=0)
    summary = JSONAttribute(default=dict)
    error = RunError(null=True)  # type: ignore[no-untyped-call]  # untyped pynamodb MapAttribute init
    warnings: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    resumed_from = UnicodeAttribute(null=True)  # the run whose checkpoint this run continued
    correlation_id = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)

    by_job = RunsByJob()
    by_status = RunsByStatus()
    by_kind = RunsByKind()


def retention(moment: datetime) -> datetime:
    return moment + timedelta(days=RUN_RETENTION_DAYS)
