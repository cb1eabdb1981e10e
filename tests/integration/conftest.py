"""The one way to set up an integration test: the fixtures every module of this tier uses.

- ``tables``: moto with every DynamoDB table of infra/template.yaml (keys, indexes and TTL as
  deployed, created by :func:`create_tables`) and the ``*_TABLE`` variables naming them. The
  pynamodb models read their table name from the environment when they are used
  (``insightmesh.aws.model_meta``), so nothing is reloaded: the models imported at the top of a
  module are the ones the code under test uses.
- ``dynamo_calls``: a recorder of the DynamoDB calls (``"Operation:Table"``) an action makes, seen
  through botocore's ``before-call`` event; the access-pattern tests count them.
- ``http_event``: a builder of API Gateway HTTP API (payload 2.0) events.
- ``make_user``: a directory user (and its group memberships) saved in the tables.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from botocore import handlers as botocore_handlers
from moto import mock_aws
from pynamodb.models import Model

from insightmesh import resilience
from insightmesh.auth import oidc_provider
from insightmesh.auth.settings import get_auth_settings
from insightmesh.directory.models import Membership, User
from insightmesh.knowledge import store as store_module
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.template import Template, load_template
from tests.slack_fixtures import pointed_sandbox

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
TABLE_PREFIX = "test-"
_handler_ids = itertools.count()


# -- tables ----------------------------------------------------------------------------------------


def table_variables(template: Template) -> dict[str, str]:
    """Globals environment variable → logical id, for every ``*_TABLE`` that references a table."""
    tables = template.of_type("AWS::DynamoDB::Table")
    variables = template.function_globals["Environment"]["Variables"]
    return {name: value["Ref"] for name, value in variables.items()
            if isinstance(value, dict) and value.get("Ref") in tables}


@functools.cache
def template() -> Template:
    """infra/template.yaml, parsed once per process (PyYAML takes most of a second)."""
    return load_template(TEMPLATE)


@functools.cache
def dynamodb_client() -> Any:
    """One boto3 DynamoDB client per process (creating one costs ~0.2 s); moto intercepts it under
    whichever mock is active."""
    return boto3.client("dynamodb", region_name="us-east-1")


def create_tables(template: Template, *, prefix: str = TABLE_PREFIX) -> dict[str, str]:
    """Create every table of ``template`` (keys, GSIs, TTL) with boto3; return variable → table name."""
    client = dynamodb_client()
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


def model_classes() -> list[type[Model]]:
    """Every pynamodb model of the layer bound by ``model_meta`` (it keeps ``Meta.table_env``)."""
    def walk(cls: type) -> list[type]:
        return [sub for child in cls.__subclasses__() for sub in (child, *walk(child))]

    return [model for model in walk(Model)
            if model.__module__.startswith("insightmesh.") and hasattr(model.Meta, "table_env")]


def drop_stale_connections() -> None:
    """Forget a model's cached pynamodb connection if it was made for another endpoint or region.

    pynamodb rebuilds a connection when the table name changes; the tables here always have the
    same names, so a connection made while a test pointed ``AWS_ENDPOINT_URL`` at a server would
    otherwise outlive it. Connections for the same endpoint are kept: a botocore client costs
    ~0.2 s to create, and moto intercepts it under whichever mock is active.
    """
    for model in model_classes():
        connection = model._connection
        if connection is not None and (connection.connection.host, connection.connection.region) != (
                model.Meta.host, model.Meta.region):
            model._connection = None


@contextmanager
def template_tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto with every table of the template and the environment naming them (variable → name)."""
    with mock_aws():
        tables = create_tables(template())
        for variable, name in tables.items():
            monkeypatch.setenv(variable, name)
        drop_stale_connections()
        yield tables
    drop_stale_connections()


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Every table of infra/template.yaml in moto; the ``*_TABLE`` variable → its table name."""
    with template_tables(monkeypatch) as names:
        yield names


def items(variable: str) -> list[dict[str, Any]]:
    """Every item of the table named by ``variable`` (a test may scan; the code under test never does)."""
    return dynamodb_client().scan(TableName=os.environ[variable], ConsistentRead=True)["Items"]


@pytest.fixture
def auth_env(tables: dict[str, str]) -> Iterator[dict[str, str]]:
    """``tables``, with the auth settings and the OIDC provider's caches (discovery, JWKS) fresh."""
    get_auth_settings.cache_clear()
    oidc_provider.reset_caches()
    yield tables
    get_auth_settings.cache_clear()
    oidc_provider.reset_caches()


# -- DynamoDB calls ----------------------------------------------------------------------------------


WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


class DynamoCalls:
    """Records DynamoDB API calls (``"Operation:Table"``; ``"-"`` for the multi-table operations)
    through botocore's ``before-call`` event, while :meth:`during` runs or between :meth:`start`
    and the end of the test. Registered once, in every botocore session created after this module
    is imported (pynamodb creates one per connection)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.items_written = 0  # the items the recorded BatchWriteItems carried
        self.recording = False

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.recording:
            body = params.get("body") or b"{}"
            request = json.loads(body) if isinstance(body, bytes | str) else {}
            self.calls.append(f"{model.name}:{request.get('TableName', '-')}")
            if model.name == "BatchWriteItem":
                self.items_written += sum(len(writes) for writes in request.get("RequestItems", {}).values())

    def start(self) -> DynamoCalls:
        """Record from now on (until :meth:`stop`, or the end of the test)."""
        self.calls.clear()
        self.items_written = 0
        self.recording = True
        return self

    def stop(self) -> None:
        self.recording = False

    def during(self, action: Callable[[], object]) -> list[str]:
        """The calls ``action`` makes, sorted."""
        self.start()
        try:
            action()
        finally:
            self.stop()
        return sorted(self.calls)

    def operations_during(self, action: Callable[[], object]) -> list[str]:
        """The operations (``"GetItem"``, ``"Query"``, ...) ``action`` makes, sorted."""
        return [call.split(":", 1)[0] for call in self.during(action)]

    @property
    def operations(self) -> list[str]:
        """The operations recorded so far, in order."""
        return [call.split(":", 1)[0] for call in self.calls]

    @property
    def counts(self) -> Counter[str]:
        """The operations recorded so far, counted."""
        return Counter(self.operations)

    @property
    def writes(self) -> int:
        return sum(count for operation, count in self.counts.items() if operation in WRITES)


DYNAMO_CALLS = DynamoCalls()
botocore_handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", DYNAMO_CALLS))


@pytest.fixture
def dynamo_calls() -> Iterator[DynamoCalls]:
    yield DYNAMO_CALLS
    DYNAMO_CALLS.stop()


# -- API Gateway events --------------------------------------------------------------------------------


def build_http_event(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    source_ip: str = "203.0.113.10",
    request_id: str = "req-test",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event: the ``ANY /api/{proxy+}`` or ``ANY /auth/{proxy+}``
    route for those paths, ``$default`` for any other. Header names arrive lower-cased, as API
    Gateway delivers them; cookies in the event's ``cookies`` list."""
    encoded = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    all_headers = {
        "accept": "application/json",
        "content-length": str(len(encoded or "")),
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "pytest",
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-request-id": request_id,
    }
    if encoded is not None:
        all_headers["content-type"] = "application/json"
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    all_headers.update({name.lower(): value for name, value in (headers or {}).items()})
    prefix = next((p for p in ("/api/", "/auth/") if path.startswith(p)), None)
    route_key = f"ANY {prefix}{{proxy+}}" if prefix else "$default"
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
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": "pytest"},
            "requestId": f"gw-{request_id}",
            "routeKey": route_key,
            "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795860000000,
        },
        "isBase64Encoded": False,
    }
    if prefix:
        event["pathParameters"] = {"proxy": path[len(prefix):]}
    if query:
        event["queryStringParameters"] = dict(query)
    if cookies:
        event["cookies"] = list(cookies)
    if encoded is not None:
        event["body"] = encoded
    return event


@pytest.fixture
def http_event() -> Callable[..., dict[str, Any]]:
    """:func:`build_http_event`: ``http_event("GET", "/api/me", token=...)``."""
    return build_http_event


def load_handler(path: Path = ROOT / "functions" / "admin_api" / "handler.py") -> ModuleType:
    """Import a function's handler.py as a fresh module (after the environment is set)."""
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_handler_{next(_handler_ids)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- directory users -----------------------------------------------------------------------------------


def save_user(user_id: str = "u-1", email: str | None = "alice@example.com", *, is_admin: bool = False,
              is_active: bool = True, groups: tuple[str, ...] = ("all_users",)) -> User:
    """A directory user, saved with a membership of each of ``groups``."""
    for group in groups:
        Membership(group, user_id, added_by="system").save()
    user = User(user_id, email=email, display_name=user_id, is_admin=is_admin, is_active=is_active)
    user.save()
    return user


@pytest.fixture
def make_user(tables: dict[str, str]) -> Callable[..., User]:
    """:func:`save_user`, in the ``tables``: ``make_user("u-1", "alice@example.com", is_admin=True)``."""
    return save_user


# -- the knowledge base --------------------------------------------------------------------------------

# Every variable that chooses the knowledge store or the embedder: cleared, so a developer's shell
# cannot point a test at a real Qdrant or embedding service.
KNOWLEDGE_VARIABLES = (
    "QDRANT_URL", "QDRANT_API_KEY", "QDRANT_API_KEY_SECRET_ID", "QDRANT_PATH", "QDRANT_COLLECTION",
    "EMBEDDING_PROVIDER", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL", "EMBEDDING_DIMENSIONS", "EMBEDDING_API_KEY",
    "EMBEDDING_API_KEY_SECRET_ID", "EMBEDDING_BATCH_SIZE",
)


@pytest.fixture
def knowledge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tables: dict[str, str]) -> Iterator[dict[str, str]]:
    """moto tables, an embedded Qdrant in ``tmp_path``, offline embeddings."""
    for name in KNOWLEDGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    store_module.reset_for_tests()
    resilience._breakers.clear()
    yield tables
    store_module.reset_for_tests()
    resilience._breakers.clear()


# -- Slack -------------------------------------------------------------------------------------------


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    """The local Slack Web API sandbox on a free port, with the layer's Slack client pointed at it."""
    with pointed_sandbox(monkeypatch, "xoxb-integration-test") as sandbox:
        yield sandbox
