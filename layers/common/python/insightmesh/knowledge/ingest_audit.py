"""Ingests in the audit log: who put which documents into the knowledge base, with which ACL.

One entry (one conditional ``PutItem`` on ``AUDIT_TABLE``, :func:`insightmesh.audit.log.record`)
per ingestion:

* ``insightmesh ingest`` — per invocation of ``knowledge_ingest`` (a batch of files), whatever
  happened to them; ``actor`` is who the CLI says ran it (``cli:<OS user>``), ``request_id`` the
  invocation's;
* the ``gdrive_ingest`` job — per listing page that wrote or failed a document (a run that finds
  everything unchanged adds nothing); ``actor`` is ``job:<job id>``, ``request_id`` the run id.

``target`` = ``knowledge:<source>`` (``knowledge:local:/srv/handbook``, ``knowledge:gdrive:<folder
id>``), ``action`` = ``knowledge.ingest``. ``after`` holds the counts and, for at most
:data:`MAX_LISTED` documents, ``{"document_id", "title", "outcome", "acl"}`` (``outcome``: new,
changed, unchanged, failed or rejected; at most :data:`MAX_ACL_LISTED` principals of an ACL, with
``acl_not_listed`` counting the rest); ``documents_not_listed`` counts the other documents. Like every
audit entry, ``after`` is redacted: the e-mail addresses in user principals are shortened
(``user:a***@example.com``); groups, domains and ``anyone`` read as they are.

Read them with ``GET /api/audit?target=knowledge:<source>`` or ``?action=knowledge.ingest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from insightmesh.knowledge.base import DocumentOutcome, IngestReport

ACTION: Final = "knowledge.ingest"
MAX_LISTED: Final = 100
MAX_ACL_LISTED: Final = 20  # per document: with 100 documents the entry stays far below DynamoDB's 400 KB
MAX_TITLE_CHARS: Final = 200
UNCHANGED: Final = "unchanged"


@dataclass(frozen=True)
class IngestActor:
    """Who ran an ingestion, as the audit log records them (an ``audit.log.Actor``)."""

    user_id: str
    label: str


def target(source: str) -> str:
    return f"knowledge:{source}"


def _document(outcome: DocumentOutcome) -> dict[str, Any]:
    listed: dict[str, Any] = {"document_id": outcome.document_id, "title": outcome.title[:MAX_TITLE_CHARS],
                              "outcome": outcome.outcome, "acl": list(outcome.acl[:MAX_ACL_LISTED])}
    if len(outcome.acl) > MAX_ACL_LISTED:
        listed["acl_not_listed"] = len(outcome.acl) - MAX_ACL_LISTED
    return listed


def record_ingest(*, actor: IngestActor, source: str, report: IngestReport, request_id: str,
                  rejected: Mapping[str, tuple[str, Sequence[str]]] | None = None, removed: int = 0,
                  changes_only: bool = False) -> bool:
    """Audit one ingestion of ``source`` (see the module docstring). ``rejected`` maps the id of a
    document refused before the pipeline to its title and ACL. With ``changes_only`` nothing is
    written unless a document was new, changed, failed or rejected, or one was removed. Returns
    whether an entry was written."""
    from insightmesh.audit.log import record

    outcomes: list[DocumentOutcome] = [
        *report.outcomes,
        *(DocumentOutcome(document_id, title, "rejected", tuple(acl))
          for document_id, (title, acl) in (rejected or {}).items())]
    listed = [outcome for outcome in outcomes if not (changes_only and outcome.outcome == UNCHANGED)]
    if changes_only and not listed and not removed:
        return False
    after: dict[str, Any] = {
        "source": source,
        "counts": {"seen": report.seen + len(rejected or {}), "new": report.new, "changed": report.changed,
                   "unchanged": report.unchanged, "failed": report.failed + len(rejected or {}),
                   "removed": removed, "chunks_written": report.chunks_written},
        "documents": [_document(outcome) for outcome in listed[:MAX_LISTED]],
        "documents_not_listed": max(0, len(listed) - MAX_LISTED),
    }
    record(actor=actor, action=ACTION, target=target(source), after=after, request_id=request_id)
    return True
