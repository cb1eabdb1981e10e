"""The local runtime builds the template's operations resources too: every function's log group with
its retention (the LogRetentionDays parameter) and the dashboard, whose body resolves to JSON with
the local names. Functions are told their log group as Lambda tells them (AWS_LAMBDA_LOG_GROUP_NAME)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from insightmesh_local.stack import Stack
from insightmesh_local.template import load_template

TEMPLATE = Path(__file__).parents[2] / "infra" / "template.yaml"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with mock_aws():
        built = Stack(template=load_template(TEMPLATE), stack_name="ops", region=REGION, endpoint_url=None,
                      parameters={"LogRetentionDays": "7"}, log=lambda _line: None)
        built.deploy()
        yield built


def test_every_function_has_its_log_group_kept_the_parameters_days(stack):
    groups = boto3.client("logs", region_name=REGION).describe_log_groups(logGroupNamePrefix="/aws/lambda/ops/")
    retention = {g["logGroupName"]: g.get("retentionInDays") for g in groups["logGroups"]}
    specs = stack.function_specs({})
    assert len(specs) == len(stack.template.of_type("AWS::Serverless::Function"))
    for spec in specs:
        assert spec.environment["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/ops/{spec.logical_id}"
        assert retention[f"/aws/lambda/ops/{spec.logical_id}"] == 7


def test_the_dashboard_is_put_with_the_local_names(stack):
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    body = json.loads(cloudwatch.get_dashboard(DashboardName="ops-operations")["DashboardBody"])
    queue = stack.physical["ConversationQueue"].attrs["QueueName"]
    worker = stack.physical["ConversationWorkerFunction"].ref
    rows = [row for widget in body["widgets"] for row in widget["properties"].get("metrics", [])]
    assert ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue] in [row[:4] for row in rows]
    assert ["AWS/Lambda", "Invocations", "FunctionName", worker] in [row[:4] for row in rows]
