"""What flushing the spans at the end of a Lambda invocation costs (insightmesh.tracing.flush).

Every handler is ``@tracing.flushed``: before it returns, the spans it made go to the OTLP
endpoint in one HTTP POST. This measures that POST, in process, to the OTLP/HTTP receiver
stand-in on loopback (``tests/standins/otlp_server.py``: it parses every protobuf body), for a
batch of 1, 8 (about a worker request: consumer, route, permission, retrieval, LLM, tool, two
Slack calls) and 50 spans with the attributes the layer sets; then a flush with nothing to send;
then the bound: a flush to an endpoint that accepts connections and never answers returns after
``DEFAULT_FLUSH_SECONDS`` (2 s), not the exporter's 10 s timeout.

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
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))

from insightmesh import tracing  # noqa: E402
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

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    configure(f"http://127.0.0.1:{silent.getsockname()[1]}")
    os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "3"
    make_spans(8)
    started = time.perf_counter()
    tracing.flush()
    print(f"collector not answering: flush() returned after {time.perf_counter() - started:.2f} s "
          f"(bound {tracing.DEFAULT_FLUSH_SECONDS:g} s)")
    tracing.reset_for_tests()
    silent.close()


if __name__ == "__main__":
    main()
