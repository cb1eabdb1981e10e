"""The local SQS event source keeps a FIFO group in order across its pollers, as SQS does.

moto's server, threaded as `insightmesh dev` runs it, can hand a group's next message to a poller
whose long poll began before the group's first message was received (its in-flight check is taken
when the poll starts). The pollers' group gate makes the second invocation wait for the first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from insightmesh_local.functions import Invocation
from insightmesh_local.sqs_poller import SqsMapping, SqsPoller
from tests.helpers import free_port, wait_for


class SlowFirstFunction:
    """A function whose first invocation waits for ``release``; each records when it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs: list[tuple[str, float, float]] = []  # (body, start, end)
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def started(self, body: str) -> bool:
        with self.lock:
            return any(run[0] == body for run in self.runs) or body in self.running

    def invoke(self, name: str, event: Any, *, trigger: str) -> Invocation:
        body = event["Records"][0]["body"]
        start = time.monotonic()
        with self.lock:
            self.running.add(body)
        if body == "first":
            assert self.release.wait(timeout=30), "the test never released the first invocation"
        with self.lock:
            self.running.discard(body)
            self.runs.append((body, start, time.monotonic()))
        return Invocation(function=name, trigger=trigger, ok=True, result=None)


@pytest.fixture
def sqs() -> Iterator[Any]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    finally:
        server.stop()


def test_a_groups_second_message_waits_for_the_first_invocation_to_end(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="ordered.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    function = SlowFirstFunction()
    mapping = SqsMapping(function="Worker", event_name="Queue",
                         queue_arn="arn:aws:sqs:us-east-1:123456789012:ordered.fifo", batch_size=1,
                         batching_window=0, report_failures=True, enabled=True, max_concurrency=2)
    stop = threading.Event()
    poller = SqsPoller(mapping, function, sqs, "us-east-1", log=lambda _line: None, stop=stop)  # type: ignore[arg-type]
    poller.start()
    try:
        def send(body: str) -> None:
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="T1:C1:1700000000.000100",
                             MessageDeduplicationId=body)

        send("first")
        wait_for(lambda: function.started("first"), timeout=10, what="the first invocation")
        send("second")
        # Give the second poller time to receive it (moto may hand it out; SQS would not), bounded.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not function.started("second"):
            time.sleep(0.05)
        assert not function.started("second"), "a group's second message ran beside its first"

        function.release.set()
        wait_for(lambda: len(function.runs) == 2, timeout=10, what="both invocations")
        first, second = sorted(function.runs, key=lambda run: run[1])
        assert (first[0], second[0]) == ("first", "second")
        assert second[1] >= first[2]  # it began after the first ended: order, not a timing bound
        wait_for(lambda: "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0), timeout=5,
                 what="both messages deleted")
    finally:
        function.release.set()
        stop.set()
        poller.join(timeout=5)
