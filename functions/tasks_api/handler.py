"""tasks_api: scheduled jobs and their schedules, task runs, Google credentials — under /api."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.jobs.app import build_tasks_app
from insightmesh.tracing import flushed

app = build_tasks_app()


@flushed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
