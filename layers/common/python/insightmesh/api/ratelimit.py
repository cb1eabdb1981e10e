"""Fixed-window rate limiting in DynamoDB, shared by all containers of a function.

The counters live in ``insightmesh.api.ratelimit_table`` (its access pattern is documented
there). It is imported on the first request that is counted, not at cold start: pynamodb and
botocore cost ~100 ms to import and liveness checks never need them.

A limiter failure (DynamoDB unreachable) lets the request through and logs it: rate limiting
protects capacity, it is not an access control, so it fails open (permission checks fail closed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from insightmesh.api.errors import RateLimitedError
from insightmesh.observability import get_logger


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per (scope, client)."""

    def __init__(self, scope: str, limit: int, *, window: int = 60, clock: Callable[[], float] = time.time) -> None:
        self.scope = scope
        self.limit = limit
        self.window = window
        self.clock = clock

    def hit(self, client: str) -> None:
        """Count one request; raise RateLimitedError (429, with Retry-After) past the limit."""
        if self.limit <= 0:
            return
        from pynamodb.exceptions import PynamoDBException

        from insightmesh.api.ratelimit_table import RateLimitCounter

        now = self.clock()
        window_start = int(now // self.window * self.window)
        counter = RateLimitCounter(f"{self.scope}#{client}#{window_start}")
        try:
            counter.update(
                actions=[
                    RateLimitCounter.hits.add(1),
                    RateLimitCounter.expires_at.set(datetime.fromtimestamp(window_start + 2 * self.window, UTC)),
                ]
            )
        except PynamoDBException as error:
            get_logger().warning("rate limiter unavailable; request allowed", extra={"error": str(error)})
            return
        if counter.hits > self.limit:
            retry_after = max(1, int(window_start + self.window - now))
            raise RateLimitedError(
                f"more than {self.limit} requests in {self.window}s; retry after {retry_after}s",
                headers={"Retry-After": str(retry_after)},
            )

    def middleware(self) -> Callable[[Any, NextMiddleware], Response[Any]]:
        """A powertools route middleware applying this limit per source IP."""

        def _limit(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
            self.hit(source_ip(app.current_event.raw_event))
            return next_middleware(app)

        return _limit


def source_ip(event: dict[str, Any]) -> str:
    context = event.get("requestContext") or {}
    return str((context.get("http") or {}).get("sourceIp") or (context.get("identity") or {}).get("sourceIp")
               or "unknown")
