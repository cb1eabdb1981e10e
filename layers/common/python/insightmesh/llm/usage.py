"""LLM token usage per agent and per user per day (``USAGE_TABLE``; template: ``UsageTable``).

Item: ``subject`` (hash key, ``agent#<name>`` or ``user#<slack user id>``), ``period`` (range
key, the UTC day ``YYYY-MM-DD``), ``prompt_tokens``, ``completion_tokens``, ``calls``; or, with
subject ``feedback#<agent>``, ``up`` and ``down`` (:class:`FeedbackCounts`). No TTL, no index: the
table is the usage history.

Access patterns:

* record one completion — ``record_usage``: two ``UpdateItem`` calls, ``ADD prompt_tokens :p,
  completion_tokens :c, calls 1`` on ``(agent#<name>, <day>)`` and on ``(user#<id>, <day>)``.
  ``ADD`` creates the item on the first call of the day and is atomic, so concurrent workers
  never lose an increment and nothing is read first. Accounting fails soft: a DynamoDB error is
  logged as a warning and the reply goes out anyway.
* one subject on one day — ``usage_for(subject, period)``: ``GetItem`` on the full key.
* one subject over a range of days (a month, a billing period) — ``Query`` on ``subject`` with
  ``period BETWEEN :from AND :to`` (or ``begins_with(period, "2025-10")``): the range key sorts
  ISO days chronologically, so no index is needed.
* feedback on an agent's replies — :class:`FeedbackCounts`, subject ``feedback#<agent>``, the
  same day key, ``up`` and ``down``: ``record_feedback`` is one ``UpdateItem ADD`` per vote (a
  changed vote moves one count from the old side to the new on the day of the change, so a day's
  side may dip below zero while the sum over days stays right), fail-soft like ``record_usage``.
  Counting the per-thread feedback items instead would need a Scan.
* many subjects over a few days (the dashboard's usage per agent) — ``BatchGetItem`` on
  (subject, day) keys, 100 keys a call (:mod:`insightmesh.llm.usage_report`).

pynamodb (and botocore) cost ~100 ms to import: the conversation worker imports this module when
it records the first usage, not at cold start (``insightmesh.llm`` exposes it lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.update import Action
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.llm.base import Usage
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


class UsageRecord(Model):
    """Token counters of one subject (an agent or a user) for one UTC day."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    prompt_tokens = NumberAttribute(default=0)
    completion_tokens = NumberAttribute(default=0)
    calls = NumberAttribute(default=0)
    cost_micros = NumberAttribute(default=0)  # computed cost in millionths of a US dollar (integers add exactly)

    @property
    def total_tokens(self) -> int:
        return int(self.prompt_tokens) + int(self.completion_tokens)


class FeedbackCounts(Model):
    """👍 (``up``) and 👎 (``down``) votes on one agent's replies on one UTC day."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    up = NumberAttribute(default=0)
    down = NumberAttribute(default=0)


def feedback_subject(agent: str) -> str:
    return f"{FEEDBACK_PREFIX}{agent}"


def agent_subject(agent: str) -> str:
    return f"{AGENT_PREFIX}{agent}"


def user_subject(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


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


def record_usage(*, agent: str, user_id: str, usage: Usage, model: str | None = None, channel: str | None = None,
                 groups: Sequence[str] = (), workspace: str | None = None, request_id: str | None = None,
                 when: datetime | None = None) -> None:
    """Add one completion's tokens to its agent's and its user's counters for the day.

    CONTRACT (issue 16): with ``model`` (the model that answered: ``Completion.model``), its cost
    is computed from the model's price (:mod:`insightmesh.llm.pricing`) and tokens, calls and
    ``cost_micros`` are added to the counter of every dimension value it has (workspace, agent,
    user, each group, channel, model) for its day, ISO week and month, and one per-request record
    carries them all.

    Never raises for a storage failure: accounting must not cost anyone their reply.
    """
    period = period_of(when)
    logger = get_logger()
    for kind, name, subject in (("agent", agent, agent_subject(agent)), ("user", user_id, user_subject(user_id))):
        if not name:
            logger.warning("llm usage not recorded: no subject", extra={"subject_kind": kind})
            continue
        try:
            UsageRecord(subject, period).update(
                actions=[
                    UsageRecord.prompt_tokens.add(usage.prompt_tokens),
                    UsageRecord.completion_tokens.add(usage.completion_tokens),
                    UsageRecord.calls.add(1),
                ]
            )
        except PynamoDBException as error:
            logger.warning(
                "llm usage not recorded; storage unavailable",
                extra={"subject_kind": kind, "period": period, "error": str(error)},
            )


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
