"""AWS clients and pynamodb table binding shared by every context.

Clients are created once per process (a Lambda container) with explicit timeouts and bounded
retries. The endpoint comes from ``AWS_ENDPOINT_URL`` (boto3 honours it natively), which is how
the same code talks to AWS, to the embedded emulator of ``insightmesh dev`` or to LocalStack.

Also the small shapes every context shares with the runtime: :class:`LambdaContextLike` (what a
handler uses of its Lambda context) and :func:`put_if_absent` (a conditional PutItem that accepts
the item already there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

import boto3
from botocore.config import Config
from pynamodb.exceptions import PutError, PynamoDBException
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from insightmesh.resilience import Timeouts

_clients: dict[tuple[str, float, float, int], Any] = {}
_lock = threading.Lock()


class LambdaContextLike(Protocol):
    """What InsightMesh uses of a Lambda context (powertools' ``LambdaContext`` is one)."""

    def get_remaining_time_in_millis(self) -> int: ...


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


DEFAULT_TIMEOUTS = Timeouts()


def client(service: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS, attempts: int = 3) -> Any:
    """A process-wide boto3 client for ``service`` with the given timeouts, making at most
    ``attempts`` calls per request in all (the first included); cached per setting."""
    key = (service, timeouts.connect, timeouts.read, attempts)
    with _lock:
        existing = _clients.get(key)
        if existing is None:
            config = Config(
                connect_timeout=timeouts.connect,
                read_timeout=timeouts.read,
                retries={"total_max_attempts": attempts, "mode": "standard"},
            )
            existing = boto3.session.Session().client(service, region_name=aws_region(), config=config)
            _clients[key] = existing
        return existing


class _FromEnvironment:
    """A ``Meta`` attribute read from the environment each time pynamodb reads it (a descriptor),
    so a model binds its table when it is first used rather than when its module is imported."""

    def __init__(self, read: Callable[[], str | None]) -> None:
        self._read = read

    def __get__(self, instance: object, owner: type | None = None) -> str | None:
        return self._read()


def model_meta(table_env: str, *, connect_timeout: int = 2, read_timeout: int = 5) -> Any:
    """The ``Meta`` of a pynamodb model whose table name is in environment variable ``table_env``.

    The table name, region and endpoint (``AWS_ENDPOINT_URL``) are read when pynamodb reads them,
    not at import: pynamodb rebuilds a model's cached connection whenever ``Meta.table_name`` no
    longer matches the one it was made for, so a changed variable takes effect without reloading
    any module. ``table_env`` is kept on the Meta so the template consistency test can find the
    table that the template binds to that variable.
    """
    default_name = f"insightmesh-{table_env.lower().replace('_', '-')}"

    class Meta:
        table_name = _FromEnvironment(lambda: os.environ.get(table_env, default_name))
        region = _FromEnvironment(aws_region)
        host = _FromEnvironment(lambda: os.environ.get("AWS_ENDPOINT_URL") or None)
        connect_timeout_seconds = connect_timeout
        read_timeout_seconds = read_timeout
        max_retry_attempts = 2

    Meta.table_env = table_env  # type: ignore[attr-defined]
    # Any: pynamodb types Model.Meta as a private protocol that a plain class cannot name.
    return Meta


def condition_failed(error: PynamoDBException) -> bool:
    """Whether a pynamodb write failed on its condition (``ConditionalCheckFailedException``)."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def put_if_absent(item: Model, condition: Condition) -> bool:
    """PutItem ``item`` if ``condition`` (an ``attribute_not_exists``) holds: ``True`` if written,
    ``False`` if the item is already there (the existing item is kept). Any other error is raised."""
    try:
        item.save(condition=condition)
    except PutError as error:
        if condition_failed(error):
            return False
        raise
    return True
