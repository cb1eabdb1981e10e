"""What flushing the spans at the end of a Lambda invocation costs (insightmesh.tracing.flush).

Every handler is ``@tracing.flushed``: before it returns, the spans it made go to the OTLP
endpoint in one HTTP POST. This measures that POST, in process, to the OTLP/HTTP receiver
stand-in on loopback (``tests/standins/otlp_server.py``: it parses every protobuf body), for a
batch of 1, 8 (about a worker request: consumer, route, permission, retrieval, LLM, tool, two
Slack calls) and 50 spans with the attributes the layer sets; then a flush with nothing to send.

Then slack_ingress's case, where the flush is on Slack's 3-second ack path: the flush of an
ingress request's spans (its server span and its SQS send span) in a fresh container, on a new
connection, and warm — the figures behind its ``@flushed(timeout_seconds=...)`` bound; and the
time a ``@flushed`` handler with that bound adds per invocation to a healthy receiver, to an
endpoint that accepts connections and never answers (the first invocation, which waits the
bound, and the next ones, which do not wait), and after the receiver comes back on the same port
(how many invocations until handlers wait again, whether the spans made meanwhile arrive). It
also counts the flush threads alive (at most one).

    python benchmarks/tracing_flush.py [--runs 200]

Loopback is the floor of the real cost: to a collector in the same region add one round trip
(~1 ms); to the ADOT extension (localhost:4318 in the same execution environment) it is this figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))

from insightmesh import tracing, tracing_otel  # noqa: E402
from tests.standins.otlp_server import start  # noqa: E402

ATTRIBUTES: dict[str, tracing.AttributeValue] = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.max_tokens": 1024, "gen_ai.request.temperature": 0.2, "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 164, "gen_ai.response.finish_reasons": ["stop"],
    "insightmesh.retrieval.scores": [0.91, 0.84, 0.77, 0.65, 0.52],
    "insightmesh.retrieval.document_ids": [f"drive:/doc-{n}" for n in range(5)],
}


def make_spans(count: int) -> None:
    with tracing.span("process conversation", kind="consumer", attributes=ATTRIBUTES):
        for index in range(count - 1):
            with tracing.span(f"child {index}", kind="client", attributes=ATTRIBUTES):
                pass


def configure(endpoint: str) -> None:
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # only the flush exports
    os.environ["OTEL_SERVICE_NAME"] = "benchmark"
    tracing.reset_for_tests()


def timed_flushes(count: int, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        if count:
            make_spans(count)
        started = time.perf_counter()
        tracing.flush()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--bound", type=float, default=tracing.ACK_FLUSH_SECONDS,
                        help="the ingress handler's flush bound (default: slack_ingress's, ACK_FLUSH_SECONDS)")
    args = parser.parse_args()
    receiver = start()
    configure(receiver.endpoint)
    timed_flushes(8, 20)  # warm up: the provider, the exporter's session and connection
    receiver.reset()
    print(f"flush() to the OTLP/HTTP receiver stand-in on loopback, {args.runs} runs each, "
          f"python {sys.version.split()[0]}")
    print(f"{'spans per flush':<18}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for count in (1, 8, 50, 0):
        samples = sorted(timed_flushes(count, args.runs))
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(f"{count or 'none':<18}{statistics.median(samples):>9.2f}{p95:>9.2f}{samples[-1]:>9.2f}")
    print(f"requests received: {receiver.requests} (one POST per flush with spans), "
          f"spans received: {len(receiver.spans())}")
    tracing.reset_for_tests()
    receiver.stop()
    ingress(args.runs, args.bound)


INGRESS_SERVER: dict[str, tracing.AttributeValue] = {
    "http.request.method": "POST", "url.path": "/slack/events", "url.scheme": "https", "http.route": "/slack/events",
    "http.response.status_code": 200, "slack.payload.type": "event_callback", "slack.event.type": "message",
    "slack.event.id": "Ev0123456789", "slack.team.id": "T0123456789"}
INGRESS_SEND: dict[str, tracing.AttributeValue] = {
    "messaging.system": "aws_sqs", "messaging.operation.type": "send",
    "messaging.destination.name": "conversations.fifo", "messaging.message.id": "6c4f3a9e-4b1f-4f6a-9d43-2a7c0b3e5d11"}


def make_ingress_spans() -> None:
    """What slack_ingress traces for one event: its server span and the SQS send inside it."""
    with tracing.span("POST /slack/events", kind="server", attributes=INGRESS_SERVER):
        with tracing.span("send conversations.fifo", kind="producer", attributes=INGRESS_SEND):
            pass


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(int(len(ordered) * 0.95) - 1, 0)]
    return f"p50 {statistics.median(ordered):.2f}  p95 {p95:.2f}  max {ordered[-1]:.2f} ms"


def flush_threads() -> int:
    return sum(thread.name == tracing_otel.FLUSH_THREAD_NAME for thread in threading.enumerate())


def invoke(handler: Callable[[], None]) -> float:
    """One invocation of an ingress-like handler: its spans, then the decorator's flush (timed)."""
    make_ingress_spans()
    started = time.perf_counter()
    handler()
    return (time.perf_counter() - started) * 1000


def ingress(runs: int, bound: float) -> None:
    print(f"\nslack_ingress: an ingress request's spans (server + SQS send), bound {bound:g} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    receiver = start()
    cold = []
    for _ in range(20):  # a fresh provider each time: the first flush opens its connection
        configure(receiver.endpoint)
        make_ingress_spans()
        started = time.perf_counter()
        tracing.flush(bound)
        cold.append((time.perf_counter() - started) * 1000)
    print(f"  first flush of a container (new connection), 20 containers: {percentiles(cold)}")
    handler = tracing.flushed(timeout_seconds=bound)(lambda: None)
    healthy = [invoke(handler) for _ in range(runs)]
    print(f"  added per invocation, healthy receiver, {runs} runs: {percentiles(healthy)}")
    tracing.reset_for_tests()
    receiver.stop()

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "5"
    configure(f"http://127.0.0.1:{port}")
    handler = tracing.flushed(timeout_seconds=bound)(lambda: None)
    first = invoke(handler)
    threads = [flush_threads()]
    down = []
    for _ in range(50):
        down.append(invoke(handler))
        threads.append(flush_threads())
    print(f"  receiver never answers: first invocation {first:.1f} ms; the next 50: {percentiles(down)}; "
          f"flush threads alive at most {max(threads)}; handlers waiting: {tracing_otel.waiting()}")

    silent.close()
    back = start(port)  # the collector comes back on the same address
    made = 1 + 50
    until_waiting: list[float] = []
    while not tracing_otel.waiting() and len(until_waiting) < 500:
        until_waiting.append(invoke(handler))
        made += 1
        time.sleep(0.02)  # invocations keep arriving, 50 a second
    print(f"  receiver back: {len(until_waiting)} invocations until handlers wait again "
          f"(their cost: {percentiles(until_waiting) if until_waiting else 'none'})")
    after = []
    for _ in range(runs):
        after.append(invoke(handler))
        made += 1
    tracing_otel.settle(10)
    print(f"  then {runs} invocations: {percentiles(after)}; spans received {len(back.spans())} "
          f"of {2 * made} made (the ones queued while down included); flush threads alive {flush_threads()}")
    tracing.reset_for_tests()
    back.stop()
    del os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"]


if __name__ == "__main__":
    main()
