"""conversation_worker: SQS FIFO batches → one reply per request, partial batch failures."""

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh import tracing_messaging
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.conversation.worker import logger, process
from insightmesh.observability import bind_correlation_id, correlation_id_from_sqs_record
from insightmesh.tools.settings import check_cold_start
from insightmesh.tracing import flushed

check_cold_start()  # production refuses READ_URL_ALLOW_HOSTS before the first message

# A failed message fails the rest of its thread's group in this batch (kept in order), not others.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def record_handler(record: SQSRecord) -> None:
    # One consumer span per message, the child of slack_ingress's send span: one trace per request.
    with tracing_messaging.process_span(record.raw_event) as span:
        bind_correlation_id(logger, correlation_id_from_sqs_record(record.raw_event))
        request = ConversationRequest.model_validate_json(record.body)
        if span.is_recording():
            span.set_attributes({"insightmesh.request.kind": request.kind.value,
                                 "insightmesh.request.id": request.request_id})
        process(request)


@flushed
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
