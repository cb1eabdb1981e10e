"""The documents of the knowledge base, as admins list them (``GET /api/knowledge/documents``).

Each item is one :class:`~insightmesh.knowledge.models.KnowledgeDocument` record: title, source,
ACL, status, chunks, modified, last error. Calls per page (never a ``Scan``):

* ``source`` given: one ``Query by-source(source)``; ``status`` and ``acl`` are
  ``FilterExpression``s — by document id;
* else ``status`` given: one ``Query by-status(status)``, ``acl`` a ``FilterExpression`` — by
  document id;
* else: ``Query by-status("failed")``, then ``Query by-status("indexed")`` — failed documents
  first, then the rest, each by document id; at most one ``Query`` per status and page.

``acl`` is one principal (``group:sales``, ``user:alice@example.com``, ``domain:example.com``,
``anyone``; :func:`insightmesh.knowledge.base.normalise_principals`): the documents whose ACL holds
exactly it (``contains(acl, :principal)``). As everywhere in the API, a filtered page may hold
fewer items than ``limit`` (even none) and still have a ``next_cursor``; the cursor is signed for
this list and these filters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pynamodb.expressions.condition import Condition

from insightmesh.api.errors import ValidationFailedError
from insightmesh.api.pagination import (
    DynamoKey,
    Page,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    is_dynamo_key,
    query_page,
)
from insightmesh.knowledge.base import normalise_principals
from insightmesh.knowledge.models import FAILED, INDEXED, KnowledgeDocument

STATUSES: Final = (FAILED, INDEXED)  # the listing's order without a source or status
Status = Literal["indexed", "failed"]


class DocumentOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: str = Field(description="gdrive:<file id> or local:<sha256 of the path>.")
    title: str
    source: str = Field(description="What ingested it: gdrive:<folder or file id>, local:<path>.")
    url: str | None
    mime_type: str
    acl: list[str] = Field(description="Who may read it: anyone, domain:<domain>, user:<e-mail>, "
                                       "group:<group name> or group:<group e-mail>.")
    status: Status = Field(description="indexed: searchable; failed: the last attempt failed (last_error).")
    chunks: int = Field(description="Its chunks in the knowledge base.")
    modified: datetime | None = Field(description="When the source last modified it.")
    updated_at: datetime = Field(description="When it was last ingested.")
    last_error: str | None = Field(description="Why the last attempt failed (failed documents).")


DocumentPage = Page[DocumentOut]


def document_out(record: KnowledgeDocument) -> DocumentOut:
    return DocumentOut(
        document_id=record.document_id, title=record.title or "", source=record.source, url=record.url,
        mime_type=record.mime_type or "", acl=list(record.acl or []),
        status="failed" if record.status == FAILED else "indexed", chunks=int(record.chunk_count or 0),
        modified=record.modified_time, updated_at=record.updated_at, last_error=record.error)


def principal_filter(acl: str | None) -> str | None:
    """The ``acl`` query parameter normalised, or a 422 naming it."""
    if acl is None:
        return None
    try:
        [principal] = normalise_principals([acl])
    except ValueError as error:
        message = str(error)
        raise ValidationFailedError(message, details=[{"loc": ["query", "acl"], "msg": message,
                                                       "type": "value_error"}]) from error
    return principal


def _filter(status: str | None, principal: str | None) -> Condition | None:
    condition: Condition | None = None
    if status is not None:
        condition = KnowledgeDocument.status == status
    if principal is not None:
        holds = KnowledgeDocument.acl.contains(principal)
        condition = holds if condition is None else condition & holds
    return condition


def list_documents(*, source: str | None, status: Status | None, acl: str | None, limit: int,
                   cursor: str | None) -> Page[DocumentOut]:
    """One page of documents (see the module docstring)."""
    principal = principal_filter(acl)
    scope = f"knowledge-documents|{source or ''}|{status or ''}|{principal or ''}"
    position = decode_cursor(cursor, scope=scope) if cursor is not None else {}
    key = position.get("k")
    if key is not None and not is_dynamo_key(key):
        raise invalid_cursor()
    if source is not None:
        results = KnowledgeDocument.by_source.query(source, filter_condition=_filter(status, principal),
                                                    limit=limit, last_evaluated_key=key)
        found, last = query_page(results, KnowledgeDocument)
        return _page(found, {"k": last} if last is not None else None, scope)
    statuses = (status,) if status is not None else STATUSES
    current = position.get("s", statuses[0])
    if current not in statuses:
        raise invalid_cursor()
    items: list[KnowledgeDocument] = []
    for index in range(statuses.index(current), len(statuses)):
        results = KnowledgeDocument.by_status.query(statuses[index], filter_condition=_filter(None, principal),
                                                    limit=limit - len(items), last_evaluated_key=key)
        found, last = query_page(results, KnowledgeDocument)
        items.extend(found)
        if last is not None:
            return _page(items, {"s": statuses[index], "k": last}, scope)
        key = None
        if len(items) >= limit and index + 1 < len(statuses):
            return _page(items, {"s": statuses[index + 1], "k": None}, scope)
    return _page(items, None, scope)


def _page(records: list[KnowledgeDocument], position: dict[str, str | DynamoKey | None] | None,
          scope: str) -> Page[DocumentOut]:
    return Page[DocumentOut](items=[document_out(record) for record in records],
                             next_cursor=encode_cursor(position, scope=scope) if position is not None else None)
