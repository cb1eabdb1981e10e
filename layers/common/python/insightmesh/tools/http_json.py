"""The HTTP JSON calls the web tools' providers make (web search, SEC EDGAR): retried and bounded
the same way.

``call_resilient`` runs one call through the service's breaker and retry policy and turns an open
circuit or exhausted retries into the tool's own error; ``read_json`` reads one response: a 429 or
5xx is retried (honouring ``Retry-After``), another 4xx is the tool's error, the body is read up to
a byte limit, and it must be JSON. A broken connection while reading is retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    call_with_resilience,
    parse_retry_after,
)

T = TypeVar("T")


def call_resilient(call: Callable[[], T], *, breaker: CircuitBreaker, retry: RetryPolicy,
                   service: str, error: Callable[[str], Exception]) -> T:
    """``call`` through ``breaker`` and ``retry``; an open circuit or the last retryable failure
    raises ``error`` naming ``service``."""
    try:
        return call_with_resilience(breaker, call, retry=retry)
    except CircuitOpenError as open_:
        raise error(f"{service} is unavailable for now; try again in a minute") from open_
    except RetryableError as failed:
        raise error(f"{service} did not answer: {failed}") from failed


def read_json(response: httpx.Response, *, service: str, error: Callable[[str], Exception],
              refusal: Callable[[int], str], max_bytes: int, too_large: str) -> Any:
    """The JSON body of a (streamed) ``response``. 429/5xx: ``RetryableError``; another status of
    400 or more: ``error(refusal(status))``; a body over ``max_bytes``: ``error(too_large)``; a body
    that is not JSON: ``error`` naming ``service``."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetryableError(f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status >= 400:
        raise error(refusal(status))
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise error(too_large)
    except httpx.TransportError as broken:
        raise RetryableError(type(broken).__name__) from broken
    try:
        return json.loads(bytes(body))
    except ValueError as garbled:
        raise error(f"{service} answered something that is not JSON") from garbled


__all__ = ["call_resilient", "read_json"]
