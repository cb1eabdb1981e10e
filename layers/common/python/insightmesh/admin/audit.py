"""The audit log as the admin API shows it (reads: :func:`insightmesh.audit.log.query`)."""

from __future__ import annotations

from datetime import datetime

from insightmesh.admin.schemas import AuditEntryOut
from insightmesh.api.pagination import Page
from insightmesh.audit import log as audit_log


def entry_out(entry: audit_log.AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(id=entry.sk, target=entry.target, target_label=entry.target_label, at=entry.at,
                         actor=entry.actor, actor_id=entry.actor_id, action=entry.action,
                         outcome="denied" if entry.outcome == audit_log.DENIED else "allowed",
                         reason=entry.reason, before=entry.before, after=entry.after, request_id=entry.request_id)


def list_page(*, target: str | None, start: datetime | None, end: datetime | None, action: str | None,
              actor: str | None, limit: int, cursor: str | None) -> Page[AuditEntryOut]:
    page = audit_log.query(target=target, start=start, end=end, action=action, actor=actor, limit=limit,
                           cursor=cursor)
    return Page[AuditEntryOut](items=[entry_out(entry) for entry in page.items], next_cursor=page.next_cursor)
