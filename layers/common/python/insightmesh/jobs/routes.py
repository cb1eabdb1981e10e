"""The jobs API's routes: ``register_job_routes(app)``.

Every route authenticates (401 without valid credentials: an API token or a browser session, as
the admin API, with the same token scopes: ``admin:read`` for GET, ``admin:write`` for changes).
``GET /api/job-types`` is open to any authenticated user; everything else — reads
included, since runs carry error messages and provider details — requires an admin: a refused
attempt is a 403 and is audited. Every mutation (create, update, delete, pause, resume, run now)
is audited in the same transaction as the change.
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, responses
from insightmesh.api.pagination import DEFAULT_LIMIT
from insightmesh.auth.guard import authenticate_admin, authenticate_scoped
from insightmesh.auth.principal import Principal
from insightmesh.jobs import service
from insightmesh.jobs.schemas import (
    JOB_ID_PATTERN,
    RUN_ID_PATTERN,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    JobTypeList,
    RunStatusName,
    SchedulePreview,
    TaskRunOut,
    TaskRunPage,
)

TAGS: Final = [
    Tag(name="jobs", description="Scheduled jobs and their EventBridge Scheduler schedules."),
    Tag(name="task-runs", description="Every run of a job: status, counts, result, error context."),
]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job id.")]
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run id.")]


def register_job_routes(app: InsightMeshResolver) -> None:
    """Add /api/job-types, /api/jobs and /api/task-runs to ``app`` (see the module docstring)."""

    def request_id() -> str:
        return app.correlation_id

    def admin(action: str, target: str) -> Principal:
        return authenticate_admin(app, action=action, target=target)

    @app.get("/api/job-types", summary="List job types with their parameter schemas", tags=["jobs"],
             security=SECURITY, responses=responses(200, "Every job type"))
    def list_job_types() -> JobTypeList:
        authenticate_scoped(app, action="job-type.read", target="job-type:*")
        return JobTypeList(items=service.list_job_types())

    @app.get("/api/jobs", summary="List jobs", tags=["jobs"], security=SECURITY,
             responses=responses(200, "A page of jobs, oldest first, with their last run and next run", 403))
    def list_jobs(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> JobPage:
        admin("job.read", "job:*")
        return service.list_jobs(limit=limit, cursor=cursor)

    @app.post("/api/jobs", summary="Create a job and its schedule", tags=["jobs"], security=SECURITY,
              status_code=201,
              description="The parameters are validated by the job type's schema (GET /api/job-types). The "
                          "EventBridge Scheduler schedule is created with the job; if either cannot be written, "
                          "neither is kept.",
              responses=responses(201, "The job, created", 403, 503))
    def create_job(job: Annotated[JobCreate, Body()]) -> JobOut:
        principal = admin("job.create", "job:*")
        return service.create_job(job, actor=principal, request_id=request_id())

    @app.get("/api/jobs/schedule-preview", summary="Preview a schedule's next run times", tags=["jobs"],
             security=SECURITY,
             description="When the schedule would fire if it were saved now (a rate() counts from now), in UTC; "
                         "an expression or time zone that POST /api/jobs would refuse is the same 422 here.",
             responses=responses(200, "The next run times", 403))
    def preview_schedule(
        expression: Annotated[str, Query(min_length=1, max_length=256, description="As in a job's schedule.")],
        timezone: Annotated[str, Query(min_length=1, max_length=64, description="IANA time zone.")] = "UTC",
        count: Annotated[int, Query(ge=1, le=10, description="How many run times.")] = 3,
    ) -> SchedulePreview:
        admin("job.read", "job:*")
        return service.preview_schedule(expression, timezone, count=count)

    @app.get("/api/jobs/<job_id>", summary="Show a job", tags=["jobs"], security=SECURITY,
             responses=responses(200, "The job", 403, 404))
    def get_job(job_id: JobIdPath) -> JobOut:
        admin("job.read", service.job_target(job_id))
        return service.get_job(job_id)

    @app.patch("/api/jobs/<job_id>", summary="Change a job (and its schedule)", tags=["jobs"], security=SECURITY,
               description="Send the version you read: a concurrent change is a 409. A changed schedule or "
                           "enabled flag is applied to the EventBridge Scheduler schedule with the job.",
               responses=responses(200, "The job after the change", 403, 404, 409, 503))
    def patch_job(job_id: JobIdPath, patch: Annotated[JobPatch, Body()]) -> JobOut:
        principal = admin("job.update", service.job_target(job_id))
        return service.update_job(job_id, patch, actor=principal, request_id=request_id())

    @app.delete("/api/jobs/<job_id>", summary="Delete a job and its schedule", tags=["jobs"], security=SECURITY,
                description="Its task runs are kept (they expire after 90 days).",
                responses=responses(204, "Deleted", 403, 404, 409, 503))
    def delete_job(job_id: JobIdPath) -> Response[str]:
        principal = admin("job.delete", service.job_target(job_id))
        service.delete_job(job_id, actor=principal, request_id=request_id())
        return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")

    @app.post("/api/jobs/<job_id>/pause", summary="Pause a job: disable its schedule", tags=["jobs"],
              security=SECURITY, responses=responses(200, "The job, paused", 403, 404, 503))
    def pause_job(job_id: JobIdPath) -> JobOut:
        principal = admin("job.pause", service.job_target(job_id))
        return service.set_enabled(job_id, False, actor=principal, request_id=request_id())

    @app.post("/api/jobs/<job_id>/resume", summary="Resume a job: enable its schedule", tags=["jobs"],
              security=SECURITY, responses=responses(200, "The job, resumed", 403, 404, 503))
    def resume_job(job_id: JobIdPath) -> JobOut:
        principal = admin("job.resume", service.job_target(job_id))
        return service.set_enabled(job_id, True, actor=principal, request_id=request_id())

    @app.post("/api/jobs/<job_id>/run", summary="Run a job now", tags=["jobs"], security=SECURITY,
              status_code=202,
              description="Records a queued manual run and queues it for the job runner; follow it with "
                          "GET /api/task-runs/{run_id}. If the job is already running, the run is recorded as "
                          "skipped.",
              responses=responses(202, "The queued run", 403, 404, 422, 503))
    def run_job(job_id: JobIdPath) -> TaskRunOut:
        principal = admin("job.run", service.job_target(job_id))
        return service.run_now(job_id, actor=principal, request_id=request_id())

    @app.get("/api/task-runs", summary="List task runs", tags=["task-runs"], security=SECURITY,
             description="Newest first, with the job's name joined in. Filter by job and by status.",
             responses=responses(200, "A page of runs", 403))
    def list_runs(
        job_id: Annotated[str | None, Query(pattern=JOB_ID_PATTERN, description="Only this job's runs.")] = None,
        status: Annotated[RunStatusName | None, Query(description="Only runs in this status.")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> TaskRunPage:
        admin("task-run.read", "task-run:*")
        return service.list_runs(job_id=job_id, status=status, limit=limit, cursor=cursor)

    @app.get("/api/task-runs/<run_id>", summary="Show a task run", tags=["task-runs"], security=SECURITY,
             responses=responses(200, "The run", 403, 404))
    def get_run(run_id: RunIdPath) -> TaskRunOut:
        admin("task-run.read", service.run_target(run_id))
        return service.get_run(run_id)
