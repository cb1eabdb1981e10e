"""AWS clients and pynamodb table binding shared by every context.

Clients are created once per process (a Lambda container) with explicit timeouts and bounded
retries. The endpoint comes from ``AWS_ENDPOINT_URL`` (boto3 honours it natively), which is how
the same code talks to AWS, to the embedded emulator of ``insightmesh dev`` or to LocalStack.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

from insightmesh.resilience import Timeouts

_clients: dict[tuple[str, float, float, int], Any] = {}
_lock = threading.Lock()


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


def model_meta(table_env: str, *, connect_timeout: int = 2, read_timeout: int = 5) -> Any:
    """The ``Meta`` of a pynamodb model whose table name is in environment variable ``table_env``.

    ``table_env`` is kept on the Meta so the template consistency test can find the table that
    the template binds to that variable.
    """

    class Meta:
        table_name = os.environ.get(table_env, f"insightmesh-{table_env.lower().replace('_', '-')}")
        region = aws_region()
        host = os.environ.get("AWS_ENDPOINT_URL") or None
        connect_timeout_seconds = connect_timeout
        read_timeout_seconds = read_timeout
        max_retry_attempts = 2

    Meta.table_env = table_env  # type: ignore[attr-defined]
    # Any: pynamodb types Model.Meta as a private protocol that a plain class cannot name.
    return Meta
