"""The store's resilience around qdrant-client's REST errors (insightmesh.knowledge.store) — no network."""

from __future__ import annotations

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from insightmesh.knowledge.store import KnowledgeStore, KnowledgeStoreError
from insightmesh.resilience import BreakerState, CircuitBreaker, RetryPolicy


def unexpected(status: int, retry_after: str | None = None) -> UnexpectedResponse:
    headers = httpx.Headers({"retry-after": retry_after} if retry_after else {})
    return UnexpectedResponse(status_code=status, reason_phrase="x", content=b'{"status":{"error":"nope"}}',
                              headers=headers)


@pytest.fixture
def store() -> KnowledgeStore:
    client = QdrantClient(location=":memory:")
    sleeps: list[float] = []
    knowledge = KnowledgeStore(client, "c", remote=True,
                               breaker=CircuitBreaker("qdrant-test", failure_threshold=3, cool_down=60,
                                                      answered=(KnowledgeStoreError,)),
                               retry=RetryPolicy(attempts=3, sleep=sleeps.append))
    knowledge.sleeps = sleeps  # type: ignore[attr-defined]
    return knowledge


def scripted(*outcomes):
    remaining = list(outcomes)

    def call():
        outcome = remaining.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return call


def test_transient_errors_are_retried_honouring_retry_after(store):
    assert store._call("query", scripted(unexpected(503, "2"), unexpected(429), "ok")) == "ok"
    assert store.sleeps[0] == 2.0 and len(store.sleeps) == 2


def test_a_refusal_is_not_retried_and_not_a_breaker_failure(store):
    for _ in range(3):
        with pytest.raises(KnowledgeStoreError, match="refused upsert: HTTP 400"):
            store._call("upsert", scripted(unexpected(400)))
    assert store.sleeps == [] and store.breaker.state is BreakerState.CLOSED


def test_unreachable_qdrant_exhausts_retries_then_opens_the_circuit(store):
    down = ResponseHandlingException(httpx.ConnectError("refused"))
    with pytest.raises(KnowledgeStoreError, match="unreachable during count"):
        store._call("count", scripted(down, down, down))
    assert store.breaker.state is BreakerState.OPEN
    with pytest.raises(KnowledgeStoreError, match="circuit is open"):
        store._call("count", scripted("never called"))
