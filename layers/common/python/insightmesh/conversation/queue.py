"""Putting a request on the conversation FIFO queue (``CONVERSATION_QUEUE_URL``).

MessageGroupId = team + channel + thread, so a thread is answered in order and threads in
parallel; MessageDeduplicationId = the request id, so a Slack retry or a duplicate delivery
within SQS's five-minute window is dropped by SQS itself, at no extra cost on the ack path (the
worker's conditional write on the request id covers redeliveries after that window). The message
attributes carry the correlation id and, when tracing, the send span's trace context
(:mod:`insightmesh.tracing_messaging`).
"""

from __future__ import annotations

import os
from typing import Final

from insightmesh import tracing_messaging
from insightmesh.conversation.requests import ConversationRequest

# The ack path has 3 s in all: one quick attempt, one retry, then Slack's own retry takes over.
ENQUEUE_CONNECT_SECONDS: Final = 0.5
ENQUEUE_READ_SECONDS: Final = 1.0


class QueueNotConfiguredError(RuntimeError):
    pass


def enqueue(request: ConversationRequest) -> str:
    """Send ``request``; returns the SQS message id. Raises botocore errors on failure."""
    from insightmesh.aws import client
    from insightmesh.resilience import Timeouts

    url = os.environ.get("CONVERSATION_QUEUE_URL")
    if not url:
        raise QueueNotConfiguredError("CONVERSATION_QUEUE_URL is not set")
    with tracing_messaging.send_span(url) as span:  # the worker's span is this one's child
        response = client("sqs", timeouts=Timeouts(ENQUEUE_CONNECT_SECONDS, ENQUEUE_READ_SECONDS),
                          attempts=2).send_message(
            QueueUrl=url,
            MessageBody=request.model_dump_json(exclude_none=True),
            MessageGroupId=request.message_group_id,
            MessageDeduplicationId=request.deduplication_id,
            MessageAttributes=tracing_messaging.message_attributes(request.correlation_id),
        )
        tracing_messaging.sent(span, response)
    return str(response["MessageId"])
