"""Usage and cost over the last periods, grouped by a dimension (``GET /api/usage``, admins; the
console's dashboard) or for one user (``GET /api/me/usage``).

Read from the counters and index items that :mod:`insightmesh.llm.usage` keeps as usage is
recorded, never by scanning, with ``BatchGetItem`` (pynamodb's ``batch_get``: 100 keys a call,
unprocessed keys retried):

1. the index items ``(index#<dimension>, <period>)`` of every period of the range — which values
   had usage in which period (one call: at most 31 keys);
2. the counters ``(<dimension>#<value>, <period>)`` of exactly those (value, period) pairs — plus,
   when grouping by agent, every agent of the catalog (so an agent nobody used shows zeros) —
   ``ceil(pairs / 100)`` calls;
3. grouping by agent only: the feedback counts ``(feedback#<agent>, <day>)`` (day periods).

So a report costs ``1 + ceil(pairs / 100) (+ ceil(agents x days / 100))`` calls whatever the size
of the table; a user's own report is one ``BatchGetItem`` of ``(user#<id>, <period>)``. A period
without a counter counts zero, so every group has one row per period.

The ranges: ``day`` — the last ``days`` UTC days (at most ``MAX_DAYS``); ``week`` and ``month`` —
the last ``periods`` ISO weeks or calendar months (at most ``MAX_PERIODS``), today's included.
Costs are summed in micro-USD (exact) and shown in USD too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Final, Literal

from pydantic import BaseModel, Field, computed_field

from insightmesh.llm.usage import (
    MICROS_PER_USD,
    PERIOD_FORMAT,
    Dimension,
    FeedbackCounts,
    PeriodKind,
    UsageIndex,
    UsageRecord,
    feedback_subject,
    index_subject,
    period_key,
    subject_of,
)

MAX_DAYS: Final = 31
MAX_PERIODS: Final = 26  # half a year of weeks; two years of months
GroupBy = Literal["agent", "user", "group", "channel", "model", "workspace"]


class UsageCounts(BaseModel):
    requests: int = Field(default=0, description="LLM calls (completions).")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = Field(default=0, description="prompt_tokens + completion_tokens.")
    cost_micros: int = Field(default=0, description="The cost in millionths of a US dollar (exact).")
    feedback_up: int = Field(default=0, description="👍 votes on the group's replies (by agent, by day).")
    feedback_down: int = Field(default=0, description="👎 votes on the group's replies (by agent, by day).")

    @computed_field(description="The cost in US dollars (cost_micros / 1,000,000).")  # type: ignore[prop-decorator]
    @property
    def cost_usd(self) -> float:
        return self.cost_micros / MICROS_PER_USD

    def plus(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(**{name: getattr(self, name) + getattr(other, name) for name in UsageCounts.model_fields})

    @classmethod
    def of(cls, record: UsageRecord) -> UsageCounts:
        return cls(requests=int(record.calls), prompt_tokens=int(record.prompt_tokens),
                   completion_tokens=int(record.completion_tokens), tokens=record.total_tokens,
                   cost_micros=int(record.cost_micros or 0))


def total(counts: Iterable[UsageCounts]) -> UsageCounts:
    result = UsageCounts()
    for item in counts:
        result = result.plus(item)
    return result


class PeriodUsage(UsageCounts):
    period: str = Field(description="The UTC day (YYYY-MM-DD), ISO week (YYYY-Www) or month (YYYY-MM).")


class UsageGroup(BaseModel):
    key: str = Field(description="The group's value: the agent's name, the directory user id, the group's name, "
                                 "the channel id, the model or the Slack team id.")
    periods: list[PeriodUsage] = Field(description="One entry per period of the range, oldest first.")
    totals: UsageCounts


class UsageReport(BaseModel):
    group_by: GroupBy
    period: PeriodKind = "day"
    start: str = Field(description="The first period of the range (UTC).")
    end: str = Field(description="The last period of the range (UTC), the current one.")
    items: list[UsageGroup] = Field(description="Most requests first, then by key.")
    totals: UsageCounts


class MyUsage(BaseModel):
    user_id: str = Field(description="The caller's directory user id.")
    period: PeriodKind
    start: str
    end: str
    periods: list[PeriodUsage] = Field(description="One entry per period of the range, oldest first.")
    totals: UsageCounts


def days_ending(today: date, days: int) -> list[str]:
    return [(today - timedelta(days=offset)).strftime(PERIOD_FORMAT) for offset in range(days - 1, -1, -1)]


def periods_ending(kind: PeriodKind, today: date, count: int) -> list[str]:
    """The keys of the ``count`` periods of ``kind`` ending with the one holding ``today``, oldest first."""
    if kind == "day":
        return days_ending(today, count)
    if kind == "week":
        return [period_key("week", datetime.combine(today - timedelta(weeks=offset), time()))
                for offset in range(count - 1, -1, -1)]
    months = today.year * 12 + today.month - 1
    return [f"{(months - offset) // 12:04d}-{(months - offset) % 12 + 1:02d}" for offset in range(count - 1, -1, -1)]


def _indexed(dimension: Dimension, periods: Sequence[str]) -> dict[str, set[str]]:
    """Period → the values of ``dimension`` with usage in it: one BatchGetItem of index items."""
    found: dict[str, set[str]] = {period: set() for period in periods}
    for item in UsageIndex.batch_get([(index_subject(dimension), period) for period in periods]):
        found[item.period] = set(item.members or ())
    return found


def _counters(dimension: Dimension, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], UsageCounts]:
    prefix = subject_of(dimension, "")
    return {(record.subject.removeprefix(prefix), record.period): UsageCounts.of(record)
            for record in UsageRecord.batch_get([(subject_of(dimension, value), period) for value, period in pairs])}


def usage_report(group_by: GroupBy, *, period: PeriodKind, count: int, today: date,
                 agents: Sequence[str] = ()) -> UsageReport:
    """The usage of each value of ``group_by`` over the ``count`` periods ending today. Grouped by
    agent, every one of ``agents`` (the catalog) is listed even when unused, with its feedback."""
    periods = periods_ending(period, today, count)
    indexed = _indexed(group_by, periods)
    pairs = {(value, key) for key in periods for value in indexed[key]}
    if group_by == "agent":
        pairs |= {(name, key) for name in agents for key in periods}
    counts = _counters(group_by, sorted(pairs))
    if group_by == "agent" and period == "day":
        for votes in FeedbackCounts.batch_get([(feedback_subject(name), key) for name, key in sorted(pairs)]):
            key = (votes.subject.removeprefix(feedback_subject("")), votes.period)
            counts[key] = counts.get(key, UsageCounts()).model_copy(
                update={"feedback_up": int(votes.up), "feedback_down": int(votes.down)})
    groups = []
    for value in sorted({value for value, _ in pairs}):
        rows = [PeriodUsage(period=key, **counts.get((value, key), UsageCounts()).model_dump(exclude={"cost_usd"}))
                for key in periods]
        groups.append(UsageGroup(key=value, periods=rows, totals=total(rows)))
    groups.sort(key=lambda group: (-group.totals.requests, group.key))
    return UsageReport(group_by=group_by, period=period, start=periods[0], end=periods[-1], items=groups,
                       totals=total(group.totals for group in groups))


def usage_by_agent(agents: Sequence[str], *, days: int, today: date) -> UsageReport:
    """The usage and feedback of each of ``agents`` (and any other agent with usage) on each of
    the ``days`` days ending ``today``."""
    return usage_report("agent", period="day", count=days, today=today, agents=agents)


def usage_of_user(user_id: str, *, period: PeriodKind, count: int, today: date) -> MyUsage:
    """One user's usage over the ``count`` periods ending today: one BatchGetItem."""
    periods = periods_ending(period, today, count)
    counts = _counters("user", [(user_id, key) for key in periods])
    rows = [PeriodUsage(period=key, **counts.get((user_id, key), UsageCounts()).model_dump(exclude={"cost_usd"}))
            for key in periods]
    return MyUsage(user_id=user_id, period=period, start=periods[0], end=periods[-1], periods=rows,
                   totals=total(rows))


__all__ = ["MAX_DAYS", "MAX_PERIODS", "GroupBy", "MyUsage", "PeriodUsage", "UsageCounts", "UsageGroup", "UsageReport",
           "periods_ending", "usage_by_agent", "usage_of_user", "usage_report"]
