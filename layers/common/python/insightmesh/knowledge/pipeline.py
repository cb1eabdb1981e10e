"""Ingestion: source documents → text → chunks → vectors → Qdrant, with a record per document.

One pipeline serves every source (the ``gdrive_ingest`` job, ``insightmesh ingest`` uploads):
the source produces :class:`SourceDocument` values, :func:`ingest_documents` does the rest.

**Change detection.** ``content_hash`` = sha256 over the content, title, MIME type, ACL and URL,
plus the pipeline's version and the embedder's name (so a change of chunking or of embedding
model re-ingests everything). A document whose record is ``indexed`` with the same hash is
**unchanged**: skipped, nothing written (not even the record). Otherwise it is **new** (no record)
or **changed** (a record, whatever its status): extracted (``knowledge.extract``), chunked
(``knowledge.chunking``), embedded, written.

**Writing a document** upserts its chunks under their deterministic ids
``uuid5(NAMESPACE, "<document_id>#<n>")`` — overwriting the previous version's first chunks in
place, so a search never sees the document missing — then deletes the previous version's surplus
chunks (index ≥ the new count), then saves the record. A crash in between leaves the old hash on
the record: the next run redoes the document. Nothing is written before every vector of the
document exists.

**Batching.** Dense embedding calls carry ``EMBEDDING_BATCH_SIZE`` (64) texts, *across*
documents: chunks wait in a queue until a full batch exists (the last batch of a call takes what
is left), so N small documents cost ``ceil(chunks / 64)`` calls, not N. Documents whose chunks
all have vectors are written together — one upsert per 128 points, one ``BatchWriteItem`` per 25
records — once 25 of them or 256 chunks are ready, and at the end. Memory holds the chunks of the
documents in flight (at most a batch plus the document being read), never more than one
document's bytes: documents are pulled from the iterable one at a time.

**Failures.** A document that fails — unsupported type, corrupt file, the embedding provider
refusing or unavailable — is counted in ``failed`` with its error in ``errors`` and recorded
``failed`` (no hash: the next run retries it); it never raises. When a batch of several documents
is refused (HTTP 4xx), each of them is embedded on its own to find the culprit; when the provider
is unavailable, the documents of that batch fail (and the breaker makes the next batches fail
fast). A failed document's previous chunks are kept only when their ACL is the new one —
otherwise they are deleted, so a failure never leaves content visible to people who lost access.
A *store* failure (Qdrant unreachable after retries) is not a document's fault and would fail
every following document too: it raises :class:`KnowledgeStoreError` and the caller's run fails
(its next run resumes cheaply: unchanged documents are skipped).

**Removal.** :func:`remove_documents` deletes documents' chunks (one filtered delete per batch of
ids) and their records (``BatchWriteItem``). With ``sweep_source``, after the last document, every
document of that source (``Query by-source``) not seen in this call is removed — unless
``should_stop`` fired, since a partial run has not seen everything.

**Reads.** Records of the swept source are read once, by that same ``Query``; any other document's
record is one ``GetItem`` as it arrives (reading ahead to batch those reads would hold several
documents' bytes in memory).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from pynamodb.exceptions import DoesNotExist

from insightmesh.clock import utc_now
from insightmesh.knowledge.base import DocumentOutcome, IngestReport, SourceDocument
from insightmesh.knowledge.chunking import Chunk, chunk_id, chunk_sections
from insightmesh.knowledge.embedders import embedder_name, get_embedder
from insightmesh.knowledge.embedders.base import DenseEmbedder, EmbeddingError, EmbeddingRequestError
from insightmesh.knowledge.extract import ExtractionError, UnsupportedDocumentError, extract_text
from insightmesh.knowledge.models import FAILED, INDEXED, MAX_ERROR_CHARS, KnowledgeDocument
from insightmesh.knowledge.sparse import sparse_vector
from insightmesh.knowledge.store import ChunkPayload, ChunkPoint, KnowledgeStore, KnowledgeStoreError, get_store
from insightmesh.observability import get_logger

__all__ = ["KnowledgeStoreError", "content_hash", "ingest_documents", "remove_documents"]

PIPELINE_VERSION: Final = "1"
RECORD_BATCH: Final = 25  # DynamoDB's BatchWriteItem limit
EMBED_BATCH: Final = 64  # texts per embedding call when the embedder does not say
WRITE_DOCUMENTS: Final = 25  # ready documents written together (one BatchWriteItem of records)...
WRITE_CHUNKS: Final = 256  # ...or as soon as they hold this many chunks


def normalize_acl(acl: Iterable[str]) -> list[str]:
    """Principals stripped, lower-cased, deduplicated and sorted (a source listing them in another
    order next time is not a change)."""
    return sorted({principal.strip().lower() for principal in acl if principal.strip()})


def content_hash(document: SourceDocument, *, acl: list[str], embedder: str) -> str:
    """What decides "unchanged" (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (PIPELINE_VERSION, embedder, document.title, document.mime_type, "\x1f".join(acl), document.url or ""):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    digest.update(document.content)
    return digest.hexdigest()


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _points(pending: _Pending) -> list[ChunkPoint]:
    document = pending.document
    modified = _rfc3339(document.modified_time)
    points = []
    for chunk in pending.chunks:
        payload = ChunkPayload(
            document_id=document.document_id, source=document.source, title=document.title, url=document.url,
            mime_type=document.mime_type, acl=pending.acl, chunk_index=chunk.index, heading=chunk.heading,
            text=chunk.text,
        )
        if modified is not None:
            payload["modified_time"] = modified
        points.append(ChunkPoint(id=chunk_id(document.document_id, chunk.index), payload=payload,
                                 sparse=sparse_vector(chunk.embed_text),
                                 dense=pending.dense[chunk.index] if pending.dense else None))
    return points


@dataclass
class _Pending:
    """A new or changed document between extraction and writing."""

    document: SourceDocument
    acl: list[str]
    digest: str
    record: KnowledgeDocument | None
    chunks: list[Chunk]
    truncated: bool
    dense: list[list[float] | None] = field(default_factory=list)
    error: Exception | None = None

    @property
    def ready(self) -> bool:
        return self.error is not None or all(vector is not None for vector in self.dense)


class _Ingestion:
    """The state of one :func:`ingest_documents` call (see the module docstring's "Batching")."""

    def __init__(self, store: KnowledgeStore, embedder: DenseEmbedder | None, sweep_source: str | None,
                 progress: Callable[[IngestReport], None] | None) -> None:
        self.store = store
        self.embedder = embedder
        self.embedder_name = embedder_name(embedder)
        self.batch_size = getattr(embedder, "batch_size", EMBED_BATCH) if embedder is not None else EMBED_BATCH
        self.progress = progress
        self.report = IngestReport()
        self.seen: set[str] = set()
        self.known: dict[str, KnowledgeDocument] = {}  # records of the swept source, read once
        self.sweep_source = sweep_source
        self.pending: list[_Pending] = []
        self.unembedded: deque[tuple[_Pending, int]] = deque()  # chunks waiting for a dense vector
        self.logger = get_logger()
        if sweep_source is not None:
            self.known = {record.document_id: record for record in KnowledgeDocument.by_source.query(sweep_source)}

    def record_of(self, document: SourceDocument) -> KnowledgeDocument | None:
        if document.source == self.sweep_source:
            return self.known.get(document.document_id)
        try:
            return KnowledgeDocument.get(document.document_id)
        except DoesNotExist:
            return None

    def _progress(self) -> None:
        if self.progress is not None:
            self.progress(self.report)

    # -- reading ------------------------------------------------------------------------------

    def add(self, document: SourceDocument) -> None:
        """Hash, skip if unchanged, else extract and chunk it and queue it for embedding/writing."""
        report = self.report
        report.seen += 1
        self.seen.add(document.document_id)
        acl = normalize_acl(document.acl)
        digest = content_hash(document, acl=acl, embedder=self.embedder_name)
        record = self.record_of(document)
        if record is not None and record.status == INDEXED and record.content_hash == digest:
            report.unchanged += 1
            report.outcomes.append(DocumentOutcome(document.document_id, document.title, "unchanged", tuple(acl)))
            if record.source != document.source:  # moved between sources: only the record changes
                record.update(actions=[KnowledgeDocument.source.set(document.source),
                                       KnowledgeDocument.updated_at.set(utc_now())])
            self._progress()
            return
        try:
            extracted = extract_text(document.content, document.mime_type, filename=document.title)
        except (ExtractionError, UnsupportedDocumentError) as error:
            self.write([_Pending(document, acl, digest, record, [], False, error=error)])
            return
        chunks = chunk_sections(extracted.sections, title=document.title or extracted.title)
        pending = _Pending(document, acl, digest, record, chunks, extracted.truncated)
        if self.embedder is not None:
            pending.dense = [None] * len(chunks)
            self.unembedded.extend((pending, index) for index in range(len(chunks)))
        self.pending.append(pending)
        self.flush(final=False)

    # -- embedding ----------------------------------------------------------------------------

    def flush(self, *, final: bool) -> None:
        """Embed every full batch of waiting chunks (every chunk when ``final``), then write the
        documents whose chunks all have their vectors once enough of them are ready."""
        while self.embedder is not None and (len(self.unembedded) >= self.batch_size or (final and self.unembedded)):
            batch: list[tuple[_Pending, int]] = []
            while self.unembedded and len(batch) < self.batch_size:
                entry = self.unembedded.popleft()
                if entry[0].error is None and entry[0].dense[entry[1]] is None:
                    batch.append(entry)
            if batch:
                self._embed(batch)
        ready = [pending for pending in self.pending if pending.ready]
        if ready and (final or len(ready) >= WRITE_DOCUMENTS
                      or sum(len(pending.chunks) for pending in ready) >= WRITE_CHUNKS):
            self.pending = [pending for pending in self.pending if not pending.ready]
            self.write(ready)

    def _embed(self, batch: list[tuple[_Pending, int]]) -> None:
        assert self.embedder is not None
        owners = list({id(pending): pending for pending, _ in batch}.values())
        try:
            vectors = self.embedder.embed([pending.chunks[index].embed_text for pending, index in batch])
        except EmbeddingRequestError as error:
            if len(owners) == 1:
                owners[0].error = error
                return
            # Refused: find out whose text it was by embedding each document on its own.
            for pending in owners:
                try:
                    own = self.embedder.embed([chunk.embed_text for chunk in pending.chunks])
                    pending.dense = [vector for vector in own]
                except EmbeddingError as own_error:
                    pending.error = own_error
            return
        except EmbeddingError as error:  # unavailable: every document of the batch fails, for now
            for pending in owners:
                pending.error = error
            return
        for (pending, index), vector in zip(batch, vectors, strict=True):
            pending.dense[index] = vector

    # -- writing ------------------------------------------------------------------------------

    def write(self, documents: list[_Pending]) -> None:
        """Upsert the chunks of ``documents`` (in one go), delete their surplus chunks, save
        their records (batched), count them."""
        points = [point for pending in documents if pending.error is None for point in _points(pending)]
        if points:
            self.store.upsert(points)
        records: list[KnowledgeDocument] = []
        for pending in documents:
            if pending.error is not None:
                records.append(self._failed(pending))
                continue
            if pending.record is not None:
                self.store.delete_chunks_from(pending.document.document_id, len(pending.chunks))
            records.append(self._record(pending, status=INDEXED, content_hash=pending.digest,
                                        chunk_count=len(pending.chunks)))
        with KnowledgeDocument.batch_write() as writer:
            for record in records:
                writer.save(record)
        for pending in documents:
            if pending.error is not None:
                self._progress()
                continue
            if pending.record is None:
                self.report.new += 1
            else:
                self.report.changed += 1
            self.report.outcomes.append(DocumentOutcome(
                pending.document.document_id, pending.document.title,
                "new" if pending.record is None else "changed", tuple(pending.acl)))
            self.report.chunks_written += len(pending.chunks)
            self.logger.debug("knowledge document indexed", extra={
                "document_id": pending.document.document_id, "chunks": len(pending.chunks),
                "truncated": pending.truncated})
            self._progress()

    def _failed(self, pending: _Pending) -> KnowledgeDocument:
        document, record, error = pending.document, pending.record, pending.error
        message = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        self.report.failed += 1
        self.report.errors[document.document_id] = message
        self.report.outcomes.append(DocumentOutcome(document.document_id, document.title, "failed",
                                                    tuple(pending.acl)))
        kept = 0
        if record is not None and int(record.chunk_count or 0) > 0:
            if list(record.acl or []) == pending.acl:
                kept = int(record.chunk_count)
            else:
                self.store.delete_document(document.document_id)
        self.logger.warning("knowledge document failed", extra={
            "document_id": document.document_id, "mime_type": document.mime_type, "error": message[:300]})
        return self._record(pending, status=FAILED, content_hash=None, chunk_count=kept, error=message)

    @staticmethod
    def _record(pending: _Pending, *, status: str, content_hash: str | None, chunk_count: int,
                error: str | None = None) -> KnowledgeDocument:
        document = pending.document
        return KnowledgeDocument(
            document.document_id, source=document.source, title=document.title, url=document.url,
            mime_type=document.mime_type, modified_time=document.modified_time, content_hash=content_hash,
            status=status, chunk_count=chunk_count, acl=pending.acl, error=error, updated_at=utc_now(),
        )

    def sweep(self) -> None:
        unseen = [document_id for document_id in self.known if document_id not in self.seen]
        if unseen:
            self.report.removed += remove_documents(unseen, store=self.store)


def ingest_documents(
    documents: Iterable[SourceDocument],
    *,
    sweep_source: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Ingest ``documents`` (see the module docstring) and report what happened to each.

    ``should_stop`` is asked before each document is read (e.g. "is the Lambda running out of
    time?"); once it says yes, no further document is read, the ones already read are finished,
    and nothing is swept. ``progress`` is called with the running report as each document is done.
    """
    started = time.monotonic()
    run = _Ingestion(get_store(), get_embedder(), sweep_source, progress)
    stopped = False
    for document in documents:
        if should_stop is not None and should_stop():
            stopped = True
            break
        run.add(document)
    run.flush(final=True)
    if sweep_source is not None and not stopped:
        run.sweep()
        run._progress()
    report = run.report
    run.logger.info("knowledge ingestion finished", extra={
        "sweep_source": sweep_source, "stopped": stopped, "seen": report.seen, "new": report.new,
        "changed": report.changed, "unchanged": report.unchanged, "failed": report.failed,
        "removed": report.removed, "chunks_written": report.chunks_written,
        "duration_ms": round((time.monotonic() - started) * 1000)})
    return report


def remove_documents(document_ids: Iterable[str], *, store: KnowledgeStore | None = None) -> int:
    """Delete these documents' chunks and records; returns how many of them had a record."""
    ids = list(dict.fromkeys(document_ids))
    if not ids:
        return 0
    (store or get_store()).delete_documents(ids)
    removed = 0
    for start in range(0, len(ids), RECORD_BATCH):
        batch = ids[start:start + RECORD_BATCH]
        existing = list(KnowledgeDocument.batch_get(batch, attributes_to_get=["document_id"]))
        with KnowledgeDocument.batch_write() as writer:
            for record in existing:
                writer.delete(record)
        removed += len(existing)
    get_logger().info("knowledge documents removed", extra={"requested": len(ids), "removed": removed})
    return removed
