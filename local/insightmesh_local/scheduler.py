"""Schedules that fire, locally (moto stores rules and schedules but never fires them).

Two sources, one loop:

* EventBridge **rules** with a schedule: functions' ``Schedule`` events and ``AWS::Events::Rule``
  resources. They fire the real scheduled-event payload (``detail-type: Scheduled Event``) or
  the rule's ``Input``.
* EventBridge **Scheduler** schedules, read back from the emulator every few seconds, so the
  template's (``AWS::Scheduler::Schedule``, ``ScheduleV2`` events) and those created at run time
  by the application (jobs) fire alike: rate, cron with ``ScheduleExpressionTimezone`` and
  one-off ``at()``; ``State``, ``StartDate``, ``EndDate`` and ``ActionAfterCompletion`` are
  honoured, and the target's ``Input`` is delivered with Scheduler's context attributes
  (``<aws.scheduler.scheduled-time>`` ...) filled in.

``fire(name)`` fires one now, whatever its expression says.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from insightmesh.jobs.schedule_expressions import (
    ScheduleExpression,
    ScheduleExpressionError,
    parse_schedule_expression,
)
from insightmesh_local.functions import FunctionNotFound, Functions
from insightmesh_local.template import ACCOUNT_ID


@dataclass
class Entry:
    key: str
    name: str
    source: str  # "rule" or "scheduler"
    expression: ScheduleExpression
    target_arn: str
    input: str | None
    arn: str
    enabled: bool = True
    start: datetime | None = None
    end: datetime | None = None
    delete_after: bool = False
    group: str = "default"
    sqs_group_id: str | None = None
    next_fire: datetime | None = None
    last_fire: datetime | None = None
    fired: int = 0
    planned: bool = False
    signature: tuple[Any, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "group": self.group,
            "expression": self.expression.expression, "timezone": self.expression.timezone,
            "enabled": self.enabled, "target": self.target_arn,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "last_fire": self.last_fire.isoformat() if self.last_fire else None,
            "fired": self.fired,
        }


def scheduled_event(rule_arn: str, region: str, when: datetime) -> dict[str, Any]:
    """The event EventBridge sends for a scheduled rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def scheduler_payload(entry: Entry, when: datetime) -> str:
    """The target input EventBridge Scheduler delivers, context attributes substituted."""
    text = entry.input if entry.input is not None else "{}"
    for keyword, value in (
        ("<aws.scheduler.schedule-arn>", entry.arn),
        ("<aws.scheduler.scheduled-time>", when.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("<aws.scheduler.execution-id>", str(uuid.uuid4())),
        ("<aws.scheduler.attempt-number>", "1"),
    ):
        text = text.replace(keyword, value)
    return text


class Scheduler:
    def __init__(self, functions: Functions, clients: Callable[[str], Any], region: str,
                 log: Callable[[str], None], stop: threading.Event, *, tick: float = 0.5,
                 refresh: float = 2.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.functions = functions
        self.clients = clients
        self.region = region
        self.log = log
        self.stop = stop
        self.tick = tick
        self.refresh_every = refresh
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # one listing at a time: the poller's, or a control request's
        self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)

    # -- sources ---------------------------------------------------------------------------------
    def add_rule(self, name: str, expression: str, target_arn: str, *, input_text: str | None = None,
                 enabled: bool = True) -> None:
        parsed = parse_schedule_expression(expression, "UTC", start=self.clock())
        arn = f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{name}"
        with self._lock:
            self.entries[f"rule:{name}"] = Entry(f"rule:{name}", name, "rule", parsed, target_arn, input_text, arn,
                                                 enabled=enabled)

    def refresh(self) -> None:
        """Re-read EventBridge Scheduler schedules from the emulator (created, changed, deleted)."""
        with self._refresh_lock:
            self._refresh()

    def _refresh(self) -> None:
        client = self.clients("scheduler")
        seen: set[str] = set()
        paginator = client.get_paginator("list_schedules")
        for page in paginator.paginate():
            for summary in page.get("Schedules", []):
                group = summary.get("GroupName", "default")
                key = f"scheduler:{group}/{summary['Name']}"
                seen.add(key)
                detail = client.get_schedule(Name=summary["Name"], GroupName=group)
                self._upsert(key, detail)
        with self._lock:
            for key in [k for k, e in self.entries.items() if e.source == "scheduler" and k not in seen]:
                del self.entries[key]

    def _upsert(self, key: str, detail: dict[str, Any]) -> None:
        target = detail.get("Target") or {}
        signature = (detail.get("ScheduleExpression"), detail.get("ScheduleExpressionTimezone"), detail.get("State"),
                     json.dumps(target, sort_keys=True, default=str), str(detail.get("StartDate")),
                     str(detail.get("EndDate")))
        with self._lock:
            existing = self.entries.get(key)
            if existing is not None and existing.signature == signature:
                return
            try:
                expression = parse_schedule_expression(
                    detail["ScheduleExpression"], detail.get("ScheduleExpressionTimezone") or "UTC",
                    # A rate schedule's first run is its StartDate, else its creation time.
                    start=_aware(detail.get("StartDate")) or _aware(detail.get("CreationDate")) or self.clock(),
                )
            except ScheduleExpressionError as error:
                self.log(f"scheduler {detail.get('Name')}: {error}; not scheduled")
                return
            entry = Entry(
                key=key, name=detail["Name"], source="scheduler", expression=expression,
                target_arn=target.get("Arn", ""), input=target.get("Input"), arn=detail.get("Arn", ""),
                enabled=detail.get("State", "ENABLED") == "ENABLED", start=_aware(detail.get("StartDate")),
                end=_aware(detail.get("EndDate")), delete_after=detail.get("ActionAfterCompletion") == "DELETE",
                group=detail.get("GroupName", "default"),
                sqs_group_id=(target.get("SqsParameters") or {}).get("MessageGroupId"), signature=signature,
            )
            if existing is not None:
                entry.last_fire, entry.fired = existing.last_fire, existing.fired
            self.entries[key] = entry

    # -- firing ----------------------------------------------------------------------------------
    def _plan(self, entry: Entry, now: datetime) -> None:
        # next_fire is strictly after its argument: a run due exactly at StartDate still happens.
        after = max(now, entry.start - timedelta(microseconds=1)) if entry.start else now
        upcoming = entry.expression.next_fire(after)
        if upcoming is not None and entry.end is not None and upcoming > entry.end:
            upcoming = None
        entry.next_fire = upcoming
        entry.planned = True

    def due(self, now: datetime) -> list[Entry]:
        with self._lock:
            ready = []
            for entry in self.entries.values():
                if not entry.enabled:
                    entry.next_fire, entry.planned = None, False
                    continue
                if not entry.planned:
                    self._plan(entry, now)
                    # A one-off at() already in the past when first seen still fires once.
                    if entry.next_fire is None and entry.fired == 0 and entry.expression.expression.startswith("at("):
                        entry.next_fire = now
                if entry.next_fire is not None and entry.next_fire <= now:
                    ready.append(entry)
            return ready

    def fire(self, name: str, *, when: datetime | None = None) -> Entry:
        when = when or self.clock()
        entry = self._find(name)
        if entry is None:  # perhaps created since the last refresh
            self.refresh()
            entry = self._find(name)
        if entry is None:
            raise KeyError(name)
        self._deliver(entry, when)
        return entry

    def _find(self, name: str) -> Entry | None:
        with self._lock:
            return next((e for e in self.entries.values() if name in (e.name, e.key, e.arn)), None)

    def _deliver(self, entry: Entry, when: datetime) -> None:
        with self._lock:
            entry.last_fire = when
            entry.fired += 1
            self._plan(entry, when)
        if entry.source == "rule":
            payload: Any = json.loads(entry.input) if entry.input else scheduled_event(entry.arn, self.region, when)
        else:
            payload = json.loads(scheduler_payload(entry, when))
        self.log(f"schedule {entry.name} fired -> {entry.target_arn.rsplit(':', 1)[-1]}")
        try:
            if ":lambda:" in entry.target_arn:
                self.functions.invoke_async(entry.target_arn, payload, trigger=f"schedule {entry.name}")
            elif ":sqs:" in entry.target_arn:
                self._send_to_queue(entry, payload)
            else:
                self.log(f"schedule {entry.name}: target {entry.target_arn} is not run locally")
        except FunctionNotFound:
            self.log(f"schedule {entry.name}: target function {entry.target_arn} is not in the template")
        if entry.source == "scheduler" and entry.delete_after and entry.next_fire is None:
            self.clients("scheduler").delete_schedule(Name=entry.name, GroupName=entry.group)
            with self._lock:
                self.entries.pop(entry.key, None)

    def _send_to_queue(self, entry: Entry, payload: Any) -> None:
        sqs = self.clients("sqs")
        url = sqs.get_queue_url(QueueName=entry.target_arn.rsplit(":", 1)[-1])["QueueUrl"]
        request: dict[str, Any] = {"QueueUrl": url, "MessageBody": json.dumps(payload)}
        if url.endswith(".fifo"):
            request["MessageGroupId"] = entry.sqs_group_id or entry.name
            request["MessageDeduplicationId"] = str(uuid.uuid4())
        sqs.send_message(**request)

    def run(self) -> None:
        last_refresh = 0.0
        elapsed = 0.0
        while not self.stop.is_set():
            try:
                if elapsed - last_refresh >= self.refresh_every or last_refresh == 0.0:
                    self.refresh()
                    last_refresh = elapsed or 1e-9
                now = self.clock()
                for entry in self.due(now):
                    self._deliver(entry, now)
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                self.log(f"scheduler: {error}")
            self.stop.wait(self.tick)
            elapsed += self.tick

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [entry.describe() for entry in sorted(self.entries.values(), key=lambda e: e.name)]


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
