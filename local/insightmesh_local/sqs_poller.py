"""Lambda's SQS event source mapping, locally (moto stores queues but never invokes functions).

Per ``SQS`` event: long-poll the queue, gather up to ``BatchSize`` messages (waiting at most
``MaximumBatchingWindowInSeconds`` to fill a batch), invoke the function with Lambda's SQS event,
then delete what succeeded. With ``ReportBatchItemFailures`` only the returned
``batchItemFailures`` stay on the queue; a function error or time-out leaves the whole batch.
Messages left on the queue come back after the visibility timeout, and the queue's redrive
policy moves them to the DLQ after ``maxReceiveCount`` receives (moto implements that part).

FIFO order: SQS never hands out a message while an earlier one of its ``MessageGroupId`` is in
flight (a thread's second question waits for the first's answer and saved memory). moto means to,
but a long poll checks the in-flight groups only when it starts: a poller already waiting when a
sibling receives a group's first message can still receive that group's next one. So the pollers
of a queue also keep the groups they are invoking with in one :class:`_GroupGate`; a batch whose
group another poller holds waits (holding its receipt: handing it back would count a receive
toward the DLQ) until that invocation ends and its messages are deleted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from insightmesh_local.functions import Functions, FunctionSpec


@dataclass(frozen=True)
class SqsMapping:
    function: str
    event_name: str
    queue_arn: str
    batch_size: int
    batching_window: float
    report_failures: bool
    enabled: bool
    max_concurrency: int


LOCAL_MAX_CONCURRENCY: Final = 10


def mappings_from(specs: list[FunctionSpec], resolve: Callable[[Any], Any]) -> list[SqsMapping]:
    found = []
    for spec in specs:
        for event_name, event in spec.events.items():
            if event.get("Type") != "SQS":
                continue
            properties = resolve(event.get("Properties") or {})
            found.append(SqsMapping(
                function=spec.logical_id,
                event_name=event_name,
                queue_arn=str(properties["Queue"]),
                batch_size=int(properties.get("BatchSize", 10)),
                batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                report_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
                enabled=properties.get("Enabled", True) not in (False, "false"),
                max_concurrency=int((properties.get("ScalingConfig") or {}).get("MaximumConcurrency", 2)),
            ))
    return found


def _record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = dict(message.get("Attributes") or {})
    attributes.pop("AWSTraceHeader", None)
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class _GroupGate:
    """The FIFO message groups a queue's pollers are invoking with (see the module doc)."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._changed = threading.Condition()

    def enter(self, groups: set[str], stop: threading.Event) -> bool:
        """Wait until no other poller holds any of ``groups``, then hold them; False on stop."""
        with self._changed:
            while self._held & groups:
                if stop.is_set():
                    return False
                self._changed.wait(timeout=0.5)
            self._held |= groups
            return True

    def leave(self, groups: set[str]) -> None:
        with self._changed:
            self._held -= groups
            self._changed.notify_all()


_GATES: dict[str, _GroupGate] = {}
_GATES_LOCK = threading.Lock()


def _gate(queue_url: str) -> _GroupGate:
    with _GATES_LOCK:
        return _GATES.setdefault(queue_url, _GroupGate())


class SqsPoller:
    def __init__(self, mapping: SqsMapping, functions: Functions, sqs: Any, region: str,
                 log: Callable[[str], None], stop: threading.Event, wait_seconds: int = 1) -> None:
        self.mapping = mapping
        self.functions = functions
        self.sqs = sqs
        self.region = region
        self.log = log
        self.stop = stop
        self.wait_seconds = wait_seconds
        name = mapping.queue_arn.rsplit(":", 1)[-1]
        self.queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        self.gate = _gate(self.queue_url)
        # One poller per concurrent invocation the mapping allows (ScalingConfig.MaximumConcurrency),
        # at most LOCAL_MAX_CONCURRENCY on one machine: the conversation worker takes one message
        # per invocation, so its concurrency is how many threads are answered at once.
        self.threads = [threading.Thread(target=self.run, name=f"sqs-{mapping.function}-{i}", daemon=True)
                        for i in range(max(1, min(mapping.max_concurrency, LOCAL_MAX_CONCURRENCY)))]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout)

    def _receive(self, limit: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, limit)),
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def gather(self) -> list[dict[str, Any]]:
        batch = self._receive(self.mapping.batch_size)
        if not batch or self.mapping.batching_window <= 0:
            return batch
        deadline = time.monotonic() + self.mapping.batching_window
        while len(batch) < self.mapping.batch_size and time.monotonic() < deadline and not self.stop.is_set():
            batch.extend(self._receive(self.mapping.batch_size - len(batch)))
        return batch

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self.gather()
                if batch:
                    self.process(batch)
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                self.log(f"sqs {self.mapping.function}/{self.mapping.event_name}: {error}; retrying in 1s")
                self.stop.wait(1.0)

    def process(self, batch: list[dict[str, Any]]) -> None:
        groups = {str(message["Attributes"]["MessageGroupId"]) for message in batch
                  if (message.get("Attributes") or {}).get("MessageGroupId")}
        if not self.gate.enter(groups, self.stop):
            return  # stopping: the batch becomes visible again after its visibility timeout
        try:
            self._invoke(batch)
        finally:
            self.gate.leave(groups)

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [_record(message, self.mapping.queue_arn, self.region) for message in batch]}
        invocation = self.functions.invoke(self.mapping.function, event,
                                           trigger=f"sqs {self.mapping.queue_arn.rsplit(':', 1)[-1]} x{len(batch)}")
        if not invocation.ok:
            return  # the whole batch becomes visible again after the visibility timeout
        failed = self.failed_ids(invocation.result, batch)
        done = [message for message in batch if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]} for i, message in enumerate(chunk)])
        if failed:
            self.log(f"sqs {self.mapping.function}: {len(failed)} of {len(batch)} message(s) reported failed")

    def failed_ids(self, result: Any, batch: list[dict[str, Any]]) -> set[str]:
        """Lambda's rules: failures count only with ReportBatchItemFailures; an unknown or empty
        itemIdentifier fails the whole batch."""
        if not self.mapping.report_failures or not isinstance(result, dict):
            return set()
        failures = result.get("batchItemFailures") or []
        ids = {message["MessageId"] for message in batch}
        failed = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in ids:
                self.log(f"sqs {self.mapping.function}: invalid itemIdentifier {identifier!r}; whole batch failed")
                return ids
            failed.add(identifier)
        return failed
