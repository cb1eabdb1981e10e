"""Per-channel settings: what they cost the ingress's ack path and the worker (figures, never pass/fail).

Against moto in-process (``mock_aws``, every table of infra/template.yaml and the FIFO queue), the
real slack_ingress handler acknowledges signed events; every AWS call it makes is counted through
botocore's ``before-call`` event, and the ack is timed in-process. Then the worker's settings read
(:func:`insightmesh.conversation.channel_settings.admits`) is counted for many messages over a few
channels, with the settings cached (the default TTL) and uncached (``CHANNEL_SETTINGS_CACHE_SECONDS=0``).

    .venv/bin/python benchmarks/channel_settings.py [--events 200]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
SECRET = "bench-signing-secret"


class AwsCalls:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()

    from botocore import handlers

    counter = AwsCalls()
    handlers.BUILTIN_HANDLERS.append(("before-call", counter))
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "SLACK_SIGNING_SECRET": SECRET})
    from moto import mock_aws

    with mock_aws():
        import boto3

        from insightmesh.conversation import channel_settings
        from insightmesh.conversation.requests import ConversationRequest, RequestKind
        from insightmesh_local import slack_signing as slack
        from tests.integration.conftest import create_tables, template

        for variable, name in create_tables(template()).items():
            os.environ[variable] = name
        queue = boto3.client("sqs").create_queue(QueueName="bench.fifo", Attributes={"FifoQueue": "true"})
        os.environ["CONVERSATION_QUEUE_URL"] = queue["QueueUrl"]
        channel_settings.ChannelSettingsRecord(channel_settings.SETTINGS_PK, "C0ASKED", mode="questions").save()
        spec = importlib.util.spec_from_file_location("bench_ingress", ROOT / "functions/slack_ingress/handler.py")
        assert spec is not None and spec.loader is not None
        ingress = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ingress)
        samples = {name: json.loads((ROOT / "events/slack_ingress" / name).read_text())
                   for name in ("app_mention.json", "slash_command.json")}

        def signed(sample: str, body: str) -> dict[str, Any]:
            event = json.loads(json.dumps(samples[sample]))
            headers = slack.sign(SECRET, body.encode())
            event["body"] = base64.b64encode(body.encode()).decode() if event.get("isBase64Encoded") else body
            event["headers"].update({"x-slack-request-timestamp": headers["X-Slack-Request-Timestamp"],
                                     "x-slack-signature": headers["X-Slack-Signature"]})
            return event

        def message(i: int, channel: str, text: str, mention: bool = False) -> dict[str, Any]:
            ts = f"1796000000.{i:06d}"
            event = slack.app_mention_event("U0BENCH", channel, f"<@{slack.DEFAULT_BOT_USER_ID}> {text}", ts) \
                if mention else slack.message_event("U0BENCH", channel, text, ts, channel_type="channel")
            return signed("app_mention.json", json.dumps(slack.event_callback(slack.DEFAULT_TEAM_ID,
                                                                              slack.DEFAULT_APP_ID, event)))

        def command(i: int) -> dict[str, Any]:
            body = slack.slash_command_body(user_id="U0BENCH", channel_id="C0ASKED", text="settings",
                                            response_url="https://hooks.slack.com/commands/T1/1/x",
                                            trigger_id=f"trig-{i}").decode()
            return signed("slash_command.json", body)

        scenarios = {
            "@mention (default channel)": lambda i: message(i, "C0PLAIN", f"question {i}", mention=True),
            "question, no mention (default channel)": lambda i: message(i, "C0PLAIN", f"is {i} up?"),
            "question, no mention ('questions' channel)": lambda i: message(i, "C0ASKED", f"is {i} up?"),
            "chatter, no '?'": lambda i: message(i, "C0PLAIN", f"lunch at {i}"),
            "/insightmesh settings": command,
        }
        print(f"slack_ingress ack path, {args.events} signed events per row, moto in-process")
        print(f"{'event':46} {'AWS calls/event':>16}  {'which':34} {'p50 ms':>7} {'p95 ms':>7}")
        offset = 0
        for name, build in scenarios.items():
            events = [build(offset + i) for i in range(args.events)]
            offset += args.events
            channel_settings.forget()
            counter.calls.clear()
            times = []
            for event in events:
                start = time.perf_counter()
                response = ingress.lambda_handler(event, None)
                times.append((time.perf_counter() - start) * 1000)
                assert response["statusCode"] == 200, response
            total = sum(counter.calls.values())
            which = ", ".join(f"{call} x{count / args.events:g}" for call, count in sorted(counter.calls.items()))
            p95 = statistics.quantiles(times, n=20)[-1]
            print(f"{name:46} {total / args.events:16.2f}  {which or '-':34} {statistics.median(times):7.2f} "
                  f"{p95:7.2f}")

        print(f"\nworker settings reads for {args.events * 5} messages over 10 channels")
        requests = [ConversationRequest(kind=RequestKind.MESSAGE, request_id=f"m{i}", team_id="T1",
                                        channel_id=f"C0CH{i % 10}", channel_type="channel", user_id="U1",
                                        text="why?", ts="1.0", thread_ts="1.0") for i in range(args.events * 5)]
        for label, ttl in (("cached (CHANNEL_SETTINGS_CACHE_SECONDS=30)", "30"), ("uncached (=0)", "0")):
            os.environ["CHANNEL_SETTINGS_CACHE_SECONDS"] = ttl
            channel_settings.forget()
            counter.calls.clear()
            start = time.perf_counter()
            for request in requests:
                channel_settings.admits(request)
            elapsed = (time.perf_counter() - start) * 1000 / len(requests)
            print(f"{label:46} GetItem {counter.calls['dynamodb:GetItem']:5d}  {elapsed:.3f} ms/message")


if __name__ == "__main__":
    main()
