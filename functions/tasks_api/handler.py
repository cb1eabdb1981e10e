"""tasks_api: scheduled jobs and their schedules, task runs, Google credentials — under /api."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.api import create_app
from insightmesh.api.control_plane import configure_openapi
from insightmesh.auth.validation import authenticate_before_validation
from insightmesh.credentials.routes import register_credential_routes
from insightmesh.jobs.routes import TAGS, register_job_routes

app = create_app("tasks_api", title="InsightMesh jobs API", openapi_path="/api/tasks/openapi.json", json_only=True)
configure_openapi(app, description="Scheduled jobs, their task runs, and provider credentials. Authentication, "
                                   "errors and lists work as in the admin API (/api/openapi.json).", tags=TAGS)
authenticate_before_validation(app)
register_job_routes(app)
register_credential_routes(app)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
