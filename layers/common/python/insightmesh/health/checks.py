"""Readiness: every DynamoDB table and SQS queue the stack declares, and the knowledge store, each
checked with a timeout.

The stack declares its resources to every function through environment variables (template
``Globals``): names ending in ``_TABLE`` are DynamoDB tables, ``_QUEUE_URL`` are SQS queues and
``_DLQ_URL`` are dead-letter queues. A consistency test holds that list against the template, so
a table or queue added to the template without its variable fails the tests. ``QDRANT_URL``, when
set, is the knowledge store: Qdrant's ``GET /readyz`` (with the ``api-key`` header when
``QDRANT_API_KEY`` is configured), one attempt under the same timeout as the other checks, never
retried; unset (the embedded store of development), there is no server to check.

boto3 is imported by the first readiness check, not at cold start (liveness never needs it).

Per check: ``ok``; ``degraded`` (table not ACTIVE yet, or a DLQ holding messages: work failed);
``down`` (unreachable, missing, an answer other than 200 from the knowledge store, or no answer
within the timeout). Overall: the worst of them.

``/health/ready`` is open, so :func:`cached_readiness` keeps the last report in process for
``READINESS_CACHE_SECONDS``: however often it is called, the AWS calls (one per resource) are made
at most once per period, and concurrent callers share one run. Only the overall status is shown
to anonymous callers (:func:`summary`); names and DLQ depths need an admin token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypedDict
from urllib.parse import urlsplit

from insightmesh.resilience import Timeouts

ResourceKind = Literal["dynamodb_table", "sqs_queue", "sqs_dlq", "knowledge_store"]
READINESS_CACHE_SECONDS = 5.0
KNOWLEDGE_STORE_VARIABLE = "QDRANT_URL"


class CheckStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


_SEVERITY = {CheckStatus.OK: 0, CheckStatus.DEGRADED: 1, CheckStatus.DOWN: 2}


@dataclass(frozen=True)
class Resource:
    variable: str
    kind: ResourceKind
    identifier: str


class CheckResult(TypedDict):
    name: str
    kind: str
    resource: str
    status: str
    latency_ms: float
    detail: str


class Readiness(TypedDict):
    status: str
    checks: list[CheckResult]


def declared_resources(environ: Mapping[str, str] | None = None) -> list[Resource]:
    environ = os.environ if environ is None else environ
    found: list[Resource] = []
    for variable, value in sorted(environ.items()):
        if not value:
            continue
        if variable == KNOWLEDGE_STORE_VARIABLE:
            found.append(Resource(variable, "knowledge_store", value))
        elif variable.endswith("_DLQ_URL"):
            found.append(Resource(variable, "sqs_dlq", value))
        elif variable.endswith("_QUEUE_URL"):
            found.append(Resource(variable, "sqs_queue", value))
        elif variable.endswith("_TABLE"):
            found.append(Resource(variable, "dynamodb_table", value))
    return found


def _check_table(resource: Resource, timeouts: Timeouts) -> tuple[CheckStatus, str]:
    from insightmesh.aws import client

    table = client("dynamodb", timeouts=timeouts, attempts=1).describe_table(TableName=resource.identifier)
    status = table["Table"]["TableStatus"]
    return (CheckStatus.OK if status == "ACTIVE" else CheckStatus.DEGRADED), f"table {status.lower()}"


def _check_queue(resource: Resource, timeouts: Timeouts) -> tuple[CheckStatus, str]:
    from insightmesh.aws import client

    attributes = client("sqs", timeouts=timeouts, attempts=1).get_queue_attributes(
        QueueUrl=resource.identifier, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    waiting = int(attributes.get("ApproximateNumberOfMessages", "0"))
    if resource.kind == "sqs_dlq" and waiting > 0:
        return CheckStatus.DEGRADED, f"{waiting} message(s) in the dead-letter queue"
    return CheckStatus.OK, f"{waiting} message(s) waiting"


def _check_knowledge_store(resource: Resource, timeouts: Timeouts) -> tuple[CheckStatus, str]:
    # The standard library's client: botocore has imported it already, so the first readiness
    # check of a cold start imports no HTTP library of its own.
    import http.client

    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    from insightmesh.knowledge.settings import optional_secret

    try:
        api_key = optional_secret("QDRANT_API_KEY")
    except GetParameterError:
        return CheckStatus.DOWN, "QDRANT_API_KEY could not be read"
    parts = urlsplit(resource.identifier)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return CheckStatus.DOWN, "QDRANT_URL is not an http(s) URL"
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname, parts.port, timeout=max(timeouts.connect, timeouts.read))
    try:
        connection.request("GET", parts.path.rstrip("/") + "/readyz", headers={"api-key": api_key} if api_key else {})
        response = connection.getresponse()
        status = response.status
        response.read(4096)  # a short answer ("all shards are ready"): read, so the server finishes cleanly
    except (OSError, http.client.HTTPException) as error:
        return CheckStatus.DOWN, type(error).__name__
    finally:
        connection.close()
    if status == 200:
        return CheckStatus.OK, "qdrant ready"
    return CheckStatus.DOWN, f"qdrant answered HTTP {status} to /readyz"


_CHECKS: dict[str, Callable[[Resource, Timeouts], tuple[CheckStatus, str]]] = {
    "dynamodb_table": _check_table,
    "sqs_queue": _check_queue,
    "sqs_dlq": _check_queue,
    "knowledge_store": _check_knowledge_store,
}


def _run_one(resource: Resource, timeouts: Timeouts) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.perf_counter()
    try:
        status, detail = _CHECKS[resource.kind](resource, timeouts)
    except ClientError as error:
        status, detail = CheckStatus.DOWN, error.response.get("Error", {}).get("Code", "ClientError")
    except BotoCoreError as error:
        status, detail = CheckStatus.DOWN, type(error).__name__
    return _result(resource, status, detail, started)


def _result(resource: Resource, status: CheckStatus, detail: str, started: float) -> CheckResult:
    return {
        "name": resource.variable,
        "kind": resource.kind,
        "resource": _shown(resource),
        "status": status.value,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "detail": detail,
    }


def _shown(resource: Resource) -> str:
    """What a report names: a table's or queue's name; the knowledge store's host and port only."""
    if resource.kind == "knowledge_store":
        parts = urlsplit(resource.identifier)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "qdrant"
    return resource.identifier.rsplit("/", 1)[-1]


def check_readiness(resources: list[Resource], *, timeout: float) -> Readiness:
    """Run every check concurrently; one that has not answered within ``timeout`` s is down."""
    timeouts = Timeouts(connect=timeout, read=timeout)
    results: list[CheckResult] = []
    if resources:
        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=min(8, len(resources)), thread_name_prefix="ready")
        futures = [(resource, pool.submit(_run_one, resource, timeouts)) for resource in resources]
        for resource, future in futures:
            remaining = max(0.0, timeout - (time.perf_counter() - started))
            try:
                results.append(future.result(timeout=remaining))
            except FutureTimeout:
                results.append(_result(resource, CheckStatus.DOWN, f"no answer within {timeout}s", started))
        pool.shutdown(wait=False, cancel_futures=True)
    worst = max((CheckStatus(r["status"]) for r in results), key=_SEVERITY.__getitem__, default=CheckStatus.OK)
    return {"status": worst.value, "checks": results}


class ReadinessSummary(TypedDict):
    status: str


def summary(report: Readiness) -> ReadinessSummary:
    """What an anonymous caller may see of a report: the overall status only."""
    return {"status": report["status"]}


_cache_lock = threading.Lock()
_cache: dict[tuple[tuple[Resource, ...], float], tuple[float, Readiness]] = {}


def cached_readiness(resources: list[Resource], *, timeout: float, max_age: float = READINESS_CACHE_SECONDS,
                     clock: Callable[[], float] = time.monotonic) -> Readiness:
    """:func:`check_readiness`, reusing a report at most ``max_age`` seconds old for the same
    resources. The lock makes concurrent callers wait for one run rather than start their own."""
    key = (tuple(resources), timeout)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and clock() - cached[0] < max_age:
            return cached[1]
        report = check_readiness(resources, timeout=timeout)
        _cache.clear()  # one entry: the resources of a process do not change
        _cache[key] = (clock(), report)
        return report


def clear_cache() -> None:
    """Forget the cached report (tests)."""
    with _cache_lock:
        _cache.clear()
