"""slack_user_sync end to end: time and DynamoDB calls to sync 10k and 50k Slack users.

The real path, in one process: the jobs service creates the job (schedule in moto's EventBridge
Scheduler) and queues a manual run (SQS), job_runner takes the lease, and ``slack_user_sync``
pulls ``users.list`` over HTTP from the Slack Web API stand-in (pages of 200, one 429 with
``Retry-After: 1`` on the way) into the directory tables through ``insightmesh.directory.sync``.
DynamoDB is moto in-process (``mock_aws``), so seconds measure moto's CPU, not DynamoDB; the
number of DynamoDB calls is what carries over to AWS.

    python benchmarks/user_sync.py [--users 10000 50000] [--page-size 200]

For each size it prints the seconds, users/s, DynamoDB calls by operation, the calls per 25 users
(batched writes of 25 items make this a constant: the calls grow as users/25, not as users) and
the growth of the calls between the sizes against the growth of the users. Two runs per size:
the first sync (every user new) and the next scheduled run (nothing changed: only the
identities' ``last_seen`` marks are written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))


class Calls:
    """DynamoDB calls by operation (botocore ``before-call``), items written by BatchWriteItem."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self.items_written = 0

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.operations[model.name] += 1
        if model.name == "BatchWriteItem":
            body = params.get("body") or b"{}"
            requests = json.loads(body).get("RequestItems", {}) if isinstance(body, bytes | str) else {}
            self.items_written += sum(len(items) for items in requests.values())

    def reset(self) -> None:
        self.operations.clear()
        self.items_written = 0


class Context:
    def __init__(self) -> None:
        self.deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def slack_users(count: int) -> list[dict[str, Any]]:
    return [{"id": f"U{n:08d}", "team_id": "TBENCH", "name": f"user{n}", "deleted": False, "is_bot": False,
             "real_name": f"User {n}", "profile": {"email": f"user{n}@example.com", "display_name": f"user{n}",
                                                     "real_name": f"User {n}"}} for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--page-size", type=int, default=200)
    args = parser.parse_args()

    from botocore import handlers as botocore_handlers

    calls = Calls()
    botocore_handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", calls))
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_LOG_LEVEL": "ERROR", "LOG_LEVEL": "ERROR",
                       "SECRET_KEY": "bench-secret-key-0123456789-0123456789", "SLACK_BOT_TOKEN": "xoxb-bench"})
    os.environ.pop("AWS_ENDPOINT_URL", None)

    import boto3
    from moto import mock_aws

    from insightmesh_local.slack_sandbox import SlackSandbox
    from insightmesh_local.template import load_template
    from tests.integration.conftest import create_tables  # the models read these names when used

    results: list[tuple[int, int]] = []
    print(f"slack_user_sync, users.list pages of {args.page_size} from the Slack stand-in, moto in-process")
    print(f"{'users':>8} {'run':<12}{'seconds':>9}{'users/s':>9}{'calls':>8}{'calls/25u':>11}{'items':>9}"
          "  calls by operation")
    for count in args.users:
        with SlackSandbox(port=0) as sandbox, mock_aws():
            os.environ["SLACK_API_URL"] = sandbox.url
            tables = create_tables(load_template(ROOT / "infra" / "template.yaml"), prefix=f"bench{count}-")
            os.environ.update(tables)
            scheduler = boto3.client("scheduler")
            scheduler.create_schedule_group(Name="bench-jobs")
            queue_url = boto3.client("sqs").create_queue(QueueName=f"bench-jobs-{count}", Attributes={
                "VisibilityTimeout": "5400"})["QueueUrl"]  # as the template's JobQueue
            os.environ.update({"JOB_SCHEDULE_GROUP": "bench-jobs", "JOB_QUEUE_URL": queue_url,
                               "JOB_RUNNER_ARN": "arn:aws:lambda:us-east-1:123456789012:function:runner",
                               "JOB_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler"})
            sandbox.add_users(slack_users(count))
            from insightmesh import aws
            from insightmesh.auth.principal import Principal
            from insightmesh.jobs import runner, service
            from insightmesh.jobs.schemas import JobCreate
            from insightmesh.slack import client as slack_client

            aws._clients.clear()
            slack_client.reset_for_tests()  # the previous size's sandbox is gone
            admin = Principal(user_id="bench-admin", email="admin@example.com", is_admin=True, via="token")
            job = service.create_job(JobCreate.model_validate({
                "name": "bench", "job_type": "slack_user_sync", "schedule": {"expression": "rate(1 day)"},
                "parameters": {"page_size": args.page_size}}), actor=admin, request_id="bench")
            for label in ("first sync", "next run"):
                if label == "first sync":
                    sandbox.fail("users.list", "ratelimit", count=1, retry_after=1)
                queued = service.run_now(job.job_id, actor=admin, request_id="bench")
                message = boto3.client("sqs").receive_message(QueueUrl=queue_url)["Messages"][0]
                calls.reset()
                started = time.perf_counter()
                runner.handle({"Records": [{"messageId": message["MessageId"], "body": message["Body"]}]},
                              Context())
                elapsed = time.perf_counter() - started
                boto3.client("sqs").delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                run = service.get_run(queued.run_id)
                if run.status != "succeeded":
                    raise SystemExit(f"run {run.status}: {run.error}")
                total = sum(calls.operations.values())
                if label == "first sync":
                    results.append((count, total))
                print(f"{count:>8,} {label:<12}{elapsed:>9.1f}{count / elapsed:>9,.0f}{total:>8,}"
                      f"{total / (count / 25):>11.2f}{calls.items_written:>9,}  "
                      f"{dict(sorted(calls.operations.items()))}")
    if len(results) >= 2:
        (small, small_calls), (large, large_calls) = results[0], results[-1]
        print(f"growth {small:,} -> {large:,} users: x{large / small:.2f} users, x{large_calls / small_calls:.2f} "
              f"DynamoDB calls (linear in users/25: the same calls per 25 users at every size)")


if __name__ == "__main__":
    main()
