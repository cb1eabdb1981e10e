"""Whether a Slack workspace is active: an uninstalled app or a revoked bot token stops the bot there.

Items in the conversations table (``CONVERSATIONS_TABLE``; template: ``ConversationsTable``), one
per workspace that has ever been deactivated: pk ``workspace``, sk the team id. No TTL: the state
is kept. A workspace without an item is active. Access patterns:

* ingress, on ``app_uninstalled`` or ``tokens_revoked`` (bot tokens): one ``TransactWriteItems``
  — the workspace item (conditional on not having recorded this event id already, so a Slack
  retry writes nothing twice) and its audit entry (``workspace.deactivate``);
* worker, before anything else: one ``GetItem`` on (``workspace``, team), cached in the process
  for :data:`CACHE_SECONDS`;
* worker, when an inactive workspace's secret holds a token other than the revoked one and
  ``auth.test`` accepts it (a new install): one ``TransactWriteItems`` — active again, audited
  (``workspace.reactivate``);
* admin API: one ``Query(pk = "workspace")`` per page (a deployment serves a handful of workspaces).

Only a fingerprint of the revoked token is stored (the first 16 hex digits of its SHA-256), never
the token.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pynamodb.attributes import BooleanAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite
from slack_sdk.errors import SlackApiError

from insightmesh.audit.log import AuditEntry, entry
from insightmesh.aws import aws_region, model_meta
from insightmesh.clock import utc_now
from insightmesh.observability import get_logger
from insightmesh.slack import client as slack_client

WORKSPACE_PK: Final = "workspace"
CACHE_SECONDS: Final = 30.0
DEACTIVATING_REASONS: Final = ("app_uninstalled", "tokens_revoked")

_cache: dict[str, tuple[float, bool]] = {}  # team -> (monotonic time read, active)
_inactive_seen: set[str] = set()  # teams this process has dropped its Slack caches for
_lock = threading.Lock()


class WorkspaceRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True, default=WORKSPACE_PK)
    sk = UnicodeAttribute(range_key=True)  # the team id
    active = BooleanAttribute(default=True)
    reason = UnicodeAttribute(null=True)  # app_uninstalled | tokens_revoked | reinstalled
    event_id = UnicodeAttribute(null=True)  # the Slack event that last changed the state
    revoked_token = UnicodeAttribute(null=True)  # fingerprint of the token in use when deactivated
    changed_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # the table's TTL attribute: never set, the state is kept


@dataclass(frozen=True)
class WorkspaceState:
    team_id: str
    active: bool
    reason: str | None
    changed_at: datetime | None


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _connection() -> Connection:
    return Connection(region=aws_region(), host=os.environ.get("AWS_ENDPOINT_URL") or None,
                      connect_timeout_seconds=2, read_timeout_seconds=5, max_retry_attempts=2)


def _write(record: WorkspaceRecord, audit: AuditEntry, *, event_id: str | None) -> bool:
    """The state and its audit entry in one transaction; ``False`` if this event was recorded already."""
    condition = None
    if event_id:
        condition = WorkspaceRecord.event_id.does_not_exist() | (WorkspaceRecord.event_id != event_id)
    try:
        with TransactWrite(connection=_connection()) as transaction:
            transaction.save(record, condition=condition)
            transaction.save(audit, condition=AuditEntry.put_condition())
    except TransactWriteError as failure:
        codes = [reason.code if reason is not None else None for reason in failure.cancellation_reasons or []]
        if codes and codes[0] == "ConditionalCheckFailed":
            return False
        raise
    return True


def deactivate(team_id: str, *, reason: str, event_id: str | None, request_id: str) -> bool:
    """Mark ``team_id`` inactive (ingress, on ``app_uninstalled`` / ``tokens_revoked``), audited.
    Drops this process's Slack client and bot identity. ``False``: a retry of an event already recorded."""
    if reason not in DEACTIVATING_REASONS:
        raise ValueError(f"not a deactivating event: {reason!r}")
    now = utc_now()
    token = slack_client.bot_token()
    record = WorkspaceRecord(WORKSPACE_PK, team_id, active=False, reason=reason, event_id=event_id,
                             revoked_token=token_fingerprint(token) if token else None, changed_at=now)
    audit = entry(actor=None, action="workspace.deactivate", target=f"workspace:{team_id}",
                  after={"active": False, "reason": reason, "event_id": event_id}, request_id=request_id)
    written = _write(record, audit, event_id=event_id)
    slack_client.reset()
    with _lock:
        _cache[team_id] = (time.monotonic(), False)
    get_logger().warning("workspace deactivated: no Slack or model calls for it until a new install",
                         extra={"team_id": team_id, "reason": reason, "recorded": written})
    return written


def _read(team_id: str) -> WorkspaceRecord | None:
    try:
        return WorkspaceRecord.get(WORKSPACE_PK, team_id, consistent_read=True)
    except WorkspaceRecord.DoesNotExist:
        return None


def is_active(team_id: str, *, request_id: str = "-") -> bool:
    """Whether the bot may work for ``team_id`` (cached for :data:`CACHE_SECONDS`). An inactive
    workspace whose secret now holds another token that ``auth.test`` accepts is reactivated."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(team_id)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    record = _read(team_id)
    active = record is None or bool(record.active)
    if not active and record is not None:
        active = _reinstalled(record, request_id=request_id)
    with _lock:
        _cache[team_id] = (time.monotonic(), active)
        if active:
            _inactive_seen.discard(team_id)
            return True
        first = team_id not in _inactive_seen
        _inactive_seen.add(team_id)
    if first:
        slack_client.reset()  # the cached token and bot identity are dead
    return False


def _reinstalled(record: WorkspaceRecord, *, request_id: str) -> bool:
    """A new token in the secret that Slack accepts for this workspace: make it active again."""
    token = slack_client.bot_token(fresh=True)
    if not token or token_fingerprint(token) == record.revoked_token:
        return False
    slack_client.reset()
    try:
        identity = slack_client.call_slack(lambda client: client.auth_test())
    except (SlackApiError, slack_client.SlackNotConfiguredError) as error:
        get_logger().info("inactive workspace: the token in the secret is not accepted",
                          extra={"team_id": record.sk, "error": type(error).__name__})
        return False
    if str(identity.get("team_id") or "") != record.sk:
        return False
    changed = WorkspaceRecord(WORKSPACE_PK, str(record.sk), active=True, reason="reinstalled", event_id=None,
                              revoked_token=None, changed_at=utc_now())
    audit = entry(actor=None, action="workspace.reactivate", target=f"workspace:{record.sk}",
                  before={"active": False, "reason": record.reason}, after={"active": True, "reason": "reinstalled"},
                  request_id=request_id)
    _write(changed, audit, event_id=None)
    get_logger().info("workspace active again: a new token was installed", extra={"team_id": record.sk})
    return True


def list_states(*, limit: int = 100) -> list[WorkspaceState]:
    """Every workspace with a recorded state (one Query; a deployment serves a handful)."""
    return [WorkspaceState(team_id=str(item.sk), active=bool(item.active), reason=item.reason,
                           changed_at=item.changed_at)
            for item in WorkspaceRecord.query(WORKSPACE_PK, limit=limit)]


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _inactive_seen.clear()
