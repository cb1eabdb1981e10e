"""The vector store: one Qdrant collection of chunks, through qdrant-client.

**Where.** ``QDRANT_URL`` set: a Qdrant server or cluster over REST (``prefer_grpc=False``; with
``QDRANT_API_KEY`` when one is configured) — what AWS uses, required in production, and what
``insightmesh dev`` uses through its REST bridge. Unset: qdrant-client's embedded mode, persisted
under ``QDRANT_PATH`` (``.insightmesh/qdrant``; ``:memory:`` for none). Only the high-level
client API is used, so both modes behave the same.

**The collection** (``QDRANT_COLLECTION``) is created on first use, idempotently (a concurrent
creator winning the race is fine), with *named* vectors:

* ``"sparse"`` — always: hashed BM25 term weights with ``modifier=IDF`` (see
  ``insightmesh.knowledge.sparse``: Qdrant supplies the IDF, so the dot product is BM25);
* ``"dense"`` — only when an embedding provider is configured: its size, cosine distance.

and keyword payload indexes on ``source``, ``document_id``, ``mime_type`` and ``acl`` and a
datetime index on ``modified_time`` (the embedded mode ignores payload indexes; a server needs them
to filter fast). An existing collection whose dense vector does not match the configured provider
is refused with a message naming the variables, rather than silently mixing embeddings.

**Points** are chunks: id ``uuid5(NAMESPACE, "<document_id>#<index>")`` (deterministic, so
re-ingesting a document overwrites its points), vectors as above, and the payload
:class:`ChunkPayload` — the chunk's text with its document's id, source, title, URL, MIME type,
modification time and ``acl`` (the principals allowed to see it, see ``knowledge.base``).

**Queries** filter inside Qdrant — ``acl`` ``MatchAny`` of the viewer's principals — and group
inside Qdrant (``query_points_groups``, ``group_by="document_id"``, ``group_size`` = the
per-document cap), so that neither access control nor diversity depends on fetching "enough"
candidates first. With a dense vector the query prefetches dense and sparse candidates (each under
the same ACL filter) and fuses them with reciprocal rank fusion (``FusionQuery(fusion=RRF)``).

**Failures.** A remote call that fails transiently (connection, timeout, 429, 5xx) is retried with
backoff (3 attempts; upserts and deletes are idempotent by construction) behind the ``qdrant``
circuit breaker; what still fails raises :class:`KnowledgeStoreError`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NotRequired, TypedDict, TypeVar

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from insightmesh.knowledge.settings import (
    IN_MEMORY,
    KnowledgeConfigurationError,
    KnowledgeSettings,
    load_knowledge_settings,
    optional_secret,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    breaker_for,
    call_with_resilience,
    parse_retry_after,
)

T = TypeVar("T")

DENSE: Final = "dense"
SPARSE: Final = "sparse"
KEYWORD_FIELDS: Final = ("source", "document_id", "mime_type", "acl")
DATETIME_FIELDS: Final = ("modified_time",)
UPSERT_BATCH: Final = 128
DELETE_BATCH: Final = 256


class KnowledgeStoreError(RuntimeError):
    """Qdrant could not do what was asked (unreachable, refused, or its circuit is open)."""


class ChunkPayload(TypedDict):
    """The payload of every point."""

    document_id: str
    source: str
    title: str
    url: str | None
    mime_type: str
    acl: list[str]
    chunk_index: int
    heading: str | None
    text: str
    modified_time: NotRequired[str]  # RFC 3339, when the source knows it (indexed as a datetime)


@dataclass(frozen=True)
class ChunkPoint:
    """One point to upsert."""

    id: str
    payload: ChunkPayload
    sparse: tuple[list[int], list[float]]
    dense: list[float] | None = None


@dataclass(frozen=True)
class ScoredChunk:
    id: str
    score: float
    payload: ChunkPayload


def _acl_filter(principal_sets: Sequence[Sequence[str]]) -> models.Filter:
    """A chunk matches when its ``acl`` holds one principal of **each** set (one set per reader)."""
    return models.Filter(must=[models.FieldCondition(key="acl", match=models.MatchAny(any=list(principals)))
                               for principals in principal_sets])


def _document_filter(document_ids: Sequence[str], *, from_index: int | None = None) -> models.Filter:
    match: models.MatchValue | models.MatchAny = (
        models.MatchValue(value=document_ids[0]) if len(document_ids) == 1 else models.MatchAny(any=list(document_ids))
    )
    must: list[models.Condition] = [models.FieldCondition(key="document_id", match=match)]
    if from_index is not None:
        must.append(models.FieldCondition(key="chunk_index", range=models.Range(gte=from_index)))
    return models.Filter(must=must)


def _sparse(vector: tuple[list[int], list[float]]) -> models.SparseVector:
    return models.SparseVector(indices=vector[0], values=vector[1])


def _payload(raw: dict[str, object] | None) -> ChunkPayload:
    payload = raw or {}

    def text(key: str) -> str:
        value = payload.get(key)
        return value if isinstance(value, str) else ""

    def optional(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    acl = payload.get("acl")
    index = payload.get("chunk_index")
    result = ChunkPayload(
        document_id=text("document_id"), source=text("source"), title=text("title"), url=optional("url"),
        mime_type=text("mime_type"), acl=[str(item) for item in acl] if isinstance(acl, list) else [],
        chunk_index=index if isinstance(index, int) else 0, heading=optional("heading"), text=text("text"),
    )
    modified = optional("modified_time")
    if modified is not None:
        result["modified_time"] = modified
    return result


class KnowledgeStore:
    """The chunk collection (see the module docstring). ``dense_size`` None: sparse only."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        dense_size: int | None = None,
        remote: bool = False,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.dense_size = dense_size
        self.remote = remote
        # A refusal (4xx, raised as KnowledgeStoreError) proves Qdrant is up: not a breaker failure.
        self.breaker = breaker or breaker_for("qdrant", failure_threshold=5, cool_down=15.0,
                                              answered=(KnowledgeStoreError,))
        self.retry = retry or RetryPolicy(attempts=3 if remote else 1, base_delay=0.3, max_delay=3.0,
                                          max_retry_after=10.0)
        self._ensured = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KnowledgeStore(collection={self.collection!r}, dense_size={self.dense_size}, remote={self.remote})"

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` behind the breaker and retry policy, in KnowledgeStoreError."""

        def attempt() -> T:
            try:
                return fn()
            except UnexpectedResponse as error:
                status = error.status_code or 0
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(error.headers.get("retry-after") if error.headers else None)
                    raise RetryableError(f"qdrant answered HTTP {status} to {what}", retry_after=retry_after) from error
                raise KnowledgeStoreError(f"qdrant refused {what}: HTTP {status} {_reason(error)}") from error
            except ResponseHandlingException as error:
                raise RetryableError(f"qdrant unreachable during {what} ({type(error.source).__name__})") from error

        try:
            return call_with_resilience(self.breaker, attempt, retry=self.retry)
        except CircuitOpenError as error:
            raise KnowledgeStoreError(f"qdrant circuit is open ({what} not attempted)") from error
        except RetryableError as error:
            raise KnowledgeStoreError(str(error)) from error

    # -- the collection ---------------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection and its payload indexes unless they exist (idempotent)."""
        with self._lock:
            if self._ensured:
                return
            if not self._call("collection_exists", lambda: self.client.collection_exists(self.collection)):
                self._create()
            info = self._call("get_collection", lambda: self.client.get_collection(self.collection))
            self._check_dense(info.config.params.vectors)
            existing = set(info.payload_schema or {})
            wanted = [(name, models.PayloadSchemaType.KEYWORD) for name in KEYWORD_FIELDS]
            wanted += [(name, models.PayloadSchemaType.DATETIME) for name in DATETIME_FIELDS]
            with warnings.catch_warnings():
                # The embedded mode warns that it ignores payload indexes: known, and harmless there.
                warnings.filterwarnings("ignore", message=".*[Pp]ayload indexes have no effect.*")
                for name, schema in wanted:
                    if name not in existing:
                        self._create_index(name, schema)
            self._ensured = True

    def _create_index(self, name: str, schema: models.PayloadSchemaType) -> None:
        self._call(f"create_payload_index {name}", lambda: self.client.create_payload_index(
            self.collection, field_name=name, field_schema=schema, wait=True))

    def _create(self) -> None:
        vectors: dict[str, models.VectorParams] = {}
        if self.dense_size:
            vectors[DENSE] = models.VectorParams(size=self.dense_size, distance=models.Distance.COSINE)
        try:
            self._call("create_collection", lambda: self.client.create_collection(
                self.collection,
                vectors_config=vectors,
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            ))
        except KnowledgeStoreError:
            # Refused: most likely another process created it first (409), which is what we wanted.
            if not self._call("collection_exists", lambda: self.client.collection_exists(self.collection)):
                raise
            return
        get_logger().info("knowledge collection created",
                          extra={"collection": self.collection, "dense_size": self.dense_size})

    def _check_dense(self, vectors: object) -> None:
        existing = vectors.get(DENSE) if isinstance(vectors, dict) else None
        size = existing.size if isinstance(existing, models.VectorParams) else None
        if self.dense_size and size != self.dense_size:
            found = f"a {size}-dimensional dense vector" if size else "no dense vector"
            raise KnowledgeConfigurationError(
                f"QDRANT_COLLECTION: collection {self.collection!r} has {found}, but the embedding provider "
                f"produces {self.dense_size} dimensions (EMBEDDING_PROVIDER/EMBEDDING_MODEL/EMBEDDING_DIMENSIONS); "
                "use a new collection name and re-ingest"
            )
        if size and not self.dense_size:
            get_logger().warning("knowledge collection has dense vectors but no embedding provider is configured; "
                                 "searching sparse vectors only", extra={"collection": self.collection})

    # -- writes -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[ChunkPoint]) -> int:
        """Write ``points`` (in batches, waiting for each); returns how many."""
        self.ensure_collection()
        for start in range(0, len(points), UPSERT_BATCH):
            self._upsert_batch([self._point(point) for point in points[start:start + UPSERT_BATCH]])
        return len(points)

    def _upsert_batch(self, batch: list[models.PointStruct]) -> None:
        self._call("upsert", lambda: self.client.upsert(self.collection, points=batch, wait=True))

    def _point(self, point: ChunkPoint) -> models.PointStruct:
        vector: dict[str, list[float] | models.SparseVector] = {SPARSE: _sparse(point.sparse)}
        if point.dense is not None and self.dense_size:
            vector[DENSE] = point.dense
        return models.PointStruct(id=point.id, vector=vector, payload=dict(point.payload))

    def delete_document(self, document_id: str) -> None:
        """Delete every chunk of ``document_id``."""
        self.delete_documents([document_id])

    def delete_documents(self, document_ids: Iterable[str]) -> None:
        """Delete every chunk of these documents (a filter per batch of ids)."""
        self.ensure_collection()
        ids = list(dict.fromkeys(document_ids))
        for start in range(0, len(ids), DELETE_BATCH):
            self._delete(_document_filter(ids[start:start + DELETE_BATCH]))

    def delete_chunks_from(self, document_id: str, first_index: int) -> None:
        """Delete the chunks of ``document_id`` whose index is ``first_index`` or more (what a
        shorter new version of the document no longer has)."""
        self.ensure_collection()
        self._delete(_document_filter([document_id], from_index=first_index))

    def _delete(self, points_filter: models.Filter) -> None:
        selector = models.FilterSelector(filter=points_filter)
        self._call("delete", lambda: self.client.delete(self.collection, points_selector=selector, wait=True))

    # -- reads ------------------------------------------------------------------------------

    def query(
        self,
        *,
        principals: Sequence[str] = (),
        readers: Sequence[Sequence[str]] = (),
        sparse: tuple[list[int], list[float]] | None,
        dense: list[float] | None = None,
        groups: int = 5,
        group_size: int = 2,
        score_threshold: float | None = None,
        candidates: int | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        """The best chunks visible to ``principals`` (one viewer) or to every one of ``readers``
        (one principal list per reader: a chunk must match each): at most ``groups`` documents, at
        most ``group_size`` chunks each, best first. Hybrid (RRF) when both vectors are given and
        the collection has dense vectors; ``candidates`` is each prefetch's depth. ``sources``:
        only chunks of documents ingested from one of these sources (a channel's settings), in
        the same filter as the ACL (``source`` is a keyword index)."""
        self.ensure_collection()
        principal_sets = [list(principals)] if principals else [list(each) for each in readers]
        if not principal_sets or not all(principal_sets) or (sources is not None and not sources):
            return []
        acl = _acl_filter(principal_sets)
        if sources is not None:
            acl = models.Filter(must=[*(acl.must or []),
                                      models.FieldCondition(key="source", match=models.MatchAny(any=list(sources)))])
        has_sparse = sparse is not None and bool(sparse[0])
        use_dense = dense is not None and bool(self.dense_size)
        depth = candidates or min(max(groups * group_size * 10, 50), 500)
        query: models.SparseVector | list[float] | models.FusionQuery
        prefetch: list[models.Prefetch] | None = None
        using: str | None = None
        if has_sparse and use_dense:
            assert sparse is not None and dense is not None
            prefetch = [
                models.Prefetch(query=dense, using=DENSE, filter=acl, limit=depth),
                models.Prefetch(query=_sparse(sparse), using=SPARSE, filter=acl, limit=depth),
            ]
            query = models.FusionQuery(fusion=models.Fusion.RRF)
        elif has_sparse:
            assert sparse is not None
            query, using = _sparse(sparse), SPARSE
        elif use_dense:
            assert dense is not None
            query, using = dense, DENSE
        else:
            return []
        result = self._call("query", lambda: self.client.query_points_groups(
            self.collection,
            group_by="document_id",
            query=query,
            using=using,
            prefetch=prefetch,
            query_filter=acl,
            limit=groups,
            group_size=group_size,
            score_threshold=score_threshold,
            with_payload=True,
            with_vectors=False,
        ))
        hits = [ScoredChunk(id=str(hit.id), score=float(hit.score), payload=_payload(hit.payload))
                for group in result.groups for hit in group.hits]
        hits.sort(key=lambda hit: (-hit.score, hit.payload["document_id"], hit.payload["chunk_index"]))
        return hits

    def count(self, document_id: str | None = None) -> int:
        """Points in the collection (of one document when given); exact."""
        self.ensure_collection()
        query_filter = _document_filter([document_id]) if document_id is not None else None
        return self._call("count", lambda: self.client.count(self.collection, count_filter=query_filter,
                                                              exact=True)).count

    def close(self) -> None:
        self.client.close()


def _reason(error: UnexpectedResponse) -> str:
    try:
        content = error.content.decode("utf-8", "replace")
    except AttributeError:
        return ""
    return content[:200]


# -- the process-wide store -----------------------------------------------------------------------


def open_client(settings: KnowledgeSettings) -> tuple[QdrantClient, bool]:
    """The qdrant-client ``settings`` describe, and whether it is remote."""
    if settings.QDRANT_URL:
        return QdrantClient(
            url=settings.QDRANT_URL,
            api_key=optional_secret("QDRANT_API_KEY"),
            prefer_grpc=False,
            timeout=max(1, round(settings.QDRANT_TIMEOUT_SECONDS)),
            check_compatibility=False,  # no version round trip at cold start; the REST API is stable
        ), True
    if settings.QDRANT_PATH == IN_MEMORY:
        return QdrantClient(location=IN_MEMORY), False
    path = Path(settings.QDRANT_PATH).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(path)), False
    except OSError as error:
        raise KnowledgeConfigurationError(
            f"QDRANT_PATH: cannot use {str(path)!r} for the embedded store ({error}); set QDRANT_URL to a Qdrant "
            "server, or QDRANT_PATH to a writable folder"
        ) from error
    except RuntimeError as error:  # qdrant-client: the folder is locked by another process
        raise KnowledgeConfigurationError(
            f"QDRANT_PATH: the embedded store in {str(path)!r} is open in another process (only one may open "
            f"it: point QDRANT_URL at the process that serves it, e.g. `insightmesh dev`'s bridge): {error}"
        ) from error


def build_store(settings: KnowledgeSettings) -> KnowledgeStore:
    from insightmesh.knowledge.embedders import get_embedder

    embedder = get_embedder()
    client, remote = open_client(settings)
    return KnowledgeStore(client, settings.QDRANT_COLLECTION,
                          dense_size=embedder.dimensions() if embedder is not None else None, remote=remote)


_store: KnowledgeStore | None = None
_store_lock = threading.Lock()


def get_store() -> KnowledgeStore:
    """The process's store, created from the environment on first use (the collection is created
    on the first read or write)."""
    global _store
    with _store_lock:
        if _store is None:
            _store = build_store(load_knowledge_settings())
        return _store


def reset_for_tests() -> None:
    """Close and forget the process's store and embedder (the next call reads the environment)."""
    global _store
    from insightmesh.knowledge.embedders import get_embedder

    with _store_lock:
        store, _store = _store, None
    if store is not None:
        store.close()
    get_embedder.cache_clear()
