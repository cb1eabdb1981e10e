"""tools.http_json: how the web search and SEC EDGAR providers read one JSON response."""

from __future__ import annotations

import httpx
import pytest

from insightmesh.resilience import RetryableError
from insightmesh.tools.http_json import read_json


class ServiceError(Exception):
    pass


def read(response: httpx.Response, max_bytes: int = 100) -> object:
    return read_json(response, service="the service", error=ServiceError, max_bytes=max_bytes,
                     refusal=lambda status: f"the service refused: HTTP {status}", too_large="too large")


def test_a_json_body_is_returned() -> None:
    assert read(httpx.Response(200, content=b'{"hits": [1, 2]}')) == {"hits": [1, 2]}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_with_retry_after(status: int) -> None:
    with pytest.raises(RetryableError) as raised:
        read(httpx.Response(status, headers={"Retry-After": "3"}, content=b"{}"))
    assert raised.value.retry_after == 3.0


def test_another_4xx_is_the_services_refusal() -> None:
    with pytest.raises(ServiceError, match="the service refused: HTTP 403"):
        read(httpx.Response(403, content=b"{}"))


def test_a_body_over_the_limit_is_refused() -> None:
    with pytest.raises(ServiceError, match="too large"):
        read(httpx.Response(200, content=b"[" + b"1," * 100 + b"1]"))


def test_a_body_that_is_not_json_names_the_service() -> None:
    with pytest.raises(ServiceError, match="the service answered something that is not JSON"):
        read(httpx.Response(200, content=b"<html>busy</html>"))
