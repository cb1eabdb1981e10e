"""Readiness checks of declared tables and queues (insightmesh.health.checks) against moto."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from insightmesh import aws
from insightmesh.auth.tokens import create_token
from insightmesh.config import get_settings
from insightmesh.health import checks
from insightmesh.health.checks import CheckStatus, Resource, check_readiness, declared_resources
from tests.helpers import wait_for
from tests.integration.conftest import ROOT, load_handler, save_user

TABLE = "insightmesh-test-agents"
QUEUE = "insightmesh-test-jobs"
DLQ = "insightmesh-test-jobs-dlq"


@pytest.fixture
def stack() -> Iterator[dict[str, str]]:
    """A table, a queue and its dead-letter queue in moto, declared as the template declares them."""
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        yield {"AGENTS_TABLE": TABLE, "JOBS_QUEUE_URL": queue_url, "JOBS_DLQ_URL": dlq_url}


def by_name(readiness: Any) -> dict[str, Any]:
    return {check["name"]: check for check in readiness["checks"]}


# -- declared resources -------------------------------------------------------------------------


def test_declared_resources_picks_tables_queues_and_dlqs() -> None:
    environ = {
        "AGENTS_TABLE": "agents",
        "RATE_LIMIT_TABLE": "limits",
        "CONVERSATION_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/conversation.fifo",
        "CONVERSATION_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/conversation-dlq.fifo",
        "SLACK_BOT_TOKEN": "xoxb-not-a-resource",
        "LOG_LEVEL": "INFO",
        "TABLE": "no suffix, no resource",
        "AUDIT_TABLE_ARN": "not a table name",
        "EMPTY_TABLE": "",
    }

    assert declared_resources(environ) == [
        Resource("AGENTS_TABLE", "dynamodb_table", "agents"),
        Resource("CONVERSATION_DLQ_URL", "sqs_dlq",
                 "https://sqs.us-east-1.amazonaws.com/123456789012/conversation-dlq.fifo"),
        Resource("CONVERSATION_QUEUE_URL", "sqs_queue",
                 "https://sqs.us-east-1.amazonaws.com/123456789012/conversation.fifo"),
        Resource("RATE_LIMIT_TABLE", "dynamodb_table", "limits"),
    ]


def test_declared_resources_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZZ_HEALTH_TEST_TABLE", "from-env")
    assert Resource("ZZ_HEALTH_TEST_TABLE", "dynamodb_table", "from-env") in declared_resources()


def test_nothing_declared_is_ready() -> None:
    assert check_readiness([], timeout=1.0) == {"status": "ok", "checks": []}


# -- against moto -------------------------------------------------------------------------------


def test_everything_present_is_ok(stack: dict[str, str]) -> None:
    readiness = check_readiness(declared_resources(stack), timeout=10.0)

    assert readiness["status"] == "ok"
    checks_by_name = by_name(readiness)
    assert set(checks_by_name) == {"AGENTS_TABLE", "JOBS_QUEUE_URL", "JOBS_DLQ_URL"}
    assert checks_by_name["AGENTS_TABLE"] | {"latency_ms": 0} == {
        "name": "AGENTS_TABLE", "kind": "dynamodb_table", "resource": TABLE, "status": "ok",
        "latency_ms": 0, "detail": "table active",
    }
    assert checks_by_name["JOBS_QUEUE_URL"]["resource"] == QUEUE  # the name, not the whole URL
    assert checks_by_name["JOBS_QUEUE_URL"]["detail"] == "0 message(s) waiting"
    assert checks_by_name["JOBS_DLQ_URL"]["kind"] == "sqs_dlq"
    assert checks_by_name["JOBS_DLQ_URL"]["status"] == "ok"
    for check in readiness["checks"]:
        assert isinstance(check["latency_ms"], float)
        assert check["latency_ms"] >= 0


def test_checks_come_back_in_declaration_order(stack: dict[str, str]) -> None:
    resources = declared_resources(stack)
    readiness = check_readiness(resources, timeout=10.0)
    assert [check["name"] for check in readiness["checks"]] == [resource.variable for resource in resources]


def test_a_missing_table_is_down_and_so_is_the_whole(stack: dict[str, str]) -> None:
    resources = declared_resources({**stack, "AUDIT_TABLE": "insightmesh-test-missing"})

    readiness = check_readiness(resources, timeout=10.0)

    assert readiness["status"] == "down"
    audit = by_name(readiness)["AUDIT_TABLE"]
    assert audit["status"] == "down"
    assert audit["detail"] == "ResourceNotFoundException"
    assert by_name(readiness)["AGENTS_TABLE"]["status"] == "ok"


def test_a_missing_queue_is_down(stack: dict[str, str]) -> None:
    missing = stack["JOBS_QUEUE_URL"].rsplit("/", 1)[0] + "/insightmesh-test-missing"
    readiness = check_readiness(declared_resources({"OTHER_QUEUE_URL": missing}), timeout=10.0)

    assert readiness["status"] == "down"
    (check,) = readiness["checks"]
    assert check["status"] == "down"
    assert check["resource"] == "insightmesh-test-missing"
    assert check["detail"]


def test_a_dlq_holding_messages_is_degraded(stack: dict[str, str]) -> None:
    boto3.client("sqs").send_message(QueueUrl=stack["JOBS_DLQ_URL"], MessageBody='{"job": "gdrive-sync"}')

    readiness = check_readiness(declared_resources(stack), timeout=10.0)

    assert readiness["status"] == "degraded"
    dlq = by_name(readiness)["JOBS_DLQ_URL"]
    assert dlq["status"] == "degraded"
    assert dlq["detail"] == "1 message(s) in the dead-letter queue"


def test_a_busy_work_queue_is_still_ok(stack: dict[str, str]) -> None:
    sqs = boto3.client("sqs")
    for n in range(3):
        sqs.send_message(QueueUrl=stack["JOBS_QUEUE_URL"], MessageBody=f'{{"n": {n}}}')

    readiness = check_readiness(declared_resources(stack), timeout=10.0)

    assert readiness["status"] == "ok"
    assert by_name(readiness)["JOBS_QUEUE_URL"]["detail"] == "3 message(s) waiting"


def test_down_outranks_degraded(stack: dict[str, str]) -> None:
    boto3.client("sqs").send_message(QueueUrl=stack["JOBS_DLQ_URL"], MessageBody="{}")
    resources = declared_resources({**stack, "AUDIT_TABLE": "insightmesh-test-missing"})

    readiness = check_readiness(resources, timeout=10.0)

    assert readiness["status"] == "down"
    statuses = {check["name"]: check["status"] for check in readiness["checks"]}
    assert statuses == {"AGENTS_TABLE": "ok", "AUDIT_TABLE": "down", "JOBS_DLQ_URL": "degraded",
                        "JOBS_QUEUE_URL": "ok"}


def test_a_table_that_is_not_active_yet_is_degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    class CreatingTableClient:
        def describe_table(self, TableName: str) -> dict[str, Any]:
            return {"Table": {"TableName": TableName, "TableStatus": "CREATING"}}

    monkeypatch.setattr(aws, "client", lambda *args, **kwargs: CreatingTableClient())

    readiness = check_readiness([Resource("AGENTS_TABLE", "dynamodb_table", "agents")], timeout=1.0)

    assert readiness["status"] == "degraded"
    assert readiness["checks"][0]["detail"] == "table creating"


def test_checks_use_the_timeout_and_no_retries(stack: dict[str, str]) -> None:
    check_readiness(declared_resources(stack), timeout=1.5)

    # On a loaded machine the first boto3 client can take longer to build than the check's
    # deadline; the check then reports and its abandoned thread finishes building the client.
    wanted = {("dynamodb", 1.5, 1.5, 1), ("sqs", 1.5, 1.5, 1)}
    wait_for(lambda: wanted <= set(aws._clients), timeout=20, what="the readiness checks' clients")


# -- an endpoint that never answers -------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections on loopback and never sends a byte back."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    server = SilentServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
    aws._clients.clear()  # clients read the endpoint when they are created
    try:
        yield server
    finally:
        server.close()
        aws._clients.clear()


def test_an_endpoint_that_never_answers_is_down_within_the_timeout(silent_endpoint: SilentServer) -> None:
    resources = [
        Resource("AGENTS_TABLE", "dynamodb_table", TABLE),
        Resource("JOBS_QUEUE_URL", "sqs_queue", f"http://127.0.0.1:{silent_endpoint.port}/123456789012/{QUEUE}"),
    ]

    started = time.monotonic()
    readiness = check_readiness(resources, timeout=0.5)
    elapsed = time.monotonic() - started

    assert readiness["status"] == "down"
    assert [check["status"] for check in readiness["checks"]] == ["down", "down"]
    for check in readiness["checks"]:
        # Either the readiness deadline or the client's own read timeout (the same 0.5 s) fires first.
        assert check["detail"] in {"no answer within 0.5s", "ReadTimeoutError"}
    assert elapsed < 5.0  # generous: what matters is that it does not hang
    # The checks do reach the server; on a loaded machine the abandoned check thread may only
    # connect after the readiness deadline has already answered "down", so wait for it.
    wait_for(lambda: silent_endpoint.connections, timeout=5.0, what="a connection to the silent server")


def test_a_refused_connection_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")

    # A refused connection answers at once; the generous deadline only keeps a loaded machine's
    # slow first boto3 client creation from being mistaken for a silent endpoint.
    readiness = check_readiness([Resource("AGENTS_TABLE", "dynamodb_table", TABLE)], timeout=5.0)

    assert readiness["status"] == "down"
    assert readiness["checks"][0]["status"] == CheckStatus.DOWN.value
    assert readiness["checks"][0]["detail"] == "EndpointConnectionError"


# -- the cache ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_report_is_reused_within_the_cache_period_without_any_aws_call(stack: dict[str, str]) -> None:
    checks.clear_cache()
    clock = Clock()
    resources = declared_resources(stack)
    first = checks.cached_readiness(resources, timeout=10.0, max_age=5.0, clock=clock)
    assert first["status"] == "ok"
    boto3.client("dynamodb").delete_table(TableName=TABLE)  # a change the cached report cannot see

    clock.now += 4.9
    assert checks.cached_readiness(resources, timeout=10.0, max_age=5.0, clock=clock) is first  # no new calls

    clock.now += 0.2
    fresh = checks.cached_readiness(resources, timeout=10.0, max_age=5.0, clock=clock)
    assert fresh["status"] == "down" and by_name(fresh)["AGENTS_TABLE"]["detail"] == "ResourceNotFoundException"
    checks.clear_cache()


def test_other_resources_are_not_answered_from_the_cache(stack: dict[str, str]) -> None:
    checks.clear_cache()
    clock = Clock()
    checks.cached_readiness(declared_resources(stack), timeout=10.0, clock=clock)
    other = checks.cached_readiness(declared_resources({"AGENTS_TABLE": TABLE}), timeout=10.0, clock=clock)
    assert [check["name"] for check in other["checks"]] == ["AGENTS_TABLE"]
    checks.clear_cache()


# -- GET /health/ready: the overall status for everyone, the detail for an admin's token ---------------


@pytest.fixture
def health(stack: dict[str, str], tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """functions/health/handler.py with the template's tables (in the same moto) and the stack above."""
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "10")  # a loaded machine is not a down stack
    get_settings.cache_clear()
    checks.clear_cache()
    handler = load_handler(ROOT / "functions" / "health" / "handler.py")
    monkeypatch.setattr(handler, "declared_resources", lambda: declared_resources(stack))
    yield handler
    checks.clear_cache()
    get_settings.cache_clear()


def ready(health: ModuleType, token: str | None = None) -> tuple[int, Any]:
    event = json.loads((ROOT / "events" / "health" / "ready.json").read_text())
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    response = health.lambda_handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def user_with_token(user_id: str, *, is_admin: bool, scopes: list[str]) -> str:
    save_user(user_id, f"{user_id}@example.com", is_admin=is_admin, groups=())
    return str(create_token(user_id, name="monitoring", scopes=scopes)[0])


def test_anonymous_readiness_shows_only_the_overall_status(health: ModuleType) -> None:
    assert ready(health) == (200, {"status": "ok"})


def test_an_admin_token_with_admin_read_sees_every_check(health: ModuleType) -> None:
    token = user_with_token("u-admin", is_admin=True, scopes=["admin:read"])
    status, body = ready(health, token)
    assert status == 200 and body["status"] == "ok"
    assert set(by_name(body)) == {"AGENTS_TABLE", "JOBS_QUEUE_URL", "JOBS_DLQ_URL"}


def test_a_down_stack_is_503_with_the_status_only(health: ModuleType) -> None:
    boto3.client("dynamodb").delete_table(TableName=TABLE)
    assert ready(health) == (503, {"status": "down"})


@pytest.mark.parametrize(("is_admin", "scopes"), [(False, ["admin:read", "admin:write"]), (True, ["admin:write"]),
                                                  (True, [])])
def test_the_detail_needs_an_admin_token_with_admin_read(health: ModuleType, is_admin: bool, scopes: list[str]) -> None:
    token = user_with_token("u-1", is_admin=is_admin, scopes=scopes)
    status, body = ready(health, token)
    assert status == 403 and "checks" not in body and body["error"]["code"] == "forbidden"


@pytest.mark.parametrize("authorization", ["imt_0123456789abcdef_" + "a" * 43, "garbage"])
def test_an_invalid_token_is_401(health: ModuleType, authorization: str) -> None:
    status, body = ready(health, authorization)
    assert status == 401 and "checks" not in body
