"""What the budget check adds to a conversation worker request (issue 16).

In-process, against moto's server on loopback (the template's tables; every call a real HTTP
request), ``insightmesh.budgets.check.check`` for a user in two groups (five scopes: the user, the
agent, two groups, the workspace), printing p50 / p95 / p99 in milliseconds:

* ``miss, no budget``        — the cache empty, no budget anywhere: one BatchGetItem of 20 keys;
* ``miss, 5 budgets``        — the cache empty, a budget on every scope with spend under warn_at;
* ``hit``                    — everything cached (within BUDGET_CACHE_SECONDS): no call;
* ``miss, 5 budgets, warned`` — every budget past warn_at: the fallback chosen (the alert is sent
                                 once, in the background, and not timed).

With ``--request-path``: the request path of benchmarks/request_path.py (Slack event to the LLM
call, through ``insightmesh dev``, warm, DMs by 10 people taking turns), without any budget and
then with a budget on the workspace, every person and the assistant; once with
``BUDGET_CACHE_SECONDS=0`` (every request reads) and once with the default 5 s.

    python benchmarks/budgets.py [--checks N] [--request-path] [--samples N] [--cache-seconds 0,5]
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.usage_recording import DynamoCalls, free_port, percentiles, timed  # noqa: E402

TEAM = "TBENCH0001"
USER = "u-bench"
GROUPS = ("sales", "emea")
AGENT = "assistant"


def in_process(checks: int) -> list[str]:
    from botocore import handlers
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "BUDGET_ALERT_CHANNEL": "C0BENCH", "SLACK_BOT_TOKEN": "xoxb-bench",
                       "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/"})  # nobody there: the alert fails soft
    calls = DynamoCalls()
    handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", calls))
    out, sys.stdout = sys.stdout, io.StringIO()  # the warnings' JSON log lines are not the output
    try:
        from insightmesh.budgets import alerts
        from insightmesh.budgets import check as budgets
        from insightmesh.budgets.models import BUDGET_SUBJECT, BudgetItem, budget_key
        from insightmesh.llm.usage import UsageRecord, period_key, subject_of
        from tests.integration.conftest import create_tables, template

        for variable, name in create_tables(template()).items():
            os.environ[variable] = name
        scopes: list[tuple[Any, str]] = [("user", USER), ("agent", AGENT), *(("group", g) for g in GROUPS),
                                         ("workspace", TEAM)]

        def check() -> None:
            budgets.check(workspace=TEAM, user_id=USER, agent=AGENT, groups=GROUPS)

        def miss() -> None:
            budgets.reset_cache()
            check()

        def set_budgets(spent_micros: int) -> None:
            for scope, value in scopes:
                BudgetItem(BUDGET_SUBJECT, budget_key(scope, value), scope=scope, value=value,
                           limit_micros=10_000_000, period_kind="month", warn_at=0.8,
                           fallback_model="cheap-model", version=1).save()
                UsageRecord(subject_of(scope, value), period_key("month")).update(
                    actions=[UsageRecord.cost_micros.set(spent_micros)])

        for _ in range(20):
            miss()  # warm: connections
        rows: list[tuple[str, list[float], dict[str, int]]] = []

        def row(label: str, action: Callable[[], None]) -> None:
            calls.calls.clear()
            action()
            per_check = dict(calls.calls)
            rows.append((label, timed(action, checks), per_check))

        row("miss, no budget", miss)
        set_budgets(1_000_000)
        row("miss, 5 budgets", miss)
        check()
        row("hit", check)
        set_budgets(9_000_000)
        row("miss, 5 budgets, warned", miss)
        alerts.wait_for_alerts(timeout=60)  # Slack is not there: the alert fails soft, after its retries
    finally:
        server.stop()
        sys.stdout = out
    lines = [f"budget check, {checks} checks per row, moto server on loopback, 5 scopes (user, agent, 2 groups, "
             "workspace)"]
    lines += [f"  {label:<26} {percentiles(samples)}   DynamoDB calls per check: {per_check or '{}'}"
              for label, samples, per_check in rows]
    return lines


def request_path(samples: int, cache_seconds: str) -> list[str]:
    import httpx

    from benchmarks.request_path import PEOPLE, SECRET, TimedStandin, new_ts
    from benchmarks.request_path import percentiles as p50_p99
    from insightmesh_local import slack_signing as slack
    from insightmesh_local.slack_sandbox import SlackSandbox
    from tests.e2e.dev_server import DevServer

    llm = TimedStandin().start_in_thread()
    counter = itertools.count(1)
    lines = []
    with SlackSandbox(port=0) as sandbox:
        sandbox.add_users(*({"id": person, "email": f"person{n}@corp.example"} for n, person in enumerate(PEOPLE)))
        for person in PEOPLE:
            sandbox.set_channel(f"D{person[1:]}", [], kind="im", user=person)
        dev = DevServer(env={
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": sandbox.url,
            "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-bench-000000000",
            "LLM_MODEL": "bench", "SLACK_USER_RATE_LIMIT_PER_MINUTE": "0", "BUDGET_CACHE_SECONDS": cache_seconds})
        try:
            dev.wait_ready()
            with httpx.Client(base_url=f"http://127.0.0.1:{dev.port}", timeout=30) as http:

                def sample(person: str) -> float:
                    marker = f"q{next(counter)}x"
                    ts, channel = new_ts(), f"D{person[1:]}"
                    event = slack.message_event(person, channel, f"what does {marker} mean?", ts, channel_type="im")
                    body = slack.json_body(slack.event_callback(slack.DEFAULT_TEAM_ID, slack.DEFAULT_APP_ID, event))
                    started = time.monotonic()
                    http.post("/slack/events", content=body,
                              headers=slack.signed_headers(SECRET, body, "application/json")).raise_for_status()
                    elapsed = (llm.wait_for(marker) - started) * 1000
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not [
                            m for m in sandbox.messages(channel=channel, thread_ts=ts)
                            if m.get("is_bot") and marker in m["text"]]:
                        time.sleep(0.01)
                    return elapsed

                def row(name: str) -> None:
                    times = [sample(PEOPLE[i % 10]) for i in range(samples)]
                    p50, p99 = p50_p99(times)
                    lines.append(f"  {name:<34} n={len(times):<4} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")

                for person in PEOPLE:
                    sample(person)  # warm-up: every person known, every function warm
                row("DM, no budget")
                dynamodb = dev.aws("dynamodb")
                identities = [dynamodb.get_item(TableName="insightmesh-dev-IdentitiesTable", Key={
                    "identity_key": {"S": f"slack#{slack.DEFAULT_TEAM_ID}:{person}"}})["Item"]["user_id"]["S"]
                    for person in PEOPLE]
                for scope, value in [("workspace", slack.DEFAULT_TEAM_ID), ("agent", AGENT),
                                     *(("user", user_id) for user_id in identities)]:
                    dynamodb.put_item(TableName="insightmesh-dev-UsageTable", Item={
                        "subject": {"S": "budget"}, "period": {"S": f"{scope}#{value}"}, "scope": {"S": scope},
                        "value": {"S": value}, "limit_micros": {"N": "1000000000"}, "period_kind": {"S": "month"},
                        "warn_at": {"N": "0.8"}, "version": {"N": "1"}})
                row("DM, 12 budgets (under warn_at)")
        finally:
            dev.stop()
            llm.stop()
    return [f"request path (Slack event to the LLM call, insightmesh dev, BUDGET_CACHE_SECONDS={cache_seconds})",
            *lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--request-path", action="store_true")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--cache-seconds", default="0,5", help="BUDGET_CACHE_SECONDS of each request-path run")
    args = parser.parse_args()
    for line in in_process(args.checks):
        print(line, flush=True)
    for cache_seconds in args.cache_seconds.split(",") if args.request_path else ():
        for line in request_path(args.samples, cache_seconds.strip()):
            print(line, flush=True)


if __name__ == "__main__":
    main()
