"""What recording one completion's usage adds to the conversation worker (issue 16).

By default, what the worker does in the stack (``USAGE_QUEUE_URL`` set on every function): one SQS
``SendMessage`` per completion to the usage queue, the usage aggregator writing the counters off the
request path; timed through ``record_usage`` (the message built, the EMF line, the send) and beside a
bare ``SendMessage`` of the same body. The queue is on moto's server, in its own process on loopback.

``--direct``: the direct writes, now only the fallback when the send fails (and the path without
the variable: unit tests, scripts).
``record_usage`` with a model (priced), a channel, a workspace and two groups: 7 dimension values x
(day, ISO week, month) = 21 ``UpdateItem`` ADDs and one ``PutItem`` (the per-completion record), run
on the shared pool of ``WRITE_THREADS`` threads (the index items are written once per value and
period per container, so not in the steady state). Against moto's server on loopback (the template's
tables, in its own process; every call a real HTTP request), N completions, printing p50 / p95 / p99 in milliseconds,
beside one UpdateItem and the two sequential UpdateItems the worker made before issue 16. The
conversation worker records in the background (``background=True``) and drains when the request is
done: the reply waits only for the submission. moto's server handles one request at a time, so the
waited figure is the writes' sum here; DynamoDB serves them in parallel (about the slowest of 3
rounds of 8).

    python benchmarks/usage_recording.py [--completions N] [--direct]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))


WHEN = datetime.now(UTC)


class AwsCalls:
    """Counts the AWS calls made (botocore's before-call hook), by operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"moto server not listening on {port}")


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]

    return f"p50 {statistics.median(ordered):6.2f}  p95 {at(0.95):6.2f}  p99 {at(0.99):6.2f} ms"


def timed(action: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=200)
    parser.add_argument("--direct", action="store_true",
                        help="time the direct DynamoDB writes (the fallback) instead of the usage queue")
    args = parser.parse_args()

    import io
    import logging

    from botocore import handlers

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    out, sys.stdout = sys.stdout, io.StringIO()  # the EMF lines (one per completion) are not the output

    port = free_port()
    # moto's server in its own process: in this one, its request handling would compete with the
    # client's threads for the GIL and serialise the concurrent writes being measured.
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port)
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    calls = AwsCalls()
    handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", calls))
    handlers.BUILTIN_HANDLERS.append(("before-call.sqs", calls))
    try:
        from insightmesh.llm.pricing import PRICES_SUBJECT, ModelPrice
        from tests.integration.conftest import create_tables, template

        for variable, name in create_tables(template()).items():
            os.environ[variable] = name
        ModelPrice(PRICES_SUBJECT, "gpt-4o-mini", input_usd_per_million=0.15, output_usd_per_million=0.6).save()
        measured = direct(args.completions, calls) if args.direct else queued(args.completions, calls)
    finally:
        server.terminate()
        server.wait(timeout=10)
        sys.stdout = out
    title, per_completion, rows, cpu_ms = measured
    print(f"usage recording, {title}, {args.completions} completions per row, moto server (its own process) "
          "on loopback")
    print(f"  AWS calls per completion (steady state): {per_completion}")
    for label, samples in rows:
        print(f"  {label:<45} {percentiles(samples)}")
    print(f"  client CPU per completion (all threads)       {cpu_ms:6.2f} ms")


Measured = tuple[str, dict[str, int], list[tuple[str, list[float]]], float]
"""(what was timed, AWS calls per completion, (label, samples ms) rows, client CPU ms per completion)."""


def record(*, background: bool = False) -> None:
    """One completion as the worker records it: a priced model, a channel, a workspace, two groups."""
    from insightmesh.llm.base import Usage
    from insightmesh.llm.usage import record_usage

    record_usage(agent="help", user_id="u-bench", usage=Usage(1200, 300), model="gpt-4o-mini", channel="C1",
                 groups=("sales", "emea"), workspace="T1", request_id="req-bench", when=WHEN, background=background)


def steady_calls(calls: AwsCalls, action: Callable[[], object]) -> dict[str, int]:
    calls.calls.clear()
    action()
    return dict(calls.calls)


def cpu_timed(action: Callable[[], object], runs: int) -> tuple[list[float], float]:
    """(wall ms of each run, client CPU ms per run over all threads)."""
    started = time.process_time()
    samples = timed(action, runs)
    return samples, (time.process_time() - started) * 1000 / runs


def queued(completions: int, calls: AwsCalls) -> Measured:
    """What the worker does in the stack: ``record_usage`` sends one message to the usage queue."""
    from insightmesh.aws import client
    from insightmesh.llm.usage import SEND_CONNECT_SECONDS, SEND_READ_SECONDS, USAGE_QUEUE_VARIABLE
    from insightmesh.resilience import Timeouts

    sqs = client("sqs", timeouts=Timeouts(SEND_CONNECT_SECONDS, SEND_READ_SECONDS), attempts=2)  # record_usage's
    url = sqs.create_queue(QueueName="bench-usage")["QueueUrl"]
    os.environ[USAGE_QUEUE_VARIABLE] = url
    for _ in range(20):  # warm: the SQS client, its connection, the price cache
        record()
    per_completion = steady_calls(calls, record)
    body = sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"]

    def bare() -> None:
        sqs.send_message(QueueUrl=url, MessageBody=body)

    waited, sent_bare, cpu = [], [], [0.0, 0.0]
    for _ in range(completions):  # interleaved: a change in the machine's load hits both rows alike
        for samples, action, slot in ((waited, record, 0), (sent_bare, bare, 1)):
            started = time.process_time()
            samples += timed(action, 1)
            cpu[slot] += time.process_time() - started
    queued_now = int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                     ["Attributes"]["ApproximateNumberOfMessages"]) + 1  # the one received above is in flight
    expected = 20 + 1 + 2 * completions
    if queued_now != expected:  # a failed send falls back to the direct writes: then this timed the wrong path
        raise RuntimeError(f"{queued_now} messages on the queue, {expected} expected")
    rows = [("record_usage: one SendMessage to the queue", waited),
            (f"  a bare SendMessage of the same body ({len(body)} B)", sent_bare)]
    title = f"the usage queue (what the worker does; a bare send's client CPU {cpu[1] * 1000 / completions:.2f} ms)"
    return title, per_completion, rows, cpu[0] * 1000 / completions


def direct(completions: int, calls: AwsCalls) -> Measured:
    """The fallback: every counter, index item and the per-completion record written from here."""
    from insightmesh.llm.usage import WRITE_THREADS, UsageRecord, drain_usage

    def in_background_then_drained() -> tuple[list[float], list[float]]:
        """(submit ms, drain ms) of each completion: the reply waits for the first only."""
        submit, drain = [], []
        for _ in range(completions):
            started = time.perf_counter()
            record(background=True)
            submitted = time.perf_counter()
            drain_usage()
            submit.append((submitted - started) * 1000)
            drain.append((time.perf_counter() - submitted) * 1000)
        return submit, drain

    def one_update(subject: str = "agent#bench") -> None:
        UsageRecord(subject, "2026-12-07").update(actions=[UsageRecord.calls.add(1)])

    def before_issue_16() -> None:
        one_update("agent#help")
        one_update("user#u-bench")

    for _ in range(20):  # warm: connections, the price cache, the index items
        record()
        before_issue_16()
    per_completion = steady_calls(calls, record)
    waited, cpu_ms = cpu_timed(record, completions)
    submit, drain = in_background_then_drained()
    rows = [("record_usage, 7 values x 3 periods + record", waited),
            ("  background: until record_usage returns", submit),
            ("  background: drain_usage after it", drain),
            ("one UpdateItem", timed(one_update, completions)),
            ("before issue 16: 2 sequential UpdateItems", timed(before_issue_16, completions))]
    return f"direct writes (the fallback), {WRITE_THREADS} write threads", per_completion, rows, cpu_ms


if __name__ == "__main__":
    main()
