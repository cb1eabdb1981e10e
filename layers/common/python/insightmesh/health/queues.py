"""The depth of every SQS queue the stack declares (``GET /api/queues``, admins; the console's dashboard).

The queues are the ones :func:`insightmesh.health.checks.declared_resources` finds in the environment
(template ``Globals``: ``*_QUEUE_URL`` a work queue, ``*_DLQ_URL`` its dead-letter queue), so a
queue added to the template is listed without a change here. One ``GetQueueAttributes`` per queue,
run concurrently, each with the readiness check's timeout and a single attempt; a queue that cannot
be read is listed with its error rather than failing the list, so one broken queue never hides the
depth of the others. The counts are SQS's approximations (eventually consistent, by design).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal

from pydantic import BaseModel, Field

from insightmesh.health.checks import Resource, declared_resources
from insightmesh.resilience import Timeouts

ATTRIBUTES: Final = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"]


class QueueDepth(BaseModel):
    name: str = Field(description="The environment variable that declares it, e.g. CONVERSATION_DLQ_URL.")
    queue: str = Field(description="The queue's name.")
    kind: Literal["queue", "dlq"] = Field(description="dlq: a dead-letter queue (a message there is failed work).")
    visible: int | None = Field(description="ApproximateNumberOfMessages: waiting to be received.")
    in_flight: int | None = Field(description="ApproximateNumberOfMessagesNotVisible: received, not yet deleted.")
    delayed: int | None = Field(description="ApproximateNumberOfMessagesDelayed.")
    error: str | None = Field(default=None, description="Why the queue could not be read (counts are then null).")


class QueueList(BaseModel):
    items: list[QueueDepth]


def _depth(variable: str, url: str, kind: Literal["queue", "dlq"], timeouts: Timeouts) -> QueueDepth:
    from botocore.exceptions import BotoCoreError, ClientError

    from insightmesh.aws import client

    name = url.rsplit("/", 1)[-1]
    try:
        found = client("sqs", timeouts=timeouts, attempts=1).get_queue_attributes(
            QueueUrl=url, AttributeNames=ATTRIBUTES)["Attributes"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        return QueueDepth(name=variable, queue=name, kind=kind, visible=None, in_flight=None, delayed=None, error=code)
    except BotoCoreError as error:
        return QueueDepth(name=variable, queue=name, kind=kind, visible=None, in_flight=None, delayed=None,
                          error=type(error).__name__)
    return QueueDepth(name=variable, queue=name, kind=kind, visible=int(found.get(ATTRIBUTES[0], 0)),
                      in_flight=int(found.get(ATTRIBUTES[1], 0)), delayed=int(found.get(ATTRIBUTES[2], 0)))


def queue_depths(*, timeout: float, environ: Mapping[str, str] | None = None) -> QueueList:
    """Every declared queue and dead-letter queue, by variable name."""
    timeouts = Timeouts(connect=timeout, read=timeout)
    queues = [resource for resource in declared_resources(environ) if resource.kind in ("sqs_queue", "sqs_dlq")]
    if not queues:
        return QueueList(items=[])

    def depth(resource: Resource) -> QueueDepth:
        return _depth(resource.variable, resource.identifier, "dlq" if resource.kind == "sqs_dlq" else "queue",
                      timeouts)

    with ThreadPoolExecutor(max_workers=min(8, len(queues)), thread_name_prefix="queues") as pool:
        items = list(pool.map(depth, queues))
    return QueueList(items=items)


__all__ = ["QueueDepth", "QueueList", "queue_depths"]
