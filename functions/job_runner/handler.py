"""job_runner: run one job — from its EventBridge Scheduler schedule, or from JobQueue (run now)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.jobs.runner import handle, logger
from insightmesh.tracing import flushed


@flushed
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
