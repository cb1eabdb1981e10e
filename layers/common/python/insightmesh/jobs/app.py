"""The tasks API's resolver, built in one place: ``functions/tasks_api`` serves it, and the console
dispatches to it in-process (``functions/console``), so no route is registered twice by hand."""

from __future__ import annotations

from insightmesh.api import InsightMeshResolver, create_app
from insightmesh.api.control_plane import configure_openapi
from insightmesh.auth.validation import authenticate_before_validation
from insightmesh.credentials.routes import register_credential_routes
from insightmesh.jobs.routes import TAGS, register_job_routes


def build_tasks_app() -> InsightMeshResolver:
    """Jobs and their schedules, task runs, Google credentials — under /api."""
    app = create_app("tasks_api", title="InsightMesh jobs API", openapi_path="/api/tasks/openapi.json",
                     json_only=True)
    configure_openapi(app, description="Scheduled jobs, their task runs, and provider credentials. Authentication, "
                                       "errors and lists work as in the admin API (/api/openapi.json).", tags=TAGS)
    authenticate_before_validation(app)
    register_job_routes(app)
    register_credential_routes(app)
    return app


__all__ = ["build_tasks_app"]
