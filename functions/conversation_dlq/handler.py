"""conversation_dlq: the conversation DLQ → an apology with a reference id in the thread, once
(the logic: insightmesh.conversation.dead_letters)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh import tracing_messaging
from insightmesh.conversation.dead_letters import DeadLetter, handle, logger
from insightmesh.observability import bind_correlation_id, correlation_id_from_sqs_record
from insightmesh.tracing import flushed

# A failed apology (Slack down) is retried after the visibility timeout; its thread's later
# letters in this batch wait with it, other threads' do not.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def record_handler(record: SQSRecord) -> None:
    # The dead letter keeps the message attributes it was sent with: its span joins that request's trace.
    with tracing_messaging.process_span(record.raw_event):
        correlation_id = correlation_id_from_sqs_record(record.raw_event)
        bind_correlation_id(logger, correlation_id)
        receive_count = record.attributes.approximate_receive_count
        handle(DeadLetter(message_id=record.message_id, body=record.body,
                          receive_count=int(receive_count) if receive_count else None,
                          correlation_id=correlation_id))


@flushed
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
