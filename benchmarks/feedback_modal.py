"""The 👎 click's ack with the reason modal opened on the way, beside a 👍 click's (which opens none).

A 👎 makes one Slack call (``views.open``, against the Slack sandbox on loopback) before its one
SQS send; a 👍 only the SQS send. Both through functions/slack_ingress/handler.py in process,
against the local runtime's emulator (the template's resources), N signed clicks each, interleaved,
printing p50 / p95 in milliseconds and the Slack calls a 👎 made. Slack wants the ack within 3 s
and the trigger_id is dead 3 s after the click; the modal's client gives up after 2 s.

    python benchmarks/feedback_modal.py [--clicks N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
SECRET = "benchmark-signing-secret"


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "local"))
    from insightmesh_local import slack_signing as slack
    from insightmesh_local.runtime import LocalRuntime
    from insightmesh_local.slack_sandbox import SlackSandbox

    ingress_bench = _load(ROOT / "benchmarks" / "slack_ingress.py", "slack_ingress_bench")
    sandbox = SlackSandbox(port=0).start()
    runtime = LocalRuntime(template_path=ROOT / "infra" / "template.yaml", port=free_port(),
                           emulator_port=free_port(), parameters={"SlackSigningSecret": SECRET},
                           environ={}, log=lambda _m: None)
    runtime.deploy()
    try:
        assert runtime.functions is not None
        spec = runtime.functions.find("SlackIngressFunction")
        env = {k: v for k, v in spec.environment.items() if k not in ("PATH", "HOME")}
        env.update(POWERTOOLS_LOG_LEVEL="WARNING", LOG_LEVEL="WARNING", SLACK_API_URL=sandbox.url,
                   SLACK_BOT_TOKEN="xoxb-bench")
        os.environ.update(env)
        sys.path.insert(0, str(spec.code_dir))
        handler = _load(spec.code_dir / "handler.py", "ingress_handler")
        ctx = ingress_bench.Context()

        def click(i: int, action_id: str) -> float:
            body = slack.block_actions_body(
                user_id="UBENCH", channel_id="CBENCH", message_ts=f"{1790000000 + i}.000200",
                thread_ts=f"{1790000000 + i}.000100", action_id=action_id, value=f"msg:T:C:{i}",
                trigger_id=slack.new_trigger_id(), response_url="https://hooks.slack.com/actions/T/1/x").decode()
            event = ingress_bench.api_event(body)
            event["headers"] = slack.signed_headers(SECRET, body.encode(), slack.FORM_CONTENT_TYPE)
            event["rawPath"] = event["requestContext"]["http"]["path"] = "/slack/interactions"
            event["routeKey"] = "POST /slack/interactions"
            started = time.perf_counter()
            response = handler.lambda_handler(event, ctx)
            elapsed = (time.perf_counter() - started) * 1000
            assert response["statusCode"] == 200, response
            return elapsed

        for i in range(10):  # warm: clients, secret cache, the modal's client
            click(10_000 + i, "feedback_up")
            click(20_000 + i, "feedback_down")
        opened_before = len(sandbox.calls("views.open"))
        up, down = [], []
        for i in range(args.clicks):
            up.append(click(i, "feedback_up"))
            down.append(click(i, "feedback_down"))
        opened = len(sandbox.calls("views.open")) - opened_before
        print(f"slack_ingress ack of a feedback click, {args.clicks} signed clicks each, in process, "
              "emulator + Slack sandbox on loopback (ms)")
        for name, samples in (("👍 (SQS send)", up), ("👎 (views.open + SQS send)", down)):
            p50, p95 = p50_p95(samples)
            print(f"  {name:<30} p50 {p50:7.1f}   p95 {p95:7.1f}")
        print(f"  views.open calls per 👎: {opened / args.clicks:.2f} (modals opened: {opened})")
    finally:
        runtime.stop()
        sandbox.stop()


if __name__ == "__main__":
    main()
