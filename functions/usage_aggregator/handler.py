"""usage_aggregator: batches from the usage queue → the usage counters, written coalesced
(the logic: insightmesh.llm.usage_aggregate)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.llm.usage_aggregate import BatchResponse, handle_batch, logger
from insightmesh.tracing import flushed


@flushed
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    return handle_batch(event)
