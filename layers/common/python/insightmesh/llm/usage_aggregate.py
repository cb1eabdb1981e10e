"""The usage aggregator: a batch of completions from the usage queue (``USAGE_QUEUE_URL``, one
:class:`~insightmesh.llm.usage.UsageMessage` per completion, sent by ``record_usage``) written
to the usage table coalesced (function ``usage_aggregator``; template ``UsageAggregatorFunction``,
SQS batches of up to 100 gathered for up to 5 s).

For a batch: tokens, calls and cost are summed per (subject, period) into one ``UpdateItem ADD``
each; the values of each (dimension, period) index item are unioned into one ``ADD`` (minus those
this container indexed lately); the per-completion records are saved with ``BatchWriteItem``. 100
DMs of one user in one channel are 3 x 5 counter writes, not 100 x 22.

Failures: a message that is not a usage message is logged and reported failed alone (it reaches
the DLQ after 5 receives, never counted). If any write fails, every message of the batch is
reported failed and SQS delivers them again: the writes that did succeed are then ADDed a second
time. The chosen side: a redelivery may count part of a batch twice, it never loses a completion
— budgets read these counters, and a budget should over-count (refuse a little early) rather
than under-count (let spend run past its limit). A record is saved under its own key, so its
redelivery overwrites it.

Hand-rolled rather than powertools' ``BatchProcessor``: that calls a handler per record and
reports each record's own outcome, while coalescing writes once for all records, so one write's
failure is every record's failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from pydantic import ValidationError

from insightmesh import tracing_messaging
from insightmesh.llm.base import Usage
from insightmesh.llm.usage import Counts, Dimension, IndexWrite, UsageMessage, not_indexed, submit_writes
from insightmesh.observability import get_logger

logger = get_logger("usage_aggregator")


class ItemFailure(TypedDict):
    itemIdentifier: str


class BatchResponse(TypedDict):
    batchItemFailures: list[ItemFailure]


def coalesce(messages: Sequence[UsageMessage]) -> tuple[list[Counts], list[IndexWrite]]:
    """The counter ADDs (one per subject and period) and index ADDs (one per dimension and period)
    that count ``messages`` — what their one-by-one writes add up to."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    members: dict[tuple[Dimension, str], set[str]] = defaultdict(set)
    for message in messages:
        for period in message.periods:
            for dimension, value in message.pairs:
                total = totals[(f"{dimension}#{value}", period)]
                total[0] += message.prompt_tokens
                total[1] += message.completion_tokens
                total[2] += 1
                total[3] += message.cost_micros
                members[(dimension, period)].add(value)
    counts = [Counts(subject, period, Usage(prompt, completion), cost, calls)
              for (subject, period), (prompt, completion, calls, cost) in totals.items()]
    index = [(dimension, period, new) for (dimension, period), values in members.items()
             if (new := not_indexed(dimension, period, values))]
    return counts, index


def aggregate(messages: Sequence[UsageMessage]) -> bool:
    """Write ``messages`` coalesced; False (logged) if any write failed."""
    if not messages:
        return True
    counts, index = coalesce(messages)
    return submit_writes(counts, index, [message.usage_call() for message in messages]).settle()


def handle_batch(event: Mapping[str, Any]) -> BatchResponse:
    """An SQS event of usage messages → Lambda's partial batch response."""
    records: list[Mapping[str, Any]] = list(event.get("Records") or [])
    messages: list[UsageMessage] = []
    ids: list[str] = []
    failures: list[ItemFailure] = []
    for record in records:
        # The consumer span joins the sender's trace; the writes, shared by the batch, come after.
        with tracing_messaging.process_span(record):
            try:
                messages.append(UsageMessage.model_validate_json(str(record.get("body") or "")))
                ids.append(str(record["messageId"]))
            except ValidationError as error:
                logger.error("not a usage message; left for the dead-letter queue",
                             extra={"message_id": record.get("messageId"), "error": str(error)})
                failures.append({"itemIdentifier": str(record.get("messageId"))})
    if not aggregate(messages):
        failures += [{"itemIdentifier": message_id} for message_id in ids]
    else:
        logger.info("usage aggregated", extra={"completions": len(messages)})
    return {"batchItemFailures": failures}
