"""Readiness of the knowledge store (insightmesh.health.checks): Qdrant's ``GET /readyz`` over real
HTTP on loopback — the local Qdrant bridge (qdrant-client's engine behind Qdrant's REST API), a
stand-in that answers 503 and records the ``api-key`` header, and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from insightmesh.health.checks import CheckStatus, Resource, check_readiness, declared_resources
from insightmesh_local.qdrant_bridge import QdrantBridge
from tests.standins.http import JsonHandler, ThreadedServer

pytestmark = pytest.mark.timeout(60)


class _NotReady(JsonHandler):
    seen_keys: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen_keys.append(self.headers.get("api-key"))
        self._send(503 if self.path == "/readyz" else 404, b"some shards are not ready",
                   headers={"Content-Type": "text/plain"})


@pytest.fixture
def not_ready() -> Iterator[str]:
    _NotReady.seen_keys = []
    with ThreadedServer(("127.0.0.1", 0), _NotReady) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def store(url: str) -> Resource:
    return Resource("QDRANT_URL", "knowledge_store", url)


def only(report: Any) -> Any:
    assert len(report["checks"]) == 1, report
    return report["checks"][0]


def test_qdrant_url_is_declared_as_the_knowledge_store_and_an_empty_one_is_not() -> None:
    found = declared_resources({"QDRANT_URL": "https://qdrant.example.com:6333", "AGENTS_TABLE": "agents",
                                "QDRANT_COLLECTION": "insightmesh-knowledge"})
    assert Resource("QDRANT_URL", "knowledge_store", "https://qdrant.example.com:6333") in found
    assert [resource.kind for resource in found] == ["dynamodb_table", "knowledge_store"]
    assert declared_resources({"QDRANT_URL": "", "AGENTS_TABLE": "agents"}) == [
        Resource("AGENTS_TABLE", "dynamodb_table", "agents")]


def test_a_ready_qdrant_is_ok_and_named_by_host_and_port_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    bridge = QdrantBridge(None).start()
    try:
        report = check_readiness([store(bridge.url + "/")], timeout=5)
    finally:
        bridge.stop()
    check = only(report)
    assert report["status"] == "ok" and check["status"] == CheckStatus.OK.value, report
    assert check["kind"] == "knowledge_store" and check["name"] == "QDRANT_URL"
    assert check["resource"] == bridge.url.removeprefix("http://")


def test_a_qdrant_that_is_not_ready_is_down_and_gets_the_api_key(monkeypatch: pytest.MonkeyPatch,
                                                                  not_ready: str) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "qdrant-key-for-tests")
    report = check_readiness([store(not_ready)], timeout=5)
    check = only(report)
    assert report["status"] == "down" and check["status"] == "down"
    assert "503" in check["detail"] and "qdrant-key-for-tests" not in check["detail"]
    assert _NotReady.seen_keys == ["qdrant-key-for-tests"]  # once: the check is never retried


def test_an_unreachable_qdrant_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    report = check_readiness([store(f"http://127.0.0.1:{free_port()}")], timeout=2)
    check = only(report)
    assert report["status"] == "down" and check["status"] == "down"
    assert check["detail"] == "ConnectionRefusedError"
