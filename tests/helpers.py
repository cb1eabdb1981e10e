"""Small helpers shared by the test tiers (free loopback ports, polling with a bound)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.1, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def create_dynamodb_table(client: Any, name: str, keys: Sequence[tuple[str, str]],
                          indexes: Mapping[str, Sequence[tuple[str, str]]], ttl: str | None = None) -> None:
    """One string-keyed PAY_PER_REQUEST table: ``keys`` and each index as (attribute, HASH|RANGE)."""
    attributes = {attribute for attribute, _ in keys} | {a for index in indexes.values() for a, _ in index}
    extra: dict[str, Any] = {}
    if indexes:
        extra["GlobalSecondaryIndexes"] = [
            {"IndexName": index_name,
             "KeySchema": [{"AttributeName": a, "KeyType": kind} for a, kind in index],
             "Projection": {"ProjectionType": "ALL"}}
            for index_name, index in indexes.items()
        ]
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
        KeySchema=[{"AttributeName": a, "KeyType": kind} for a, kind in keys],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
