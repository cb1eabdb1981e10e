"""Usage off the request path (moto DynamoDB and SQS in-process): with ``USAGE_QUEUE_URL`` set,
``record_usage`` sends one message per completion and writes nothing; the usage aggregator's
handler, given a batch of them, produces exactly the counters, index items and per-request records
the direct writes produce, in far fewer writes; a failed write fails the whole batch."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from insightmesh.llm.base import Usage
from insightmesh.llm.pricing import PRICES_SUBJECT, ModelPrice, cost_micros, forget_prices, pricing_settings
from insightmesh.llm.usage import USAGE_QUEUE_VARIABLE, forget_indexed, record_usage
from tests.integration.conftest import DYNAMO_CALLS

ROOT = Path(__file__).parents[2]
NOV_30 = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
# (user, tokens, when, groups, channel, agent): two days, two months, one ISO week, shared values.
COMPLETIONS: list[tuple[str, Usage, datetime, tuple[str, ...], str, str]] = [
    ("u-1", Usage(1000, 100), NOV_30, ("sales", "emea"), "C1", "help"),
    ("u-1", Usage(2000, 300), DEC_1, ("sales",), "C2", "help"),
    ("u-2", Usage(10, 10), DEC_1, (), "C1", "meddic"),
    ("u-2", Usage(7, 3), DEC_1, ("emea",), "C1", "help"),
    ("u-3", Usage(500, 50), NOV_30, ("sales",), "C1", "help"),
    ("u-1", Usage(1, 1), DEC_1, ("sales", "emea"), "C1", "help"),
    *[("u-1", Usage(3, 2), DEC_1, ("sales",), "C1", "help")] * 14,  # a busy DM: the same counters again
]


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "usage_aggregator", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:usage_aggregator"


@pytest.fixture
def queue(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The template's tables and a usage queue in moto; nothing indexed or priced in the caches."""
    forget_indexed()
    forget_prices()
    pricing_settings.cache_clear()
    ModelPrice(PRICES_SUBJECT, "gpt-4o-mini", input_usd_per_million=0.15, output_usd_per_million=0.6).save()
    assert cost_micros("gpt-4o-mini", Usage(1000, 100)) == 210  # and the prices are cached from here on
    yield boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="usage-test")["QueueUrl"]
    forget_indexed()
    forget_prices()
    pricing_settings.cache_clear()


def record_all(*, request_prefix: str) -> None:
    for number, (user, usage, when, groups, channel, agent) in enumerate(COMPLETIONS):
        record_usage(agent=agent, user_id=user, usage=usage, model="gpt-4o-mini", channel=channel, groups=groups,
                     workspace="T1", request_id=f"{request_prefix}-{number}", when=when)


def received(url: str) -> list[dict[str, Any]]:
    """Every message on the queue as Lambda's SQS event records."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    records = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                          AttributeNames=["All"]).get("Messages", []):
        for message in messages:
            records.append({
                "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"], "attributes": message.get("Attributes", {}),
                "messageAttributes": {name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                                      for name, value in message.get("MessageAttributes", {}).items()},
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:usage-test",
                "awsRegion": "us-east-1"})
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return records


def handler() -> Any:
    spec = importlib.util.spec_from_file_location("usage_aggregator_handler",
                                                  ROOT / "functions" / "usage_aggregator" / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_items(table: str) -> tuple[dict[tuple[str, str], dict[str, Any]], list[dict[str, Any]]]:
    """The counters and index items by key, and the per-request records without their random key part."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
             for item in page["Items"]]
    usage = {(i["subject"]["S"], i["period"]["S"]): {k: sorted(v["SS"]) if "SS" in v else v for k, v in i.items()}
             for i in items if not i["subject"]["S"].startswith(("request#", "prices"))}
    calls = sorted(json.dumps({k: v for k, v in i.items() if k != "period"},
                               sort_keys=True) for i in items if i["subject"]["S"].startswith("request#"))
    return usage, [json.loads(call) for call in calls]


def clear(table: str) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if item["subject"]["S"] != "prices":
                dynamodb.delete_item(TableName=table, Key={"subject": item["subject"], "period": item["period"]})
    forget_indexed()


def test_with_the_queue_a_completion_is_one_message_and_no_write(queue: str, tables: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USAGE_QUEUE_VARIABLE, queue)
    operations = DYNAMO_CALLS.operations_during(lambda: record_usage(
        agent="help", user_id="u-1", usage=Usage(5, 5), model="gpt-4o-mini", channel="C1", groups=("sales",),
        workspace="T1", request_id="req-q", when=DEC_1))

    assert operations == []  # nothing written, nothing read (the price is cached)
    [record] = received(queue)
    assert record["messageAttributes"]["correlation_id"]["stringValue"] == "req-q"
    body = json.loads(record["body"])
    assert body["pairs"] == [["workspace", "T1"], ["agent", "help"], ["user", "u-1"], ["group", "sales"],
                             ["channel", "C1"], ["model", "gpt-4o-mini"]]
    assert (body["prompt_tokens"], body["completion_tokens"], body["cost_micros"]) == (5, 5, 4)
    assert body["call"]["subject"] == "request#req-q"


def test_the_aggregator_writes_what_the_direct_path_writes_in_far_fewer_writes(
        queue: str, tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    table = tables["USAGE_TABLE"]
    direct_operations = DYNAMO_CALLS.operations_during(lambda: record_all(request_prefix="req"))
    direct = table_items(table)
    clear(table)

    monkeypatch.setenv(USAGE_QUEUE_VARIABLE, queue)
    record_all(request_prefix="req")
    records = received(queue)
    assert len(records) == len(COMPLETIONS)
    result: dict[str, Any] = {}
    aggregated_operations = DYNAMO_CALLS.operations_during(
        lambda: result.update(handler().lambda_handler({"Records": records}, Context())))

    assert result == {"batchItemFailures": []}
    assert table_items(table) == direct
    updates, direct_updates = aggregated_operations.count("UpdateItem"), direct_operations.count("UpdateItem")
    # One ADD per counter and per index item the batch touches (77 here), against 407 one by one.
    assert updates == len(direct[0]) and updates * 5 < direct_updates
    assert aggregated_operations.count("BatchWriteItem") == 1 and "PutItem" not in aggregated_operations
    assert direct_operations.count("PutItem") == len(COMPLETIONS)


def test_a_failed_write_fails_the_whole_batch_and_a_bad_message_alone(queue: str, tables: dict[str, str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USAGE_QUEUE_VARIABLE, queue)
    record_all(request_prefix="req")
    records = received(queue)
    bad = {**records[0], "messageId": "not-usage", "body": '{"kind": "message"}'}

    assert handler().lambda_handler({"Records": [bad]}, Context()) == {
        "batchItemFailures": [{"itemIdentifier": "not-usage"}]}

    boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=tables["USAGE_TABLE"])
    result = handler().lambda_handler({"Records": [bad, *records]}, Context())
    assert [failure["itemIdentifier"] for failure in result["batchItemFailures"]] == [
        "not-usage", *(record["messageId"] for record in records)]


def test_a_failed_send_falls_back_to_the_direct_writes(queue: str, tables: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USAGE_QUEUE_VARIABLE, queue + "-gone")  # a queue SQS does not have
    record_usage(agent="help", user_id="u-9", usage=Usage(3, 4), model="gpt-4o-mini", when=DEC_1)

    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=tables["USAGE_TABLE"], Key={"subject": {"S": "user#u-9"}, "period": {"S": "2026-12"}},
        ConsistentRead=True)["Item"]
    assert (item["calls"]["N"], item["prompt_tokens"]["N"], item["completion_tokens"]["N"]) == ("1", "3", "4")
