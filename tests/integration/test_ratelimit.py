"""Fixed-window rate limiting against DynamoDB (moto) — insightmesh.api.ratelimit."""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from insightmesh.api import RateLimitedError, create_app
from insightmesh.api import ratelimit as ratelimit_module
from insightmesh.api.ratelimit_table import RateLimitCounter
from insightmesh.config import Settings, load_settings
from insightmesh.observability import get_logger
from tests.integration.conftest import drop_stale_connections
from tests.integration.conftest import items as table_items

WINDOW_START = 1_700_000_040  # a multiple of 60


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ratelimit(tables: dict[str, str]) -> ModuleType:
    return ratelimit_module


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WINDOW_START + 15.0)


def stored_items() -> dict[str, dict[str, Any]]:
    items = table_items("RATE_LIMIT_TABLE")
    return {item["key"]["S"]: item for item in items}


def test_requests_within_the_limit_pass(ratelimit: ModuleType, clock: FakeClock) -> None:
    limiter = ratelimit.RateLimiter("admin", 3, clock=clock)
    for _ in range(3):
        limiter.hit("192.0.2.1")

    item = stored_items()[f"admin#192.0.2.1#{WINDOW_START}"]
    assert item["hits"] == {"N": "3"}
    assert item["expires_at"] == {"N": str(WINDOW_START + 120)}  # TTL: the window, plus one more


def test_the_request_past_the_limit_is_refused_with_retry_after(
    ratelimit: ModuleType, clock: FakeClock
) -> None:
    limiter = ratelimit.RateLimiter("admin", 3, clock=clock)
    for _ in range(3):
        limiter.hit("192.0.2.1")

    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("192.0.2.1")

    error = caught.value
    assert error.status == 429
    assert error.code == "rate_limited"
    assert error.headers == {"Retry-After": "45"}  # the rest of the window
    assert "more than 3 requests in 60s" in error.message

    with pytest.raises(RateLimitedError):
        limiter.hit("192.0.2.1")  # and it stays refused for the rest of the window


def test_retry_after_is_at_least_one_second(ratelimit: ModuleType, clock: FakeClock) -> None:
    clock.now = WINDOW_START + 59.7
    limiter = ratelimit.RateLimiter("admin", 1, clock=clock)
    limiter.hit("c")
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("c")
    assert caught.value.headers == {"Retry-After": "1"}


def test_a_new_window_resets_the_count(ratelimit: ModuleType, clock: FakeClock) -> None:
    limiter = ratelimit.RateLimiter("admin", 2, clock=clock)
    limiter.hit("c")
    limiter.hit("c")
    with pytest.raises(RateLimitedError):
        limiter.hit("c")

    clock.now = WINDOW_START + 60  # the next window starts
    limiter.hit("c")
    limiter.hit("c")
    with pytest.raises(RateLimitedError):
        limiter.hit("c")

    hits = {key: item["hits"]["N"] for key, item in stored_items().items()}
    assert hits == {f"admin#c#{WINDOW_START}": "3", f"admin#c#{WINDOW_START + 60}": "3"}


def test_the_window_length_is_configurable(ratelimit: ModuleType) -> None:
    clock = FakeClock(1_000_005.0)
    limiter = ratelimit.RateLimiter("jobs", 1, window=10, clock=clock)
    limiter.hit("c")
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("c")
    assert caught.value.headers == {"Retry-After": "5"}
    clock.now = 1_000_010.0
    limiter.hit("c")


def test_clients_are_counted_independently(ratelimit: ModuleType, clock: FakeClock) -> None:
    limiter = ratelimit.RateLimiter("admin", 2, clock=clock)
    limiter.hit("192.0.2.1")
    limiter.hit("192.0.2.1")
    with pytest.raises(RateLimitedError):
        limiter.hit("192.0.2.1")

    limiter.hit("192.0.2.2")
    limiter.hit("192.0.2.2")


def test_scopes_are_counted_independently(ratelimit: ModuleType, clock: FakeClock) -> None:
    admin = ratelimit.RateLimiter("admin", 1, clock=clock)
    tasks = ratelimit.RateLimiter("tasks", 1, clock=clock)
    admin.hit("c")
    tasks.hit("c")
    with pytest.raises(RateLimitedError):
        admin.hit("c")


def test_a_limit_of_zero_disables_limiting(ratelimit: ModuleType, clock: FakeClock) -> None:
    limiter = ratelimit.RateLimiter("admin", 0, clock=clock)
    for _ in range(5):
        limiter.hit("c")
    assert stored_items() == {}  # not even a write


def test_a_missing_table_lets_the_request_through(ratelimit: ModuleType, clock: FakeClock) -> None:
    boto3.client("dynamodb").delete_table(TableName=os.environ["RATE_LIMIT_TABLE"])
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        limiter = ratelimit.RateLimiter("admin", 1, clock=clock)
        for _ in range(3):
            limiter.hit("c")  # never raises
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]

    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(warnings) == 3
    assert {line["message"] for line in warnings} == {"rate limiter unavailable; request allowed"}
    assert all(line["level"] == "WARNING" for line in warnings)


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_endpoint_lets_the_request_through(
    ratelimit: ModuleType, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on that port: every connection is refused.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_loopback_port()}")
    drop_stale_connections()  # the model reads the endpoint when it next connects
    assert RateLimitCounter._get_connection().connection.host.startswith("http://127.0.0.1:")

    limiter = ratelimit.RateLimiter("admin", 1, clock=clock)
    limiter.hit("c")
    limiter.hit("c")  # over the limit, but the limiter cannot know: fail open


# -- as a route middleware ----------------------------------------------------------------------


def test_the_middleware_limits_per_source_ip(ratelimit: ModuleType, clock: FakeClock,
                                             http_event: Callable[..., dict[str, Any]]) -> None:
    settings = load_settings(Settings)
    app = create_app("limited", settings=settings)
    limiter = ratelimit.RateLimiter("limited", 2, clock=clock)

    @app.get("/api/agents", middlewares=[limiter.middleware()])
    def agents() -> dict[str, list[str]]:
        return {"agents": ["help"]}

    def get(source_ip: str, request_id: str) -> dict[str, Any]:
        return app.resolve(http_event("GET", "/api/agents", source_ip=source_ip, request_id=request_id), None)

    statuses = [get("192.0.2.1", f"r{n}")["statusCode"] for n in range(2)]
    refused = get("192.0.2.1", "r-refused")
    other_client = get("192.0.2.2", "r-other")

    assert statuses == [200, 200]
    assert refused["statusCode"] == 429
    assert json.loads(refused["body"])["error"] == {
        "code": "rate_limited",
        "message": "more than 2 requests in 60s; retry after 45s",
        "request_id": "r-refused",
    }
    assert refused["headers"]["Retry-After"] == "45"
    assert refused["headers"]["X-Content-Type-Options"] == "nosniff"
    assert other_client["statusCode"] == 200


def test_source_ip_falls_back_for_rest_api_events_and_unknown(ratelimit: ModuleType) -> None:
    assert ratelimit.source_ip({"requestContext": {"http": {"sourceIp": "192.0.2.1"}}}) == "192.0.2.1"
    assert ratelimit.source_ip({"requestContext": {"identity": {"sourceIp": "192.0.2.9"}}}) == "192.0.2.9"
    assert ratelimit.source_ip({}) == "unknown"
