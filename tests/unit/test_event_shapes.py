"""The events the local runtime builds have the shape of the real samples in events/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from insightmesh_local.gateway import Route, _compile, build_v1_event, build_v2_event
from insightmesh_local.scheduler import scheduled_event
from insightmesh_local.sqs_poller import _record

EVENTS = Path(__file__).parents[2] / "events"


def shape(value: Any) -> Any:
    """Keys and value types, recursively; the values themselves do not matter."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def request(method: str, path: str, **kwargs: Any) -> Request:
    return Request(EnvironBuilder(method=method, path=path, base_url="http://127.0.0.1:3000", **kwargs).get_environ())


def http_route(method: str, path: str, version: str = "2.0") -> Route:
    return Route("HealthFunction", method, path, "http", version, _compile(path))


@pytest.mark.parametrize("sample", ["live", "ready", "openapi"])
def test_http_api_v2_event_matches_the_samples(sample):
    expected = json.loads((EVENTS / "health" / f"{sample}.json").read_text())
    path = expected["rawPath"]
    headers = {k: v for k, v in expected["headers"].items() if k not in ("host", "content-length")}
    built = build_v2_event(request("GET", path, headers=headers), http_route("GET", path), {}, "req-1")
    # Host and Content-Length come from the HTTP layer itself.
    built["headers"].setdefault("content-length", "0")
    assert shape(built) == shape(expected)


def test_http_api_v2_default_route_with_query_string():
    expected = json.loads((EVENTS / "health" / "not_found.json").read_text())
    route = Route("HealthFunction", "ANY", "$default", "http", "2.0", None)
    built = build_v2_event(request("GET", "/no/such/path", query_string="a=1&a=2&b=x",
                                   headers={k: v for k, v in expected["headers"].items() if k != "host"}),
                           route, {}, "req-2")
    assert built["routeKey"] == "$default" == built["requestContext"]["routeKey"]
    assert built["queryStringParameters"] == expected["queryStringParameters"] == {"a": "1,2", "b": "x"}
    built["headers"].setdefault("content-length", "0")
    assert shape(built) == shape(expected)


def test_rest_api_event_matches_the_sample():
    expected = json.loads((EVENTS / "aws" / "rest_api_proxy.json").read_text())
    route = Route("Fn", "GET", "/items/{id}", "rest", "1.0", _compile("/items/{id}"))
    built = build_v1_event(request("GET", "/items/42", query_string="tag=a&tag=b",
                                   headers={"Accept": "application/json", "User-Agent": "curl/8.5.0"}),
                           route, {"id": "42"}, "req-3")
    assert built["multiValueQueryStringParameters"] == expected["multiValueQueryStringParameters"]
    assert built["queryStringParameters"] == expected["queryStringParameters"]
    assert set(built) == set(expected)
    assert set(expected["requestContext"]) <= set(built["requestContext"])
    assert built["body"] is None and built["isBase64Encoded"] is False


def test_sqs_record_matches_the_sample():
    expected = json.loads((EVENTS / "aws" / "sqs_fifo_batch.json").read_text())["Records"][0]
    message = {  # as boto3's receive_message returns it with AttributeNames/MessageAttributeNames=All
        "MessageId": "m-1", "ReceiptHandle": "rh", "MD5OfBody": "x", "Body": '{"text": "hello"}',
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "s",
                       "ApproximateFirstReceiveTimestamp": "1", "SequenceNumber": "1", "MessageGroupId": "g",
                       "MessageDeduplicationId": "d"},
        "MessageAttributes": {"correlation_id": {"StringValue": "req-123", "DataType": "String"}},
    }
    built = _record(message, expected["eventSourceARN"], "us-east-1")
    assert set(built) == set(expected)
    assert set(built["attributes"]) == set(expected["attributes"])
    attribute = built["messageAttributes"]["correlation_id"]
    assert attribute["stringValue"] == "req-123" and attribute["dataType"] == "String"
    assert set(expected["messageAttributes"]["correlation_id"]) <= set(attribute)


def test_scheduled_event_matches_the_sample():
    expected = json.loads((EVENTS / "aws" / "scheduled_event.json").read_text())
    built = scheduled_event(expected["resources"][0], "us-east-1", datetime(2026, 11, 27, 10, tzinfo=UTC))
    assert shape(built) == shape(expected)
    assert built["time"] == expected["time"]
    assert {k: built[k] for k in ("detail-type", "source", "resources", "detail")} == \
        {k: expected[k] for k in ("detail-type", "source", "resources", "detail")}
