"""slack_ingress ack latency against the emulator, side by side with its floor and with Bolt.

One run, one emulator (moto server on loopback, the template's resources), N signed app_mention
events per row (default 300), printing p50 / p99 in milliseconds:

* ``ours in-process``     — functions/slack_ingress/handler.py called directly (verify + enqueue);
* ``floor: raw boto3``    — the AWS call our ack path makes (one FIFO SendMessage), nothing else;
* ``ours via gateway``    — HTTP through the local runtime's API gateway to the worker process;
* ``bolt in-process``     — Bolt for Python's AWS Lambda adapter, an app_mention listener with
                            ``lazy=[...]``: its ack makes one async Lambda Invoke (to the emulator);
* ``floor: raw lambda``   — that Invoke alone, with raw boto3.

Then the cold import + init time of our handler and of Bolt's adapter (median of fresh
interpreters). Note: moto's async Invoke tries to reach Docker, which does not exist here, so
Bolt's rows include that failed attempt; the raw-lambda floor shows how much of it is moto's.

    python benchmarks/slack_ingress.py [--events N] [--cold-runs K]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import httpx

ROOT = Path(__file__).parents[1]
SECRET = "benchmark-signing-secret"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def mention_body(i: int) -> str:
    ts = f"{1790000000 + i}.{i:06d}"
    return json.dumps({
        "token": "x", "team_id": "TBENCH", "api_app_id": "ABENCH", "type": "event_callback",
        "event_id": f"EvBench{i}", "event_time": int(time.time()),
        "event": {"type": "app_mention", "user": "UUSER", "text": f"<@UBOT> question {i}", "ts": ts,
                  "channel": "CBENCH", "event_ts": ts},
        "authorizations": [{"team_id": "TBENCH", "user_id": "UBOT", "is_bot": True}],
    })


def signed_headers(body: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = hmac.new(SECRET.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-slack-request-timestamp": stamp,
            "x-slack-signature": f"v0={signature}"}


def api_event(body: str) -> dict[str, Any]:
    return {"version": "2.0", "routeKey": "POST /slack/events", "rawPath": "/slack/events", "rawQueryString": "",
            "headers": signed_headers(body), "body": body, "isBase64Encoded": False,
            "requestContext": {"http": {"method": "POST", "path": "/slack/events", "sourceIp": "127.0.0.1"},
                               "requestId": f"r{time.perf_counter_ns()}", "stage": "$default"}}


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def load_handler(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_calls(count: int, call: Any) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def cold(code: str, runs: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=ROOT, timeout=120).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "local"))
    import socket

    from insightmesh_local.gateway import Gateway
    from insightmesh_local.runtime import LocalRuntime

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    runtime = LocalRuntime(template_path=ROOT / "infra" / "template.yaml", port=free_port(),
                           emulator_port=free_port(), parameters={"SlackSigningSecret": SECRET},
                           environ={}, log=lambda _m: None)
    runtime.deploy()
    assert runtime.functions is not None and runtime.emulator is not None
    spec = runtime.functions.find("SlackIngressFunction")
    env = {k: v for k, v in spec.environment.items() if k not in ("PATH", "HOME")}
    env["POWERTOOLS_LOG_LEVEL"] = env["LOG_LEVEL"] = "WARNING"  # one JSON line per ack would swamp the figures
    os.environ.update(env)
    queue_url = runtime.stack.physical["ConversationQueue"].ref  # type: ignore[union-attr]
    results: dict[str, tuple[float, float]] = {}
    try:
        # -- ours in process, interleaved with the floor (the same SQS call, raw boto3) ------------
        # Interleaved, and a fresh FIFO queue every 50 rounds: moto's FIFO send slows down as the
        # queue grows (and allows one purge a minute), so one row after the other would favour
        # whichever ran first.
        sys.path.insert(0, str(spec.code_dir))
        ours = load_handler(spec.code_dir / "handler.py", "ingress_handler")
        ctx = Context()
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=runtime.emulator.url)
        attributes = {"correlation_id": {"DataType": "String", "StringValue": "bench"}}
        for i in range(20):  # warm: clients, secret cache
            ours.lambda_handler(api_event(mention_body(10_000_000 + i)), ctx)
        ours_samples: list[float] = []
        floor_samples: list[float] = []
        for i in range(args.events):
            if i % 50 == 0:
                queue_url = sqs.create_queue(QueueName=f"bench-{i}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
                os.environ["CONVERSATION_QUEUE_URL"] = queue_url
            event = api_event(mention_body(i))
            started = time.perf_counter()
            response = ours.lambda_handler(event, ctx)
            ours_samples.append((time.perf_counter() - started) * 1000)
            assert response["statusCode"] == 200, response
            body = mention_body(60_000_000 + i)
            started = time.perf_counter()
            sqs.send_message(QueueUrl=queue_url, MessageBody=body, MessageGroupId=f"TBENCH:CBENCH:{i}",
                             MessageDeduplicationId=f"floor-{i}", MessageAttributes=attributes)
            floor_samples.append((time.perf_counter() - started) * 1000)
        results["ours in-process"] = percentiles(ours_samples)
        results["floor: raw boto3 SQS send"] = percentiles(floor_samples)

        # -- ours through the local gateway (worker process, HTTP) --------------------------------
        gateway = Gateway(runtime.functions, log=lambda _m: None)
        gateway.start("127.0.0.1", free_port())
        bodies = [mention_body(20_000_000 + i) for i in range(args.events)]
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}") as client:
            for i in range(10):
                body = mention_body(30_000_000 + i)
                client.post("/slack/events", content=body, headers=signed_headers(body))
            results["ours via local gateway"] = percentiles(time_calls(
                args.events,
                lambda i: client.post("/slack/events", content=bodies[i], headers=signed_headers(bodies[i]))))
        gateway.stop()

        # -- Bolt's Lambda adapter with a lazy listener ------------------------------------------
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=runtime.emulator.url)
        role = iam.create_role(RoleName="bolt-bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("h.py", "def handler(event, context):\n    return None\n")
        lam = boto3.client("lambda", region_name="us-east-1", endpoint_url=runtime.emulator.url)
        lam.create_function(FunctionName="bench", Runtime="python3.12", Role=role, Handler="h.handler",
                            Code={"ZipFile": archive.getvalue()})
        from slack_bolt import App
        from slack_bolt.adapter.aws_lambda import SlackRequestHandler
        from slack_sdk import WebClient

        from insightmesh_local.slack_sandbox import SlackSandbox

        # Bolt authorises each request with auth.test (cached after the first): point its client
        # at the Slack stand-in so it is not waiting on a network this machine does not have.
        sandbox = SlackSandbox(port=0).start()
        bolt = App(signing_secret=SECRET, client=WebClient(token="xoxb-bench", base_url=sandbox.url),
                   token_verification_enabled=False, process_before_response=True)

        def ack_mention(ack: Any) -> None:
            ack()

        def answer_later(body: dict[str, Any]) -> None:
            return None

        bolt.event("app_mention")(ack=ack_mention, lazy=[answer_later])
        bolt_handler = SlackRequestHandler(bolt)
        bolt_events = [api_event(mention_body(40_000_000 + i)) for i in range(args.events)]
        for i in range(10):
            bolt_handler.handle(api_event(mention_body(50_000_000 + i)), ctx)
        results["bolt lazy in-process"] = percentiles(
            time_calls(args.events, lambda i: bolt_handler.handle(bolt_events[i], ctx)))

        def raw_invoke(_i: int) -> None:
            lam.invoke(FunctionName="bench", InvocationType="Event", Payload=b"{}")

        results["floor: raw boto3 Lambda Invoke"] = percentiles(time_calls(args.events, raw_invoke))
        sandbox.stop()
    finally:
        runtime.functions.close()
        runtime.emulator.stop()

    cold_env = {"PATH": os.environ.get("PATH", ""), **env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    ours_cold = cold(
        "import sys, time; sys.path.insert(0, 'functions/slack_ingress'); t = time.perf_counter(); "
        "import handler; print((time.perf_counter() - t) * 1000)", args.cold_runs, cold_env)
    bolt_cold = cold(
        "import time; t = time.perf_counter(); from slack_bolt import App; "
        "from slack_bolt.adapter.aws_lambda import SlackRequestHandler; "
        "app = App(signing_secret='s', token='xoxb-x', token_verification_enabled=False, "
        "process_before_response=True); SlackRequestHandler(app); print((time.perf_counter() - t) * 1000)",
        args.cold_runs, cold_env)

    print(f"slack_ingress ack latency, {args.events} signed app_mention events per row, moto server on loopback, "
          f"python {sys.version.split()[0]}")
    print(f"{'path':<34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, (p50, p99) in results.items():
        print(f"{label:<34}{p50:>10.2f}{p99:>10.2f}")
    ours_p50 = results["ours in-process"][0]
    floor_p50 = results["floor: raw boto3 SQS send"][0]
    print(f"ours in-process / floor (p50): {ours_p50 / floor_p50:.2f}x   (target <= 1.25x)")
    print(f"ours via gateway p99: {results['ours via local gateway'][1]:.1f} ms   (target <= 100 ms)")
    print(f"cold import + init, median of {args.cold_runs}: ours {ours_cold:.0f} ms, Bolt adapter {bolt_cold:.0f} ms")


if __name__ == "__main__":
    main()
