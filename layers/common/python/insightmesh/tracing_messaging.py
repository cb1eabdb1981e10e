"""The spans of a trace's hops between processes: SQS send and process, direct invocations.

A request's trace crosses processes three ways, and each hop is a pair of spans joined by the W3C
``traceparent`` (:mod:`insightmesh.tracing`):

* **SQS** — the sender wraps ``send_message`` in :func:`send_span` (kind producer) and sends
  :func:`message_attributes` (the correlation id plus the span's ``traceparent``/``tracestate``:
  3 of SQS's 10 message attributes at most); the consumer wraps each record in
  :func:`process_span` (kind consumer), whose parent is the producer span. A message the queue
  moves to its DLQ keeps its attributes, so the DLQ handler's span joins the same trace.
* **Direct invocations** (the durable research function) — the payload carries the fields
  :func:`insightmesh.tracing.inject` gives; :func:`carrier_from_event` reads them back.

Names and attributes follow OpenTelemetry's messaging conventions (``send {queue}``, ``process
{queue}``, ``messaging.system = aws_sqs``). When tracing is off every helper returns the shared
no-op span without building a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from insightmesh import tracing
from insightmesh.observability import SqsStringAttribute, correlation_message_attributes

MESSAGING_SYSTEM: Final = "aws_sqs"


def queue_name(queue_url_or_arn: str) -> str:
    """The queue's name from its URL (``.../123456789012/name``) or ARN (``arn:...:name``)."""
    return queue_url_or_arn.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def send_span(queue_url: str) -> AbstractContextManager[tracing.Span]:
    """A producer span around one ``send_message`` to ``queue_url``; build the message's
    attributes with :func:`message_attributes` inside it, so the consumer's span is its child."""
    if not tracing.enabled():
        return nullcontext(tracing.NOOP_SPAN)
    name = queue_name(queue_url)
    return tracing.span(f"send {name}", kind="producer", attributes={
        "messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "send",
        "messaging.operation.name": "send_message", "messaging.destination.name": name})


def message_attributes(correlation_id: str) -> dict[str, SqsStringAttribute]:
    """SQS ``MessageAttributes``: the correlation id and, when tracing, the current trace context."""
    attributes = correlation_message_attributes(correlation_id)
    if tracing.enabled():
        for key, value in tracing.sqs_message_attributes().items():
            attributes[key] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return attributes


def sent(span: tracing.Span, response: Mapping[str, Any]) -> None:
    """Record the id SQS gave the message on its producer span."""
    if span.is_recording():
        span.set_attribute("messaging.message.id", str(response.get("MessageId", "")))


def process_span(record: Mapping[str, Any]) -> AbstractContextManager[tracing.Span]:
    """A consumer span around the processing of one SQS record (Lambda's event shape), the child
    of the span that sent it when the record carries a trace context (else a new trace)."""
    if not tracing.enabled():
        return nullcontext(tracing.NOOP_SPAN)
    name = queue_name(str(record.get("eventSourceARN") or "sqs"))
    attributes: dict[str, tracing.AttributeValue] = {
        "messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": name,
        "messaging.message.id": str(record.get("messageId") or "")}
    receive_count = (record.get("attributes") or {}).get("ApproximateReceiveCount")
    if receive_count:
        attributes["messaging.aws_sqs.receive_count"] = int(receive_count)
    return tracing.span(f"process {name}", kind="consumer", attributes=attributes,
                        parent=tracing.carrier_from_sqs_record(record) or None)


def carrier_from_event(event: Mapping[str, Any]) -> tracing.Carrier:
    """The trace carrier a direct invocation's payload holds (the fields ``tracing.inject`` wrote)."""
    if not tracing.enabled():
        return {}
    return {key: value for key in (tracing.TRACEPARENT, tracing.TRACESTATE)
            if isinstance(value := event.get(key), str) and value}


__all__ = ["MESSAGING_SYSTEM", "carrier_from_event", "message_attributes", "process_span", "queue_name",
           "send_span", "sent"]
