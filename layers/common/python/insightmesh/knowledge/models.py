"""The knowledge base's table: one record per ingested document.

``KNOWLEDGE_DOCUMENTS_TABLE`` — :class:`KnowledgeDocument`, hash ``document_id``; GSI ``by-source``
(hash ``source``, range ``document_id``, ALL); GSI ``by-status`` (hash ``status``, range
``document_id``, ALL). Deployed: ``infra/template.yaml`` (``KnowledgeDocumentsTable``).

* ``GetItem(document_id)``: the record of a document being ingested (its content hash decides
  whether it changed). Documents of the source being swept are read by the sweep's ``Query``
  instead, once per run.
* ``Query by-source(source)``: every document of a source — the sweep that removes the documents
  a full run no longer saw, and the admin listing of a source.
* ``Query by-status(status)``: the admin listing without a source (``failed``, then ``indexed``);
  ``acl`` and, with a source, ``status`` filter as ``FilterExpression``s
  (:mod:`insightmesh.knowledge.listing`).
* ``PutItem``: after a document is indexed or fails; ``DeleteItem`` (batched) when it is removed.

``status``:

* ``"indexed"`` — its ``chunk_count`` chunks are in Qdrant and ``content_hash`` is the hash of what
  was indexed (an identical document next time is skipped);
* ``"failed"`` — the last attempt failed with ``error``; ``content_hash`` is unset so the next run
  tries again. Chunks of an earlier version stay searchable only if its ``acl`` was the same
  (``chunk_count`` says how many); otherwise they were deleted (fail closed).

A removed document (deleted at its source, or swept) has no record: its chunks and its record are
deleted together, so the table holds exactly the documents the knowledge base knows.
"""

from __future__ import annotations

from typing import Final, Literal

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.clock import utc_now

INDEXED: Final = "indexed"
FAILED: Final = "failed"
DocumentStatus = Literal["indexed", "failed"]
MAX_ERROR_CHARS: Final = 1000


class KnowledgeDocumentsBySource(GlobalSecondaryIndex["KnowledgeDocument"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Every document of a source, by id: the sweep and the admin listing."""

    class Meta:
        index_name = "by-source"
        projection = AllProjection()

    source = UnicodeAttribute(hash_key=True)
    document_id = UnicodeAttribute(range_key=True)


class KnowledgeDocumentsByStatus(GlobalSecondaryIndex["KnowledgeDocument"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Every document with a status, by id: the admin listing without a source."""

    class Meta:
        index_name = "by-status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    document_id = UnicodeAttribute(range_key=True)


class KnowledgeDocument(Model):
    """One document of the knowledge base and what became of it (see the module docstring)."""

    Meta = model_meta("KNOWLEDGE_DOCUMENTS_TABLE")

    document_id = UnicodeAttribute(hash_key=True)
    source = UnicodeAttribute()
    title = UnicodeAttribute(default="")
    url = UnicodeAttribute(null=True)
    mime_type = UnicodeAttribute(default="")
    modified_time = UTCDateTimeAttribute(null=True)
    content_hash = UnicodeAttribute(null=True)  # sha256 of what was indexed; unset after a failure
    status = UnicodeAttribute(default=INDEXED)  # "indexed" | "failed"
    chunk_count = NumberAttribute(default=0)  # chunks of this document in Qdrant
    acl = ListAttribute(of=UnicodeAttribute, default=list)  # the principals of its chunks
    error = UnicodeAttribute(null=True)  # why the last attempt failed (never the content)
    updated_at = UTCDateTimeAttribute(default=utc_now)

    by_source = KnowledgeDocumentsBySource()
    by_status = KnowledgeDocumentsByStatus()
