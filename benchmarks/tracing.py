"""What tracing costs: the Slack ack path and a whole DM request, with tracing off, on (every
trace sampled) and on with 10% of traces sampled, exporting OTLP/HTTP to a loopback receiver
(tests/standins/otlp_server.py, in a process of its own). Prints p50 / p99 in milliseconds per
variant.

* **ack path, in-process** — functions/slack_ingress/handler.py called directly with a signed
  app_mention (verify, enqueue to the emulator's FIFO queue, ack), then ``tracing.flush()`` as the
  end of a Lambda invocation does: the figure includes exporting the invocation's spans. The three
  variants run interleaved in blocks of 50 (tracing is switched between blocks, each on a fresh
  queue: moto's FIFO send slows as a queue grows).
* **DM request, `insightmesh dev`** — one dev server per variant (``--otlp-endpoint`` and the
  variant's ``OTEL_TRACES_SAMPLER``), the three side by side and sampled in turn; each sample posts
  a signed DM and waits for its answer in the Slack sandbox; two figures: Slack's event to the LLM
  call (as benchmarks/request_path.py), and to the final reply.

The variants: ``off`` (no endpoint: the no-op path), ``on, 1.0`` (``parentbased_always_on``) and
``on, 0.1`` (``parentbased_traceidratio``, ``0.1``).

    python benchmarks/tracing.py [--events 300] [--samples 30]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "local"), str(ROOT / "benchmarks")]

import request_path  # noqa: E402  (benchmarks/request_path.py: the timed LLM stand-in, the people)
import slack_ingress as ingress_bench  # noqa: E402  (benchmarks/slack_ingress.py: signed events, the handler)

from insightmesh_local import slack_signing as slack  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.e2e.dev_server import DevServer  # noqa: E402

VARIANTS: dict[str, dict[str, str]] = {
    "off": {},
    "on, 1.0": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 0.1": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME")
BLOCK = 50


class Receiver:
    """The OTLP receiver stand-in in a process of its own, as a collector would be (in this one it
    would take the interpreter from the stand-ins and the handler being timed); spans counted
    through its ``GET /spans``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "tests.standins.otlp_server", "--port", str(self.port),
                                         "--max-seconds", "1800"], cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.spans()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> int:
        return len(httpx.get(f"{self.endpoint}/spans", timeout=10).json()["spans"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def row(name: str, samples: list[float], note: str = "") -> None:
    p50, p99 = request_path.percentiles(samples)
    print(f"{name:<34} n={len(samples):<4} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms  {note}", flush=True)


def use_variant(variant: str, receiver: Receiver) -> None:
    """Switch this process's tracing to ``variant`` (the provider is rebuilt from the OTEL_* variables)."""
    from insightmesh import tracing

    for key in OTEL_VARIABLES:
        os.environ.pop(key, None)
    if variant != "off":
        os.environ.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "slack_ingress",
                           **VARIANTS[variant]})
    tracing.reset_for_tests()
    assert tracing.enabled() is (variant != "off")


def ack_path(events: int, receiver: Receiver) -> None:
    from insightmesh_local.runtime import LocalRuntime

    runtime = LocalRuntime(template_path=ROOT / "infra" / "template.yaml", port=free_port(),
                           emulator_port=free_port(), parameters={"SlackSigningSecret": ingress_bench.SECRET},
                           environ={}, log=lambda _m: None)
    runtime.deploy()
    assert runtime.functions is not None and runtime.emulator is not None
    try:
        spec = runtime.functions.find("SlackIngressFunction")
        env = {k: v for k, v in spec.environment.items() if k not in ("PATH", "HOME")}
        env["POWERTOOLS_LOG_LEVEL"] = env["LOG_LEVEL"] = "WARNING"
        os.environ.update(env)
        sys.path.insert(0, str(spec.code_dir))
        handler = ingress_bench.load_handler(spec.code_dir / "handler.py", "ingress_handler")
        import boto3

        from insightmesh import tracing

        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=runtime.emulator.url)
        context = ingress_bench.Context()
        samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        counter = iter(range(10**9))

        def call() -> float:
            event = ingress_bench.api_event(ingress_bench.mention_body(next(counter)))
            started = time.perf_counter()
            response = handler.lambda_handler(event, context)
            tracing.flush()  # what the end of a Lambda invocation does
            elapsed = (time.perf_counter() - started) * 1000
            assert response["statusCode"] == 200, response
            return elapsed

        blocks = max(1, events // BLOCK)
        for block in range(blocks):
            for variant in VARIANTS:
                use_variant(variant, receiver)
                os.environ["CONVERSATION_QUEUE_URL"] = sqs.create_queue(
                    QueueName=f"bench-{block}-{len(samples[variant])}-{variant[-3:].replace('.', '')}.fifo",
                    Attributes={"FifoQueue": "true"})["QueueUrl"]
                for _ in range(5):  # warm: the provider, the exporter's connection
                    call()
                samples[variant].extend(call() for _ in range(BLOCK))
        use_variant("off", receiver)
        print("ack path, in-process (verify + SQS send + flush)")
        for variant, times in samples.items():
            row(f"  tracing {variant}", times)
    finally:
        if runtime.functions is not None:
            runtime.functions.close()
        if runtime.emulator is not None:
            runtime.emulator.stop()


def dm_requests(samples: int, receiver: Receiver) -> None:
    """The three dev servers run side by side and the samples go round them in turn, so that the
    machine's load weighs on every variant alike."""
    print("DM request through insightmesh dev (Slack's event -> LLM call | -> final reply)")
    people = request_path.PEOPLE
    with ExitStack() as stack:
        samplers: dict[str, Callable[[str], tuple[float, float]]] = {}
        for variant, settings in VARIANTS.items():
            llm = request_path.TimedStandin().start_in_thread()
            stack.callback(llm.stop)
            sandbox = stack.enter_context(SlackSandbox(port=0))
            sandbox.add_users(*({"id": person, "email": f"person{n}@corp.example"} for n, person in enumerate(people)))
            for person in people:
                sandbox.set_channel(f"D{person[1:]}", [], kind="im", user=person)
            extra = () if variant == "off" else ("--otlp-endpoint", receiver.endpoint)
            dev = DevServer(*extra, env={
                "SLACK_SIGNING_SECRET": request_path.SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_API_URL": sandbox.url, "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url,
                "LLM_API_KEY": "sk-bench-000000000", "LLM_MODEL": "bench", "SLACK_USER_RATE_LIMIT_PER_MINUTE": "0",
                **settings})
            stack.callback(dev.stop)
            dev.wait_ready()
            http = stack.enter_context(httpx.Client(base_url=dev.url, timeout=30))
            samplers[variant] = dm_sampler(http, llm, sandbox)
            for person in people:  # warm-up: every person known, every function warm
                samplers[variant](person)
        before = receiver.spans()
        times: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
        for i in range(samples):
            for variant, sample in samplers.items():
                times[variant].append(sample(people[i % len(people)]))
        time.sleep(1.0)  # the last spans exported
        print(f"  ({receiver.spans() - before} spans exported by the traced servers)")
        for variant, pairs in times.items():
            row(f"  tracing {variant}: to LLM call", [pair[0] for pair in pairs])
            row(f"  tracing {variant}: to reply", [pair[1] for pair in pairs])


def dm_sampler(http: httpx.Client, llm: request_path.TimedStandin,
               sandbox: SlackSandbox) -> Callable[[str], tuple[float, float]]:
    counter = iter(range(10**9))

    def sample(person: str) -> tuple[float, float]:
        marker = f"q{next(counter)}x"
        ts, channel = request_path.new_ts(), f"D{person[1:]}"
        event = slack.message_event(person, channel, f"what does {marker} mean for the travel policy?", ts,
                                    channel_type="im")
        body = slack.json_body(slack.event_callback(request_path.TEAM, slack.DEFAULT_APP_ID, event))
        started = time.monotonic()
        http.post("/slack/events", content=body,
                  headers=slack.signed_headers(request_path.SECRET, body, "application/json")).raise_for_status()
        to_llm = (llm.wait_for(marker) - started) * 1000
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(m.get("is_bot") and marker in m["text"] and not m.get("streaming")
                   for m in sandbox.messages(channel=channel, thread_ts=ts)):
                return to_llm, (time.monotonic() - started) * 1000
            time.sleep(0.005)
        raise TimeoutError(f"no reply to {marker}")

    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="ack-path samples per variant (blocks of 50)")
    parser.add_argument("--samples", type=int, default=30, help="DM requests per variant")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the embedded emulator's request lines
    receiver = Receiver()
    try:
        ack_path(args.events, receiver)
        dm_requests(args.samples, receiver)
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
