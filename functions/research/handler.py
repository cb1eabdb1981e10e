"""research: one research run as a Lambda durable function (checkpointed steps, parallel
researchers, waits). Lambda invokes it with a DurableExecutionInvocationInput (the execution's
ARN, a checkpoint token and the checkpoint log so far); the SDK's decorator replays completed
steps from that log and checkpoints new ones, and the function returns PENDING while it waits.
The workflow itself is ``insightmesh.research.workflow.run_research``."""

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution

from insightmesh.research.workflow import run_research
from insightmesh.tracing import flushed


@flushed
@durable_execution
def lambda_handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    return run_research(event, context)
