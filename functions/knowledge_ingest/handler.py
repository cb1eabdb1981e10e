"""knowledge_ingest: documents uploaded with `insightmesh ingest`, into the knowledge base."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.knowledge.uploads import UploadResult, handle, logger
from insightmesh.tracing import flushed


@flushed
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> UploadResult:
    return handle(event, context)
