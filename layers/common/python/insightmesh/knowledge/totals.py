"""How big the knowledge base is: documents indexed and failed, and their chunks
(``GET /api/knowledge/summary``, admins; the console's dashboard).

Why a bounded count rather than counters kept by the ingest: the table holds exactly the documents
the knowledge base knows (a removed document has no record), so counting its ``by-status`` index is
right by construction, whereas counters would have to be kept in step by every put, status change,
sweep and delete of the ingest (which another part of the project owns) and would drift on any
crash between the two writes. The count is one ``Query by-status(status)`` per status, projecting
``chunk_count`` only, read page by page (DynamoDB's 1 MB pages) up to :data:`MAX_COUNTED` documents
per status: a few calls for a knowledge base of thousands of documents. Past the bound, the totals
say ``complete: false`` and are lower bounds; a base that large would want counters kept by the
ingest (the same ``ADD`` counters as :mod:`insightmesh.llm.usage`).
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

from insightmesh.knowledge.models import FAILED, INDEXED, KnowledgeDocument

MAX_COUNTED: Final = 10_000


class KnowledgeSummary(BaseModel):
    documents: int = Field(description="Documents with a record (indexed + failed).")
    indexed: int = Field(description="Documents searchable now.")
    failed: int = Field(description="Documents whose last ingest failed (GET /api/knowledge/documents?status=failed).")
    chunks: int = Field(description="Chunks in the knowledge base, over every document.")
    complete: bool = Field(description=f"False when a status has more than {MAX_COUNTED} documents: the counts "
                                       "are then lower bounds.")


def _count(status: str) -> tuple[int, int, bool]:
    documents = chunks = 0
    for record in KnowledgeDocument.by_status.query(status, attributes_to_get=["document_id", "status",
                                                                                "chunk_count"]):
        if documents == MAX_COUNTED:
            return documents, chunks, False
        documents += 1
        chunks += int(record.chunk_count or 0)
    return documents, chunks, True


def knowledge_summary() -> KnowledgeSummary:
    indexed, indexed_chunks, indexed_complete = _count(INDEXED)
    failed, failed_chunks, failed_complete = _count(FAILED)
    return KnowledgeSummary(documents=indexed + failed, indexed=indexed, failed=failed,
                            chunks=indexed_chunks + failed_chunks, complete=indexed_complete and failed_complete)


__all__ = ["MAX_COUNTED", "KnowledgeSummary", "knowledge_summary"]
