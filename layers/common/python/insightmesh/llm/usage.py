"""LLM usage and cost, counted by dimension and period (``USAGE_TABLE``; template: ``UsageTable``).

Counter item (:class:`UsageRecord`): ``subject`` (hash key, ``<dimension>#<value>``:
``workspace#T1``, ``agent#help``, ``user#<directory user id>``, ``group#sales``, ``channel#C1``,
``model#gpt-4o-mini``), ``period`` (range key: the UTC day ``2026-12-07``, the ISO week
``2026-W49`` or the month ``2026-12``: :func:`period_key`), ``prompt_tokens``,
``completion_tokens``, ``calls``, ``cost_micros`` (millionths of a USD). The same table holds:
feedback counts (subject ``feedback#<agent>``, the day: :class:`FeedbackCounts`); index items
(subject ``index#<dimension>``, a period key, ``members``: the values with usage in it:
:class:`UsageIndex`); one record per completion (subject ``request#<request id>``, period
``<ISO time>#<8 hex>``, TTL ``expires_at``: :class:`UsageCall`); model prices (subject ``prices``:
:mod:`insightmesh.llm.pricing`); and budget definitions (subject ``budget``:
:mod:`insightmesh.budgets`). Only the per-completion records expire.

Access patterns:

* record one completion — ``record_usage``: for each dimension value present (workspace, agent,
  user, each group, channel, model) and each of its day, week and month, one ``UpdateItem``
  ``ADD prompt_tokens :p, completion_tokens :c, calls 1, cost_micros :m``; ``ADD members :values``
  on the ``(index#<dimension>, <period>)`` items (skipped for values this container indexed for
  that period in the last hour: adding a member twice changes nothing); one ``PutItem`` of the
  per-completion record. ``ADD`` creates the item on first use and is atomic, so concurrent
  workers never lose an increment and nothing is read first. That is ``3 x (5 + groups) + 1``
  writes in the steady state (plus up to 18 index writes the first time a value is seen in a
  period), run concurrently on a shared pool of ``WRITE_THREADS`` threads. With ``USAGE_QUEUE_URL``
  set (every function of the stack), ``record_usage`` writes none of them: it sends the completion
  as ONE message to the usage queue (:func:`usage_message`), and the usage aggregator function
  (:mod:`insightmesh.llm.usage_aggregate`) writes a whole batch of them coalesced — one ``ADD``
  per (subject, period) and per index item for up to 100 completions. ~22 writes per completion
  on the request path contended with the next request's reads (the warm DM's time to the LLM
  ~90 -> ~210 ms p50 through ``insightmesh dev``). If the send fails, the completion is written
  directly as below (nothing lost). The counters then lag a completion by the batching window
  (5 s) plus the aggregator's run: budgets allow for it (:mod:`insightmesh.budgets.check`).
  Without the variable (unit tests, scripts) the writes are direct — in the background for the
  conversation worker, which drains them when the request is done, so the reply never waits for
  them (``benchmarks/usage_recording.py``). Accounting fails soft:
  a DynamoDB error is logged as one warning and the reply goes out anyway. The cost comes from
  the model's price (cached 60 s per container: no read per call).
* one subject in one period — ``usage_for(subject, period)``: ``GetItem`` on the full key (a
  budget's spend: ``UsageRecord(subject_of(kind, value), period_key(period, now)).cost_micros``).
* one subject over a range of days — ``Query`` on ``subject`` with ``period BETWEEN :from AND
  :to`` or ``begins_with(period, "2025-10-")`` (day keys sort chronologically; a month's key
  ``YYYY-MM`` sorts just before its first day, so a range across months returns it too: keep the
  10-character keys; weeks ``YYYY-Www`` sort after every day of the year, and
  ``begins_with(period, "2026-W")`` selects them).
* which values of a dimension had usage in some periods — ``BatchGetItem`` of their
  ``(index#<dimension>, <period>)`` items, then ``BatchGetItem`` of the counters
  (:mod:`insightmesh.llm.usage_report`); never a Scan. An index item holds every value of its
  period: a month's users at ~30 bytes each stay under DynamoDB's 400 KB item limit up to ~13,000
  users, and a write costs one WCU per KB of the item — which is why a container adds a value to
  a period's index at most once an hour (``INDEXED_CACHE_SECONDS``).
* the LLM calls of one request — ``Query`` on ``request#<request id>``.
* feedback on an agent's replies — :class:`FeedbackCounts`, subject ``feedback#<agent>``, the
  same day key, ``up`` and ``down``: ``record_feedback`` is one ``UpdateItem ADD`` per vote (a
  changed vote moves one count from the old side to the new on the day of the change, so a day's
  side may dip below zero while the sum over days stays right), fail-soft like ``record_usage``.
  Counting the per-thread feedback items instead would need a Scan.

Each completion also prints one CloudWatch EMF line (namespace ``InsightMesh``: ``LlmInputTokens``,
``LlmOutputTokens``, ``LlmCostUSD``, dimension ``Model``) when its model is known.

pynamodb (and botocore) cost ~100 ms to import: the conversation worker imports this module when
it records the first usage, not at cold start (``insightmesh.llm`` exposes it lazily).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict
from pynamodb.attributes import ListAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.update import Action
from pynamodb.models import Model

from insightmesh import tracing_messaging
from insightmesh.aws import model_meta
from insightmesh.caching import TtlCache
from insightmesh.llm.base import Usage
from insightmesh.llm.pricing import cost_micros, pricing_settings
from insightmesh.observability import get_logger

Dimension = Literal["workspace", "agent", "user", "group", "channel", "model"]
"""What usage is counted by (issue 16): the counter of one value of a dimension is the subject
``<dimension>#<value>`` (``agent#help``, ``user#<user id>``, ``group#sales``, ``channel#C1``,
``model#gpt-4o-mini``, ``workspace#T1``)."""
DIMENSIONS: Final[tuple[Dimension, ...]] = ("workspace", "agent", "user", "group", "channel", "model")
PeriodKind = Literal["day", "week", "month"]
"""The periods counted: a day ``2026-12-07``, an ISO week ``2026-W49``, a month ``2026-12`` (UTC)."""
PERIOD_KINDS: Final[tuple[PeriodKind, ...]] = ("day", "week", "month")
MICROS_PER_USD: Final = 1_000_000
AGENT_PREFIX: Final = "agent#"
USER_PREFIX: Final = "user#"
FEEDBACK_PREFIX: Final = "feedback#"
Vote = Literal["up", "down"]
PERIOD_FORMAT: Final = "%Y-%m-%d"
INDEX_PREFIX: Final = "index#"
REQUEST_PREFIX: Final = "request#"
METRICS_NAMESPACE: Final = "InsightMesh"
WRITE_THREADS: Final = 8  # under botocore's 10 pooled connections per client
WRITE_TIMEOUT_SECONDS: Final = 10.0  # > connect (1 s) + read (2 s) x 3 attempts: a stuck write is given up
INDEXED_CACHE_SECONDS: Final = 3600.0
USAGE_QUEUE_VARIABLE: Final = "USAGE_QUEUE_URL"
# One quick attempt and one retry (as the conversation enqueue): past that the direct writes take over.
SEND_CONNECT_SECONDS: Final = 0.5
SEND_READ_SECONDS: Final = 1.0
_indexed: TtlCache[tuple[str, str, str], bool] = TtlCache(INDEXED_CACHE_SECONDS, max_entries=8192)
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


class UsageRecord(Model):
    """Token counters of one subject (an agent or a user) for one UTC day."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    prompt_tokens = NumberAttribute(default=0)
    completion_tokens = NumberAttribute(default=0)
    calls = NumberAttribute(default=0)
    cost_micros = NumberAttribute(default=0)  # computed cost in millionths of a US dollar (integers add exactly)
    expires_at = TTLAttribute(null=True)  # the table's TTL attribute: never set on a counter (the history)

    @property
    def total_tokens(self) -> int:
        return int(self.prompt_tokens) + int(self.completion_tokens)


class UsageIndex(Model):
    """Which values of one dimension had usage in one period: subject ``index#<dimension>``
    (``index#user``), period a day, week or month key, ``members`` a string set ADDed to."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    members = UnicodeSetAttribute(default=set)
    expires_at = TTLAttribute(null=True)  # never set: the index lives as long as the counters it lists


class UsageCall(Model):
    """One completion: subject ``request#<request id>`` (a new id when the caller had none),
    period ``<ISO time>#<8 hex>`` (one request may call the model several times), expiring after
    ``USAGE_REQUEST_RETENTION_DAYS`` (the table's TTL attribute ``expires_at``)."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    request_id = UnicodeAttribute()
    agent = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    groups = ListAttribute(of=UnicodeAttribute, null=True)
    channel = UnicodeAttribute(null=True)
    workspace = UnicodeAttribute(null=True)
    model = UnicodeAttribute(null=True)
    prompt_tokens = NumberAttribute(default=0)
    completion_tokens = NumberAttribute(default=0)
    cost_micros = NumberAttribute(default=0)
    at = UnicodeAttribute()
    expires_at = TTLAttribute(null=True)

    @classmethod
    def of(cls, pairs: Sequence[tuple[Dimension, str]], usage: Usage, cost: int, *, request_id: str | None,
           when: datetime) -> UsageCall:
        values: dict[Dimension, list[str]] = {}
        for dimension, value in pairs:
            values.setdefault(dimension, []).append(value)
        request = request_id or uuid.uuid4().hex
        retention = timedelta(days=pricing_settings().USAGE_REQUEST_RETENTION_DAYS)
        return cls(f"{REQUEST_PREFIX}{request}", f"{when.isoformat()}#{uuid.uuid4().hex[:8]}", request_id=request,
                   agent=_one(values, "agent"), user_id=_one(values, "user"), groups=values.get("group") or None,
                   channel=_one(values, "channel"), workspace=_one(values, "workspace"), model=_one(values, "model"),
                   prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, cost_micros=cost,
                   at=when.isoformat(), expires_at=when + retention)


def _one(values: dict[Dimension, list[str]], dimension: Dimension) -> str | None:
    found = values.get(dimension)
    return found[0] if found else None


class FeedbackCounts(Model):
    """👍 (``up``) and 👎 (``down``) votes on one agent's replies on one UTC day."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    up = NumberAttribute(default=0)
    down = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)  # the table's TTL attribute: never set on feedback counts


def feedback_subject(agent: str) -> str:
    return f"{FEEDBACK_PREFIX}{agent}"


def agent_subject(agent: str) -> str:
    return f"{AGENT_PREFIX}{agent}"


def user_subject(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


def index_subject(dimension: Dimension) -> str:
    """The subject of the index items of ``dimension``: ``index#user``."""
    return f"{INDEX_PREFIX}{dimension}"


def subject_of(dimension: Dimension, value: str) -> str:
    """The counter subject of one value of a dimension (``group#sales``)."""
    return f"{dimension}#{value}"


def period_key(kind: PeriodKind, when: datetime | None = None) -> str:
    """The key of the ``kind`` period holding ``when`` (now by default; naive is UTC): ``2026-12-07``,
    ``2026-W49`` (ISO week: it may belong to the neighbouring year) or ``2026-12``."""
    moment = when or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if kind == "day":
        return moment.strftime(PERIOD_FORMAT)
    if kind == "week":
        return moment.strftime("%G-W%V")
    return moment.strftime("%Y-%m")


def period_of(when: datetime | None = None) -> str:
    """The UTC day of ``when`` (now by default); a naive datetime is taken to be UTC."""
    moment = when or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime(PERIOD_FORMAT)


def _utc(when: datetime | None) -> datetime:
    moment = when or datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def dimension_values(*, agent: str, user_id: str | None, model: str | None = None, channel: str | None = None,
                     groups: Sequence[str] = (), workspace: str | None = None) -> list[tuple[Dimension, str]]:
    """The (dimension, value) pairs one completion is counted under, in ``DIMENSIONS`` order; an
    empty value is left out (a research run has no channel, a test no workspace)."""
    given: dict[Dimension, Sequence[str | None]] = {
        "workspace": (workspace,), "agent": (agent,), "user": (user_id,), "group": sorted(set(groups)),
        "channel": (channel,), "model": (model,)}
    return [(dimension, value) for dimension in DIMENSIONS for value in given[dimension] if value]


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="usage")
        return _executor


def _add_counts(counts: Counts) -> None:
    UsageRecord(counts.subject, counts.period).update(actions=[
        UsageRecord.prompt_tokens.add(counts.usage.prompt_tokens),
        UsageRecord.completion_tokens.add(counts.usage.completion_tokens),
        UsageRecord.calls.add(counts.calls),
        UsageRecord.cost_micros.add(counts.cost),
    ])


def _add_to_index(dimension: Dimension, period: str, values: frozenset[str]) -> None:
    UsageIndex(index_subject(dimension), period).update(actions=[UsageIndex.members.add(set(values))])
    for value in values:
        _indexed.put((dimension, period, value), True)


def _index_writes(pairs: Sequence[tuple[Dimension, str]], periods: Sequence[str]) -> list[IndexWrite]:
    """The index items to ADD to for one completion (see :func:`not_indexed`)."""
    writes = []
    for dimension in DIMENSIONS:
        values = [value for kind, value in pairs if kind == dimension]
        for period in periods:
            if new := not_indexed(dimension, period, values):
                writes.append((dimension, period, new))
    return writes


def not_indexed(dimension: Dimension, period: str, values: Iterable[str]) -> frozenset[str]:
    """The ``values`` this container has not added to the period's index item lately: only those
    are ADDed (an ADD of a member already there changes nothing, so skipping it loses nothing)."""
    return frozenset(value for value in values if _indexed.get((dimension, period, value)) is None)


def forget_indexed() -> None:
    """Forget which values this container indexed (tests: a fresh table)."""
    _indexed.invalidate()


def emit_metrics(model: str, usage: Usage, cost: int, *, when: datetime) -> None:
    """One CloudWatch embedded-metric-format line per completion: namespace ``InsightMesh``,
    ``LlmInputTokens`` and ``LlmOutputTokens`` (Count), ``LlmCostUSD`` (None), dimension ``Model``."""
    line = {
        "_aws": {"Timestamp": int(when.timestamp() * 1000), "CloudWatchMetrics": [{
            "Namespace": METRICS_NAMESPACE, "Dimensions": [["Model"]],
            "Metrics": [{"Name": "LlmInputTokens", "Unit": "Count"}, {"Name": "LlmOutputTokens", "Unit": "Count"},
                        {"Name": "LlmCostUSD", "Unit": "None"}]}]},
        "Model": model,
        "LlmInputTokens": usage.prompt_tokens,
        "LlmOutputTokens": usage.completion_tokens,
        "LlmCostUSD": cost / MICROS_PER_USD,
    }
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class UsageMessage(BaseModel):
    """One completion on the usage queue (``USAGE_QUEUE_URL``): what :func:`record_usage` would
    write, for the usage aggregator to add up. ``call`` is the per-completion record
    (``UsageCall.to_simple_dict``): saved as is, so a redelivered message overwrites its own record."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[tuple[Dimension, str]]
    at: datetime
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    call: dict[str, Any]

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    @property
    def periods(self) -> list[str]:
        return [period_key(kind, self.at) for kind in PERIOD_KINDS]

    def usage_call(self) -> UsageCall:
        call = UsageCall()
        call.from_simple_dict(self.call)
        return call


def usage_message(pairs: Sequence[tuple[Dimension, str]], usage: Usage, cost: int, call: UsageCall, *,
                  when: datetime) -> UsageMessage:
    return UsageMessage(pairs=list(pairs), at=when, prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens, cost_micros=cost, call=call.to_simple_dict())


def _send(url: str, message: UsageMessage, correlation_id: str) -> bool:
    """Send one completion to the usage queue; False (logged) when SQS cannot take it."""
    from insightmesh.aws import client
    from insightmesh.resilience import Timeouts

    try:
        with tracing_messaging.send_span(url) as span:
            response = client("sqs", timeouts=Timeouts(SEND_CONNECT_SECONDS, SEND_READ_SECONDS),
                              attempts=2).send_message(
                QueueUrl=url, MessageBody=message.model_dump_json(),
                MessageAttributes=tracing_messaging.message_attributes(correlation_id))
            tracing_messaging.sent(span, response)
    except (BotoCoreError, ClientError) as error:
        get_logger().warning("llm usage not queued; writing it directly", extra={"error": str(error)})
        return False
    return True


def record_usage(*, agent: str, user_id: str | None, usage: Usage, model: str | None = None, channel: str | None = None,
                 groups: Sequence[str] = (), workspace: str | None = None, request_id: str | None = None,
                 when: datetime | None = None, background: bool = False) -> None:
    """Add one completion to the counters of every dimension value it has, for its day, ISO week
    and month, and keep one per-request record of it (see the module docstring).

    With ``model`` (the model that answered: ``Completion.model``), its cost is computed from the
    model's price (:mod:`insightmesh.llm.pricing`, cached) and an EMF metric line is printed.
    With ``USAGE_QUEUE_URL`` set, the completion is one SQS message (correlation id: the request
    id) and the usage aggregator writes it; else, or if the send fails, the writes run
    concurrently on a small shared pool and this returns when all are done — or, with
    ``background``, as soon as they are submitted: the caller then calls :func:`drain_usage`
    before its invocation ends (the conversation worker: after the reply is out).

    ``user_id`` None: no one asked (a background job: the nightly quality check counts under its
    agent and model only); an empty one is a caller that lost its user, logged.

    Never raises for a storage failure: accounting must not cost anyone their reply.
    """
    logger = get_logger()
    for kind, name in (("agent", agent), ("user", user_id)):
        if name == "":
            logger.warning("llm usage not recorded: no subject", extra={"subject_kind": kind})
    moment = _utc(when)
    cost = cost_micros(model, usage) if model else 0
    pairs = dimension_values(agent=agent, user_id=user_id, model=model, channel=channel, groups=groups,
                             workspace=workspace)
    call = UsageCall.of(pairs, usage, cost, request_id=request_id, when=moment)
    if model:
        emit_metrics(model, usage, cost, when=moment)
    url = os.environ.get(USAGE_QUEUE_VARIABLE)
    if url and _send(url, usage_message(pairs, usage, cost, call, when=moment), str(call.request_id)):
        return
    periods = [period_key(kind, moment) for kind in PERIOD_KINDS]
    batch = submit_writes([Counts(subject_of(dimension, value), period, usage, cost)
                           for dimension, value in pairs for period in periods],
                          _index_writes(pairs, periods), [call])
    if background:
        with _executor_lock:
            _pending.append(batch)
    else:
        batch.settle()


@dataclass(frozen=True)
class Counts:
    """What to ADD to one counter: tokens, cost and ``calls`` completions."""

    subject: str
    period: str
    usage: Usage
    cost: int
    calls: int = 1


IndexWrite = tuple[Dimension, str, frozenset[str]]
"""The values to ADD to one index item: (dimension, period, values)."""


def submit_writes(counts: Sequence[Counts], index: Sequence[IndexWrite], calls: Sequence[UsageCall]) -> _Batch:
    """Start writing on the shared pool: one ``UpdateItem ADD`` per counter and per index item, and
    the per-completion records (one ``PutItem``; several: ``BatchWriteItem``, 25 a request)."""
    tasks: list[tuple[str, Callable[[], object]]] = [
        (item.subject.split("#", 1)[0], partial(_add_counts, item)) for item in counts]
    tasks += [(f"index#{dimension}", partial(_add_to_index, dimension, period, values))
              for dimension, period, values in index]
    if len(calls) == 1:
        tasks.append(("request", calls[0].save))
    elif calls:
        tasks.append(("request", partial(_save_calls, calls)))
    pool = _pool()
    return _Batch({pool.submit(task): label for label, task in tasks},
                  counts[0].period if counts else "")


def _save_calls(calls: Sequence[UsageCall]) -> None:
    with UsageCall.batch_write() as batch:
        for call in calls:
            batch.save(call)


@dataclass
class _Batch:
    """The writes of one completion, in flight on the pool."""

    futures: dict[Future[object], str]
    period: str

    def settle(self, timeout: float = WRITE_TIMEOUT_SECONDS) -> bool:
        """Wait for every write (each at most ``timeout``); one warning if any failed. True if none did."""
        failed = []
        for future, label in self.futures.items():
            try:
                future.result(timeout=timeout)
            except (PynamoDBException, FutureTimeout) as error:
                failed.append((label, str(error)))
        if failed:
            get_logger().warning(
                "llm usage not recorded; storage unavailable",
                extra={"subject_kinds": sorted({label for label, _ in failed}), "failed": len(failed),
                       "writes": len(self.futures), "period": self.period, "error": failed[0][1]})
        return not failed


_pending: list[_Batch] = []


def drain_usage() -> None:
    """Wait for the usage recorded with ``background=True`` to be written (failures logged, never
    raised): the conversation worker calls it when a request is done, before Lambda may freeze
    the container with writes in flight."""
    with _executor_lock:
        batches = _pending[:]
        _pending.clear()
    for batch in batches:
        batch.settle()


def usage_for(subject: str, period: str) -> UsageRecord | None:
    """The counters of ``subject`` (``agent#...``/``user#...``) on day ``period``, or None."""
    try:
        return UsageRecord.get(subject, period)
    except UsageRecord.DoesNotExist:
        return None


def record_feedback(*, agent: str, vote: Vote, previous: str | None = None, when: datetime | None = None) -> None:
    """Count one vote on ``agent``'s reply for the day; ``previous`` is the voter's earlier vote on the
    same reply (the same vote again counts nothing). Never raises for a storage failure."""
    if previous == vote:
        return
    side = {"up": FeedbackCounts.up, "down": FeedbackCounts.down}
    actions: list[Action] = [side[vote].add(1)]
    if previous in side:
        actions.append(side[previous].add(-1))
    period = period_of(when)
    try:
        FeedbackCounts(feedback_subject(agent), period).update(actions=actions)
    except PynamoDBException as error:
        get_logger().warning("feedback not counted; storage unavailable",
                             extra={"agent": agent, "period": period, "error": str(error)})
