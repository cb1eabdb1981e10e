"""Request and response bodies of the jobs API (``/api/job-types``, ``/api/jobs``, ``/api/task-runs``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

from insightmesh.clock import utc_now
from insightmesh.jobs.schedule_expressions import (
    ScheduleExpressionError,
    UnknownTimezoneError,
    check_timezone,
    parse_schedule_expression,
)

MAX_NAME: Final = 80
MAX_DESCRIPTION: Final = 500
JOB_ID_PATTERN: Final = r"^[a-f0-9]{32}$"
RUN_ID_PATTERN: Final = r"^[a-f0-9]{32}$"
JOB_TYPE_PATTERN: Final = r"^[a-z][a-z0-9_]{1,63}$"

JobName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME,
                                           pattern=r"^[^\x00-\x1f\x7f]+$")]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION,
                                               pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
RunStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "skipped"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScheduleIn(_Request):
    """A schedule as the API accepts it: a valid expression in a known time zone, and an ``at()``
    time still to come on that zone's wall clock (a past one would fire at once)."""

    # The time zone is declared (so validated) first: the expression's check reads it.
    timezone: str = Field(default="UTC", min_length=1, max_length=64,
                          description="IANA time zone for cron() and at(), e.g. Europe/Paris.")
    expression: str = Field(min_length=6, max_length=256, description=(
        "rate(5 minutes), cron(0 3 ? * MON-FRI *) or at(2026-12-01T09:00:00) — EventBridge Scheduler syntax; "
        "an at() time must be in the future, in the schedule's time zone."))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            return check_timezone(value)
        except UnknownTimezoneError as error:  # reported on the timezone field, not the expression
            raise ValueError(f"timezone: {error}") from error

    @field_validator("expression")
    @classmethod
    def _valid(cls, value: str, info: ValidationInfo) -> str:
        timezone = info.data.get("timezone")
        if not isinstance(timezone, str):
            return value  # the time zone is refused on its own field
        try:
            parse_schedule_expression(value.strip(), timezone, not_before=utc_now())
        except ScheduleExpressionError as error:
            raise ValueError(str(error)) from error
        return value


class ScheduleOut(_Response):
    expression: str
    timezone: str
    enabled: bool
    next_run: datetime | None = Field(description="When the schedule fires next; null when paused or past.")
    upcoming: list[datetime] = Field(default_factory=list, description=(
        "The next 3 fire times (UTC), as the scheduler computes them; empty when paused or past."))
    schedule_name: str = Field(description="The EventBridge Scheduler schedule (in the stack's job group).")


class SchedulePreview(_Response):
    """GET /api/jobs/schedule-preview: when a schedule saved now would fire."""

    expression: str
    timezone: str
    upcoming: list[datetime] = Field(description="The next fire times (UTC) of the schedule if it were saved "
                                                 "now (a rate() counts from now); fewer for an at() or a "
                                                 "cron() that ends.")


class JobCreate(_Request):
    name: JobName
    job_type: Annotated[str, StringConstraints(pattern=JOB_TYPE_PATTERN)] = Field(
        description="One of GET /api/job-types.")
    description: Description = ""
    schedule: ScheduleIn
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="Validated by the job type's parameters_schema.")
    enabled: bool = True


class JobPatch(_Request):
    version: int = Field(ge=1, description="The version you read; a concurrent change since then is a 409.")
    name: JobName | None = None
    description: Description | None = None
    schedule: ScheduleIn | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="Replaces the parameters.")
    enabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> JobPatch:
        if not self.model_fields_set - {"version"}:
            raise ValueError("nothing to change: give at least one of name, description, schedule, "
                             "parameters, enabled")
        return self


class LastRun(_Response):
    run_id: str
    status: str
    finished_at: datetime | None


class JobOut(_Response):
    job_id: str
    name: str
    job_type: str
    description: str
    schedule: ScheduleOut
    parameters: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: datetime
    updated_by: str | None
    updated_at: datetime | None
    version: int
    last_run: LastRun | None = None
    has_checkpoint: bool = Field(default=False, description="An unfinished run left a checkpoint; the next "
                                                           "run continues from it.")


class JobTypeOut(_Response):
    name: str
    title: str
    description: str
    parameters_schema: dict[str, Any] = Field(description="JSON Schema of the job type's parameters.")


class JobTypeList(_Response):
    items: list[JobTypeOut]


class RunErrorOut(_Response):
    type: str
    message: str
    step: str | None
    traceback: str | None


class RunJobOut(_Response):
    job_id: str
    name: str | None = Field(description="null if the job was deleted since.")
    job_type: str
    exists: bool


class TaskRunOut(_Response):
    run_id: str
    job_id: str
    job_type: str
    job: RunJobOut
    status: RunStatusName
    trigger: Literal["scheduler", "manual"]
    triggered_by: str | None = Field(description="The user id of a manual run; the schedule of a scheduled one.")
    scheduled_time: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    records_processed: int
    records_succeeded: int
    records_failed: int
    summary: dict[str, Any]
    warnings: list[str] = Field(default_factory=list, description=(
        'What the job wanted an admin to see, whatever the outcome, e.g. "listed 0 users".'))
    error: RunErrorOut | None
    resumed_from: str | None = Field(description="The earlier run whose checkpoint this run continued.")
    correlation_id: str | None


class TaskRunPage(_Response):
    items: list[TaskRunOut]
    next_cursor: str | None


class JobPage(_Response):
    items: list[JobOut]
    next_cursor: str | None

