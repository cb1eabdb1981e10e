"""The audit log: every admin mutation and every refused admin attempt, with before and after.

``AUDIT_TABLE`` — :class:`AuditEntry`, hash ``target`` (the resource: ``"agent:meddic"``,
``"group:sales"``, ``"user:<user_id>"``, ...), range ``sk`` = ``"<UTC ISO timestamp>#<uuid4>"``
(fixed-width timestamps, so ``sk`` sorts chronologically and never collides); GSI ``by-day``
(hash ``day`` = ``YYYY-MM-DD`` UTC, range ``sk``, ALL). No TTL: entries are kept. Access patterns:

* ``PutItem`` with ``attribute_not_exists(sk)``: :func:`record` — or the same item inside the
  caller's ``TransactWriteItems`` (:func:`entry` + ``put_condition()``), which makes a mutation and
  its audit entry atomic (the admin API does this).
* ``Query(target)`` with ``sk BETWEEN start AND end``, newest first: the history of one resource
  (:func:`query` with ``target``) — one call per page.
* ``Query by-day(day)`` with ``sk BETWEEN``, newest first, one day after the other: everything in a
  time range (:func:`query` without ``target``). Ranges longer than :data:`MAX_RANGE_DAYS` days are
  refused (422), so a page costs at most one Query per day of the range (≤ 32), whatever the
  number of entries.
* ``action`` and ``actor`` filters are ``FilterExpression``s: DynamoDB still reads the entries
  they drop, so they change neither the number of calls nor their cost; a filtered page may hold
  fewer than ``limit`` entries (even none) and still have a ``next_cursor``.

``before`` and ``after`` are stored as JSON after :func:`insightmesh.observability.redact`:
secret-looking fields and token-like values are masked and e-mail addresses shortened, so the log
never holds a secret. ``actor`` is the principal's label (e-mail or user id), ``actor_id`` its
user id (``"system"`` when no principal acted). ``target_label`` says who or what the target is for
a reader of the log (a user's e-mail next to ``user:<id>``); the key stays the id.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel
from pynamodb.attributes import JSONAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.api.errors import ValidationFailedError
from insightmesh.api.pagination import (
    Page,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    is_dynamo_key,
    key_cursor,
    query_page,
    start_key,
)
from insightmesh.aws import model_meta
from insightmesh.clock import utc_now
from insightmesh.observability import redact

ALLOWED: Final = "allowed"
DENIED: Final = "denied"
SYSTEM_ACTOR: Final = "system"
MAX_RANGE_DAYS: Final = 31
DEFAULT_RANGE: Final = timedelta(days=7)
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9998, 12, 31, tzinfo=UTC)
Outcome = Literal["allowed", "denied"]


def timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO timestamp (``2025-10-21T07:28:00.000000Z``): sorts as it reads."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _query_time(moment: datetime | None, name: str) -> datetime | None:
    """A query bound in UTC, or 422 if it is outside the years 2000-9998 (nothing is logged there,
    and date arithmetic near the ends of the calendar would overflow)."""
    if moment is None:
        return None
    try:
        value = as_utc(moment)
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value <= LATEST:
        message = f"{name} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
        raise ValidationFailedError(message, details=[{"loc": ["query", name], "msg": message,
                                                       "type": "value_error"}])
    return value


class AuditByDay(GlobalSecondaryIndex["AuditEntry"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-day"
        projection = AllProjection()

    day = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class AuditEntry(Model):
    """One audited action on one target."""

    Meta = model_meta("AUDIT_TABLE")

    target = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "<timestamp>#<uuid4>"
    target_label = UnicodeAttribute(null=True)  # who or what ``target`` is, e.g. a user's e-mail
    day = UnicodeAttribute()  # YYYY-MM-DD (UTC) of ``at``: the by-day key
    at = UTCDateTimeAttribute()
    actor = UnicodeAttribute()  # e-mail or user id of the principal, or "system"
    actor_id = UnicodeAttribute()
    action = UnicodeAttribute()  # "<resource>.<verb>", e.g. "agent.update"
    outcome = UnicodeAttribute(default=ALLOWED)  # "allowed" | "denied"
    reason = UnicodeAttribute(null=True)
    before = JSONAttribute(null=True)
    after = JSONAttribute(null=True)
    request_id = UnicodeAttribute()

    by_day = AuditByDay()

    @staticmethod
    def put_condition() -> Condition:
        """The condition every audit write carries: never overwrite an entry."""
        return AuditEntry.sk.does_not_exist()


def _jsonable(value: Any) -> Any:
    """JSON-compatible data for ``value`` (pydantic models dumped, datetimes as ISO strings)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


class Actor(Protocol):
    """Who acted, as the log records them (:class:`insightmesh.auth.principal.Principal` is one)."""

    @property
    def user_id(self) -> str: ...

    @property
    def label(self) -> str: ...


def entry(
    *,
    actor: Actor | None,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    outcome: str = ALLOWED,
    reason: str | None = None,
    request_id: str,
    at: datetime | None = None,
    target_label: str | None = None,
) -> AuditEntry:
    """An audit entry, not yet written: pass it to a transaction with ``AuditEntry.put_condition()``
    (or use :func:`record`). ``before``/``after`` are redacted here."""
    if outcome not in (ALLOWED, DENIED):
        raise ValueError(f"outcome must be {ALLOWED!r} or {DENIED!r}, not {outcome!r}")
    if not action or not target:
        raise ValueError("action and target are required")
    moment = as_utc(at or utc_now())
    return AuditEntry(
        target,
        f"{timestamp(moment)}#{uuid.uuid4()}",
        target_label=target_label or None,
        day=moment.strftime("%Y-%m-%d"),
        at=moment,
        actor=actor.label if actor is not None else SYSTEM_ACTOR,
        actor_id=actor.user_id if actor is not None else SYSTEM_ACTOR,
        action=action,
        outcome=outcome,
        reason=reason,
        before=redact(_jsonable(before)),
        after=redact(_jsonable(after)),
        request_id=request_id or "-",
    )


def record(
    *,
    actor: Actor | None,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    outcome: str = ALLOWED,
    reason: str | None = None,
    request_id: str,
    target_label: str | None = None,
) -> AuditEntry:
    """Write one audit entry (one conditional PutItem) and return it."""
    item = entry(actor=actor, action=action, target=target, before=before, after=after,
                 outcome=outcome, reason=reason, request_id=request_id, target_label=target_label)
    item.save(condition=AuditEntry.put_condition())
    return item


# -- reading --------------------------------------------------------------------------------------


def _filter(action: str | None, actor: str | None) -> Condition | None:
    condition: Condition | None = None
    if action:
        condition = AuditEntry.action == action
    if actor:
        by_actor = (AuditEntry.actor == actor) | (AuditEntry.actor_id == actor)
        condition = by_actor if condition is None else condition & by_actor
    return condition


def _range(start: datetime | None, end: datetime | None) -> Condition | None:
    """``sk`` between ``start`` and ``end`` inclusive (``#~`` sorts after every ``#<uuid>``)."""
    if start is not None and end is not None:
        return AuditEntry.sk.between(timestamp(start), timestamp(end) + "#~")
    if start is not None:
        return AuditEntry.sk >= timestamp(start)
    if end is not None:
        return AuditEntry.sk <= timestamp(end) + "#~"
    return None


def _scope(target: str | None, start: datetime | None, end: datetime | None, action: str | None,
           actor: str | None) -> str:
    parts = [target, timestamp(start) if start else None, timestamp(end) if end else None, action, actor]
    return "audit|" + "|".join(part or "" for part in parts)


def query(
    *,
    target: str | None,
    start: datetime | None,
    end: datetime | None,
    action: str | None,
    actor: str | None,
    limit: int,
    cursor: str | None,
) -> Page[AuditEntry]:
    """Audit entries, newest first (access patterns in the module docstring).

    With ``target``: that resource's entries between ``start`` and ``end`` (either may be open).
    Without: entries between ``start`` and ``end`` from the ``by-day`` index; ``end`` defaults to
    now and ``start`` to ``end`` minus 7 days; more than 31 days, or ``end`` before ``start``,
    is a :class:`ValidationFailedError` (422).
    """
    start = _query_time(start, "start")
    end = _query_time(end, "end")
    if start is not None and end is not None and end < start:
        raise ValidationFailedError("end is before start",
                                    details=[{"loc": ["query", "end"], "msg": "end is before start",
                                              "type": "value_error"}])
    scope = _scope(target, start, end, action, actor)
    if target:
        results = AuditEntry.query(target, range_key_condition=_range(start, end),
                                   filter_condition=_filter(action, actor), scan_index_forward=False,
                                   limit=limit, last_evaluated_key=start_key(cursor, scope=scope))
        items, last_key = query_page(results, AuditEntry)
        return Page[AuditEntry](items=items, next_cursor=key_cursor(last_key, scope=scope))
    return _query_by_day(start, end, action, actor, limit, cursor, scope)


def _query_by_day(start: datetime | None, end: datetime | None, action: str | None, actor: str | None,
                  limit: int, cursor: str | None, scope: str) -> Page[AuditEntry]:
    if cursor is not None:
        position = decode_cursor(cursor, scope=scope)
        try:
            start = datetime.fromisoformat(str(position["s"]))
            end = datetime.fromisoformat(str(position["e"]))
            day = date.fromisoformat(str(position["d"]))
        except (KeyError, ValueError) as error:
            raise invalid_cursor() from error
        key = position.get("k")
        if key is not None and not is_dynamo_key(key):
            raise invalid_cursor()
    else:
        end = end or utc_now()
        start = start or end - DEFAULT_RANGE
        if end - start > timedelta(days=MAX_RANGE_DAYS):
            message = f"the time range may span at most {MAX_RANGE_DAYS} days; pass a target or a shorter range"
            raise ValidationFailedError(message, details=[{"loc": ["query", "start"], "msg": message,
                                                           "type": "value_error"}])
        day, key = end.date(), None
    first_day = start.date()
    items: list[AuditEntry] = []
    condition = _range(start, end)
    filters = _filter(action, actor)
    while day >= first_day and len(items) < limit:
        # One Query per day at most: a day's partition is never read twice for one page.
        results = AuditEntry.by_day.query(day.isoformat(), range_key_condition=condition,
                                          filter_condition=filters, scan_index_forward=False,
                                          limit=limit - len(items), last_evaluated_key=key)
        found, key = query_page(results, AuditEntry)
        items.extend(found)
        if key is not None:
            break  # this day has more: the next page resumes here
        day -= timedelta(days=1)
    if day < first_day:
        return Page[AuditEntry](items=items, next_cursor=None)
    position = {"d": day.isoformat(), "k": key, "s": start.isoformat(), "e": end.isoformat()}
    return Page[AuditEntry](items=items, next_cursor=encode_cursor(position, scope=scope))
