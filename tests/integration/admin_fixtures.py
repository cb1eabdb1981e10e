"""Every DynamoDB table of infra/template.yaml in moto, the models bound to them, and the admin API.

The tables are created from the template itself (``insightmesh_local.template.load_template``),
so the tests run against exactly the keys and indexes that are deployed. pynamodb models read
their table name from the environment when their class is created; rather than reloading modules
(which leaves other modules holding the old classes), :func:`bind_models` points the ``Meta`` of
every model class — stale ones included — at the test tables, and restores them afterwards.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore import handlers as botocore_handlers
from moto import mock_aws
from pynamodb.models import Model

from insightmesh_local.template import Template, load_template

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
HANDLER = ROOT / "functions" / "admin_api" / "handler.py"
TABLE_PREFIX = "test-"
_handler_ids = itertools.count()


def table_variables(template: Template) -> dict[str, str]:
    """Globals environment variable → logical id, for every ``*_TABLE`` that references a table."""
    tables = template.of_type("AWS::DynamoDB::Table")
    variables = template.function_globals["Environment"]["Variables"]
    return {name: value["Ref"] for name, value in variables.items()
            if isinstance(value, dict) and value.get("Ref") in tables}


def create_tables(template: Template, *, prefix: str = TABLE_PREFIX) -> dict[str, str]:
    """Create every table of ``template`` (keys, GSIs, TTL) with boto3; return variable → table name."""
    client = boto3.client("dynamodb")
    names: dict[str, str] = {}
    for logical_id, resource in template.of_type("AWS::DynamoDB::Table").items():
        properties = resource["Properties"]
        name = f"{prefix}{logical_id}"
        arguments: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if properties.get("GlobalSecondaryIndexes"):
            arguments["GlobalSecondaryIndexes"] = [
                {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"], "Projection": index["Projection"]}
                for index in properties["GlobalSecondaryIndexes"]
            ]
        client.create_table(**arguments)
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        names[logical_id] = name
    return {variable: names[logical_id] for variable, logical_id in table_variables(template).items()}


def _model_classes() -> list[type[Model]]:
    def walk(cls: type) -> list[type]:
        return [sub for child in cls.__subclasses__() for sub in (child, *walk(child))]

    return [model for model in walk(Model)
            if model.__module__.startswith("insightmesh.") and hasattr(model.Meta, "table_env")]


# (model class, table name) -> its pynamodb connection, reused by the next test on the same table:
# a connection's botocore client costs ~0.2 s to create. moto intercepts clients whenever a mock is
# active, whichever mock they were created under.
_connections: dict[tuple[type[Model], str], Any] = {}


@contextmanager
def bind_models(tables: dict[str, str]) -> Iterator[None]:
    """Point every insightmesh model class at ``tables`` (variable → name); restore on exit."""
    saved = []
    for model in _model_classes():
        table = tables.get(model.Meta.table_env)
        if table is None:
            continue
        saved.append((model, model.Meta.table_name, model.Meta.host, model._connection))
        model.Meta.table_name = table
        model.Meta.host = None
        model._connection = _connections.get((model, table))
    try:
        yield
    finally:
        for model, table_name, host, connection in saved:
            if model._connection is not None:
                _connections[(model, model.Meta.table_name)] = model._connection
            model.Meta.table_name = table_name
            model.Meta.host = host
            model._connection = connection


class DynamoCalls:
    """Records DynamoDB API calls (``"Operation:Table"``) through botocore's ``before-call``
    event, while :meth:`during` runs. Registered once, in every botocore session created after
    this module is imported (pynamodb creates one per connection)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.recording = False

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.recording:
            body = params.get("body") or b"{}"
            table = json.loads(body).get("TableName", "-") if isinstance(body, bytes | str) else "-"
            self.calls.append(f"{model.name}:{table}")

    def during(self, action: Any) -> list[str]:
        self.calls.clear()
        self.recording = True
        try:
            action()
        finally:
            self.recording = False
        return sorted(self.calls)


DYNAMO_CALLS = DynamoCalls()
botocore_handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", DYNAMO_CALLS))


@contextmanager
def template_tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto with every table of the template, the environment naming them, the models bound."""
    template = load_template(TEMPLATE)
    with mock_aws():
        tables = create_tables(template)
        for variable, name in tables.items():
            monkeypatch.setenv(variable, name)
        with bind_models(tables):
            yield tables


def load_handler(path: Path = HANDLER) -> ModuleType:
    """Import a function's handler.py as a fresh module (after the environment is set)."""
    spec = importlib.util.spec_from_file_location(f"admin_api_handler_{next(_handler_ids)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str = "req-test",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for the ``ANY /api/{proxy+}`` route."""
    from urllib.parse import urlencode

    encoded = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    all_headers = {
        "accept": "application/json",
        "content-length": str(len(encoded or "")),
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "pytest",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-request-id": request_id,
    }
    if encoded is not None:
        all_headers["content-type"] = "application/json"
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    prefix = "/auth/" if path.startswith("/auth/") else "/api/"
    route_key = f"ANY {prefix}{{proxy+}}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "pytest"},
            "requestId": f"gw-{request_id}",
            "routeKey": route_key,
            "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795860000000,
        },
        "pathParameters": {"proxy": path[len(prefix):]},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if encoded is not None:
        event["body"] = encoded
    return event
