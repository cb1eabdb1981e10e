"""Each job's EventBridge Scheduler schedule: ``job-<job_id>`` in the stack's schedule group,
targeting job_runner with the job id and the scheduler's context attributes as input.

The settings come from the environment the template sets on tasks_api: ``JOB_SCHEDULE_GROUP``,
``JOB_RUNNER_ARN`` and ``JOB_SCHEDULER_ROLE_ARN`` (the role Scheduler assumes to invoke the
runner). A one-off ``at()`` schedule is kept after it fires (``ActionAfterCompletion`` NONE), so a
job always has its schedule until the job is deleted.

Scheduler's own retry policy retries a failed invocation (at most 2 more times, within an hour);
the runner derives a scheduled run's id from the job and the scheduled time, so a retried
delivery never makes a second run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from insightmesh.api.errors import ServiceUnavailableError
from insightmesh.aws import client
from insightmesh.jobs.schedule_expressions import ScheduleExpressionError, parse_schedule_expression
from insightmesh.observability import get_logger
from insightmesh.resilience import Timeouts

SCHEDULE_PREFIX: Final = "job-"
SCHEDULER_TIMEOUTS: Final = Timeouts(connect=2, read=5)
RUNNER_INPUT: Final = {
    "scheduled_time": "<aws.scheduler.scheduled-time>",
    "execution_id": "<aws.scheduler.execution-id>",
    "schedule_arn": "<aws.scheduler.schedule-arn>",
}


@dataclass(frozen=True)
class ScheduleSpec:
    expression: str
    timezone: str
    enabled: bool


class ScheduleNotConfiguredError(ServiceUnavailableError):
    pass


def schedule_name(job_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{job_id}"


def schedule_group() -> str:
    return _setting("JOB_SCHEDULE_GROUP")


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ScheduleNotConfiguredError(f"{name} is not set: the job schedules cannot be managed")
    return value


def validate(expression: str, timezone: str) -> None:
    """Raise :class:`ScheduleExpressionError` (a ``ValueError``) unless EventBridge would accept it."""
    parse_schedule_expression(expression, timezone)


def next_run(expression: str, timezone: str, *, anchor: datetime, enabled: bool,
             now: datetime | None = None) -> datetime | None:
    """When the schedule fires next, or ``None`` (paused, or a past one-off)."""
    if not enabled:
        return None
    try:
        return parse_schedule_expression(expression, timezone, start=anchor).next_fire(now or datetime.now(UTC))
    except (ScheduleExpressionError, ValueError):
        return None


def upcoming(expression: str, timezone: str, *, anchor: datetime, enabled: bool, count: int = 3,
             now: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times (UTC), as the scheduler will fire them; ``[]`` when paused. The
    schedule preview of the console and the API: computed here, never by a client."""
    if not enabled:
        return []
    try:
        parsed = parse_schedule_expression(expression, timezone, start=anchor)
    except ScheduleExpressionError:
        return []
    times: list[datetime] = []
    after = now or datetime.now(UTC)
    while len(times) < count:
        fire = parsed.next_fire(after)
        if fire is None:
            break
        times.append(fire)
        after = fire
    return times


def _scheduler() -> Any:
    return client("scheduler", timeouts=SCHEDULER_TIMEOUTS, attempts=3)


def _request(job_id: str, spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "Name": schedule_name(job_id),
        "GroupName": schedule_group(),
        "ScheduleExpression": spec.expression,
        "ScheduleExpressionTimezone": spec.timezone,
        "State": "ENABLED" if spec.enabled else "DISABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Description": f"InsightMesh job {job_id}",
        "Target": {
            "Arn": _setting("JOB_RUNNER_ARN"),
            "RoleArn": _setting("JOB_SCHEDULER_ROLE_ARN"),
            "Input": json.dumps({"job_id": job_id, **RUNNER_INPUT}),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        },
    }


def _unavailable(action: str, job_id: str, error: Exception) -> ServiceUnavailableError:
    get_logger().error("EventBridge Scheduler call failed", extra={"action": action, "job_id": job_id,
                                                                    "error": str(error)})
    return ServiceUnavailableError(f"the scheduler could not {action} the job's schedule; nothing was changed")


def create(job_id: str, spec: ScheduleSpec) -> None:
    try:
        _scheduler().create_schedule(**_request(job_id, spec))
    except (ClientError, BotoCoreError) as error:
        raise _unavailable("create", job_id, error) from error


def update(job_id: str, spec: ScheduleSpec) -> None:
    """Replace the schedule's definition (UpdateSchedule takes the whole of it); recreate it if
    it went missing, so the job keeps its schedule."""
    scheduler = _scheduler()
    try:
        scheduler.update_schedule(**_request(job_id, spec))
    except scheduler.exceptions.ResourceNotFoundException:
        create(job_id, spec)
    except (ClientError, BotoCoreError) as error:
        raise _unavailable("update", job_id, error) from error


def delete(job_id: str) -> bool:
    """Delete the schedule; ``False`` if there was none."""
    scheduler = _scheduler()
    try:
        scheduler.delete_schedule(Name=schedule_name(job_id), GroupName=schedule_group())
    except scheduler.exceptions.ResourceNotFoundException:
        return False
    except (ClientError, BotoCoreError) as error:
        raise _unavailable("delete", job_id, error) from error
    return True


def describe(job_id: str) -> dict[str, Any] | None:
    """The schedule as Scheduler holds it, or ``None``."""
    scheduler = _scheduler()
    try:
        found: dict[str, Any] = scheduler.get_schedule(Name=schedule_name(job_id), GroupName=schedule_group())
    except scheduler.exceptions.ResourceNotFoundException:
        return None
    return found
