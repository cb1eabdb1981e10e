"""The local Qdrant bridge, driven only through qdrant-client's REST transport, as the functions do.

The bridge holds qdrant-client's embedded store (one process per folder) and serves it over
Qdrant's REST API, so several processes can use one persisted knowledge base: collections, payload
indexes, named dense + sparse vectors, filtered and hybrid (RRF) queries, groups, scroll, count,
deletes, persistence across a restart, and a second process working next to this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.common.version_check import get_server_version, is_compatible
from qdrant_client.http.exceptions import UnexpectedResponse

from insightmesh_local.qdrant_bridge import BridgeError, QdrantBridge, qdrant_client_version
from insightmesh_local.runtime import LocalRuntime

pytestmark = pytest.mark.timeout(120)
COLLECTION = "knowledge"
DIMS = 8


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "qdrant"


@pytest.fixture
def bridge(folder):
    running = QdrantBridge(folder).start()
    yield running
    running.stop()


def connect(bridge: QdrantBridge) -> QdrantClient:
    # The version check runs in a background thread that may outlive a short test's bridge; it is
    # exercised on its own in test_root_answers_a_version_the_client_accepts.
    return QdrantClient(url=bridge.url, prefer_grpc=False, timeout=10, check_compatibility=False)


def ensure_collection(client: QdrantClient) -> None:
    """What the knowledge store does on every cold start: create once, then leave it alone."""
    if client.collection_exists(COLLECTION):
        return
    client.create_collection(
        COLLECTION,
        vectors_config={"dense": models.VectorParams(size=DIMS, distance=models.Distance.COSINE)},
        sparse_vectors_config={"sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    client.create_payload_index(COLLECTION, "acl", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(COLLECTION, "document_id", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(COLLECTION, "modified_time", models.PayloadSchemaType.DATETIME)


def unit(index: int) -> list[float]:
    return [1.0 if position == index % DIMS else 0.0 for position in range(DIMS)]


def point(point_id: int, document: str, chunk: int, acl: list[str], terms: dict[int, float], *,
          day: int = 1) -> models.PointStruct:
    return models.PointStruct(
        id=point_id,
        vector={"dense": unit(point_id),
                "sparse": models.SparseVector(indices=list(terms), values=list(terms.values()))},
        payload={"document_id": document, "chunk_index": chunk, "acl": acl, "title": f"{document}.md",
                 "modified_time": f"2026-03-{day:02d}T10:00:00+00:00"},
    )


def corpus() -> list[models.PointStruct]:
    return [
        point(1, "refunds", 0, ["anyone"], {11: 1.0, 12: 0.5}, day=1),
        point(2, "refunds", 1, ["anyone"], {11: 0.8, 13: 0.4}, day=1),
        point(3, "salaries", 0, ["group:hr@example.com"], {11: 1.0, 14: 1.0}, day=2),
        point(4, "travel", 0, ["domain:example.com"], {15: 1.0}, day=3),
        point(5, "travel", 1, ["domain:example.com"], {15: 0.7, 16: 0.3}, day=3),
        point(6, "roadmap", 0, ["user:alice@example.com"], {17: 1.0}, day=4),
    ]


def test_root_answers_a_version_the_client_accepts(bridge):
    info = httpx.get(bridge.url + "/", timeout=5).json()
    assert info["version"] == qdrant_client_version()
    server_version = get_server_version(bridge.url, {}, None, 5)
    assert is_compatible(qdrant_client_version(), server_version)
    assert httpx.get(bridge.url + "/readyz", timeout=5).status_code == 200


def test_collection_is_created_once_with_named_dense_and_sparse_vectors(bridge):
    client = connect(bridge)
    assert not client.collection_exists(COLLECTION)
    ensure_collection(client)
    ensure_collection(client)  # idempotent: exists, nothing done
    assert client.collection_exists(COLLECTION)
    info = client.get_collection(COLLECTION)
    assert info.config.params.vectors["dense"].size == DIMS
    assert info.config.params.vectors["dense"].distance == models.Distance.COSINE
    assert info.config.params.sparse_vectors["sparse"].modifier == models.Modifier.IDF
    with pytest.raises(UnexpectedResponse) as duplicate:
        client.create_collection(COLLECTION, vectors_config={"dense": models.VectorParams(
            size=DIMS, distance=models.Distance.COSINE)})
    assert duplicate.value.status_code == 409 and "already exists" in duplicate.value.content.decode()
    assert [c.name for c in client.get_collections().collections] == [COLLECTION]
    assert client.delete_collection(COLLECTION) is True
    assert not client.collection_exists(COLLECTION)


def test_upsert_filter_hybrid_query_groups_scroll_count_and_delete(bridge):
    client = connect(bridge)
    ensure_collection(client)
    assert client.upsert(COLLECTION, corpus()).status == models.UpdateStatus.COMPLETED

    # A viewer's principals against the keyword-indexed acl list (MatchAny), inside the query.
    viewer = models.Filter(must=[models.FieldCondition(
        key="acl", match=models.MatchAny(any=["anyone", "domain:example.com", "user:bob@example.com"]))])
    hits = client.query_points(COLLECTION, query=unit(3), using="dense", query_filter=viewer, limit=10).points
    assert {hit.id for hit in hits} == {1, 2, 4, 5}  # not 3 (HR group), not 6 (alice)
    assert all(hit.payload["document_id"] in ("refunds", "travel") for hit in hits)

    # Hybrid: dense and sparse candidates fused with reciprocal rank fusion.
    fused = client.query_points(
        COLLECTION,
        prefetch=[models.Prefetch(query=unit(1), using="dense", limit=5, filter=viewer),
                  models.Prefetch(query=models.SparseVector(indices=[11], values=[1.0]), using="sparse", limit=5,
                                  filter=viewer)],
        query=models.FusionQuery(fusion=models.Fusion.RRF), limit=3, with_payload=True,
    ).points
    assert fused[0].id == 1  # first in both lists
    assert {hit.id for hit in fused} <= {1, 2, 4, 5}

    # Best chunks per document.
    groups = client.query_points_groups(COLLECTION, group_by="document_id", query=models.SparseVector(
        indices=[11, 15], values=[1.0, 1.0]), using="sparse", query_filter=viewer, group_size=1, limit=5).groups
    assert {group.id for group in groups} == {"refunds", "travel"}
    assert all(len(group.hits) == 1 for group in groups)
    two = client.query_points_groups(COLLECTION, group_by="document_id", query=unit(1), using="dense",
                                     group_size=2, limit=1).groups
    assert len(two) == 1 and len(two[0].hits) <= 2

    # Datetime-indexed payload in a range filter.
    recent = client.count(COLLECTION, count_filter=models.Filter(must=[models.FieldCondition(
        key="modified_time", range=models.DatetimeRange(gte=datetime(2026, 3, 3, tzinfo=UTC)))]))
    assert recent.count == 3

    # Scroll pages through everything, by id.
    first, offset = client.scroll(COLLECTION, limit=4, with_payload=["document_id"])
    rest, end = client.scroll(COLLECTION, limit=4, offset=offset)
    assert [record.id for record in first + rest] == [1, 2, 3, 4, 5, 6] and end is None
    assert set(first[0].payload) == {"document_id"}

    assert client.count(COLLECTION).count == 6
    client.delete(COLLECTION, models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(
        key="document_id", match=models.MatchValue(value="travel"))])))
    assert client.count(COLLECTION).count == 4
    client.delete(COLLECTION, models.PointIdsList(points=[1, 6]))
    assert sorted(record.id for record in client.scroll(COLLECTION, limit=10)[0]) == [2, 3]
    assert [record.id for record in client.retrieve(COLLECTION, [2, 99])] == [2]


def test_the_store_persists_across_a_bridge_restart(folder):
    first = QdrantBridge(folder).start()
    try:
        client = connect(first)
        ensure_collection(client)
        client.upsert(COLLECTION, corpus())
    finally:
        first.stop()
    second = QdrantBridge(folder).start()
    try:
        client = connect(second)
        assert client.collection_exists(COLLECTION)
        assert client.count(COLLECTION).count == 6
        hits = client.query_points(COLLECTION, query=models.SparseVector(indices=[17], values=[1.0]),
                                   using="sparse", limit=1).points
        assert hits[0].payload["document_id"] == "roadmap"
    finally:
        second.stop()


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    from qdrant_client import QdrantClient, models

    url, folder = sys.argv[1], sys.argv[2]
    try:
        QdrantClient(path=folder)
        direct = "opened"
    except RuntimeError as error:
        direct = str(error)
    client = QdrantClient(url=url, prefer_grpc=False, timeout=10, check_compatibility=False)
    for start in range(1000, 1100, 10):
        client.upsert("knowledge", [models.PointStruct(id=i, vector={"dense": [1.0] + [0.0] * 7},
                                                       payload={"document_id": "second", "acl": ["anyone"]})
                                    for i in range(start, start + 10)])
        client.query_points("knowledge", query=[1.0] + [0.0] * 7, using="dense", limit=3)
    mine = client.count("knowledge", count_filter=models.Filter(must=[models.FieldCondition(
        key="document_id", match=models.MatchValue(value="second"))])).count
    print(json.dumps({"direct": direct, "mine": mine}))
""")


def test_a_second_process_uses_the_store_through_the_bridge_while_this_one_holds_it(bridge, folder):
    client = connect(bridge)
    ensure_collection(client)
    with pytest.raises(BridgeError, match="another process"):
        QdrantBridge(folder).start()  # the folder is locked: a second opener is refused

    other = subprocess.Popen([sys.executable, "-c", SECOND_PROCESS, bridge.url, str(folder)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[Exception] = []

    def write(start: int) -> None:
        try:
            local = connect(bridge)
            for first in range(start, start + 100, 10):
                local.upsert(COLLECTION, [models.PointStruct(id=i, vector={"dense": unit(i)},
                                                             payload={"document_id": "first", "acl": ["anyone"]})
                                          for i in range(first, first + 10)])
                local.query_points(COLLECTION, query=unit(start), using="dense", limit=3)
        except Exception as error:  # noqa: BLE001 - re-raised below, in the test's own thread
            errors.append(error)

    writers = [threading.Thread(target=write, args=(start,)) for start in (1, 2001)]
    for writer in writers:
        writer.start()
    out, err = other.communicate(timeout=60)
    for writer in writers:
        writer.join(timeout=60)
    assert not errors, errors
    assert other.returncode == 0, err
    report = json.loads(out)
    assert "already accessed by another instance" in report["direct"]  # the lock the bridge exists for
    assert report["mine"] == 100
    assert client.count(COLLECTION).count == 300


def test_errors_come_back_in_qdrants_envelope(bridge):
    client = connect(bridge)
    with pytest.raises(UnexpectedResponse) as missing:
        client.get_collection("nope")
    assert missing.value.status_code == 404
    assert "nope" in json.loads(missing.value.content)["status"]["error"]
    bad = httpx.put(f"{bridge.url}/collections/{COLLECTION}/points", json={"points": "not a list"}, timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()["status"]
    unknown = httpx.post(f"{bridge.url}/collections/{COLLECTION}/points/recommend", json={}, timeout=5)
    assert unknown.status_code == 404 and "not forwarded" in unknown.json()["status"]["error"]


# -- insightmesh dev's wiring --------------------------------------------------------------------------

def test_a_foreign_host_or_origin_is_refused(bridge):
    # DNS rebinding: a page on a name that resolves to 127.0.0.1 must not read or wipe the knowledge base.
    ensure_collection(connect(bridge))
    rebinding = httpx.delete(f"{bridge.url}/collections/{COLLECTION}", headers={"Host": "evil.example"}, timeout=5)
    assert rebinding.status_code == 403 and "error" in rebinding.json()["status"]
    page = httpx.get(f"{bridge.url}/collections", headers={"Origin": "https://evil.example"}, timeout=5)
    assert page.status_code == 403
    assert connect(bridge).collection_exists(COLLECTION)  # the functions' own client (loopback Host) still works
    assert httpx.get(f"{bridge.url}/readyz", headers={"Host": "localhost"}, timeout=5).status_code == 200


def _template() -> SimpleNamespace:
    return SimpleNamespace(parameters={"QdrantUrl": {"Type": "String", "Default": ""}})


def test_dev_serves_the_store_in_its_data_dir_unless_qdrant_url_is_given(tmp_path):
    logs: list[str] = []
    runtime = LocalRuntime(data_dir=tmp_path / "data", log=logs.append)
    parameters: dict[str, str] = {}
    runtime.start_knowledge_base(_template(), parameters)
    try:
        assert parameters["QdrantUrl"] == runtime.qdrant_bridge.url
        assert any(str(tmp_path / "data" / "qdrant") in line for line in logs)
        client = QdrantClient(url=parameters["QdrantUrl"], prefer_grpc=False, check_compatibility=False)
        ensure_collection(client)

        # A second `insightmesh dev` on the same folder stops with a clear message ...
        with pytest.raises(BridgeError, match="--data-dir"):
            LocalRuntime(data_dir=tmp_path / "data", log=logs.append).start_knowledge_base(_template(), {})
        # ... while `insightmesh invoke` falls back to an empty in-memory store.
        invoke = LocalRuntime(data_dir=tmp_path / "data", log=logs.append)
        invoke_parameters: dict[str, str] = {}
        invoke.start_knowledge_base(_template(), invoke_parameters, required=False)
        try:
            in_memory = QdrantClient(url=invoke_parameters["QdrantUrl"], check_compatibility=False)
            assert not in_memory.collection_exists(COLLECTION)
        finally:
            invoke.qdrant_bridge.stop()
    finally:
        runtime.stop()
    assert runtime.qdrant_bridge is None

    given = LocalRuntime(data_dir=tmp_path / "other", log=logs.append)
    parameters = {"QdrantUrl": "http://qdrant.internal:6333"}
    given.start_knowledge_base(_template(), parameters)
    assert given.qdrant_bridge is None and parameters["QdrantUrl"] == "http://qdrant.internal:6333"
    assert not (tmp_path / "other").exists()
