"""Usage over the last days, per agent (``GET /api/usage``, admins; the console's dashboard).

Read from the per-subject per-day counters that :mod:`insightmesh.llm.usage` keeps as records are
written (never by scanning): for each agent and each day of the range, the key
``(agent#<name>, <day>)`` of :class:`UsageRecord` and ``(feedback#<name>, <day>)`` of
:class:`FeedbackCounts`, fetched with ``BatchGetItem`` (pynamodb's ``batch_get``: 100 keys a call,
unprocessed keys retried) — ``ceil(agents * days / 100)`` calls per model, fewer than a ``Query``
per subject for up to 14 agents over 7 days. A day without a record counts zero, so every group
has one row per day.

The report's shape is the one issue 16 extends: ``group_by`` (``agent`` today; user, group,
channel, model later), ``period`` (``day`` today; week, month later), a row per group with one
entry per period and the group's totals, and the totals of all groups. New measures (cost) are new
fields of :class:`UsageCounts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Final, Literal

from pydantic import BaseModel, Field

from insightmesh.llm.usage import (
    PERIOD_FORMAT,
    FeedbackCounts,
    UsageRecord,
    agent_subject,
    feedback_subject,
)

MAX_DAYS: Final = 31
GroupBy = Literal["agent"]


class UsageCounts(BaseModel):
    requests: int = Field(default=0, description="LLM calls (completions).")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = Field(default=0, description="prompt_tokens + completion_tokens.")
    feedback_up: int = Field(default=0, description="👍 votes on the group's replies.")
    feedback_down: int = Field(default=0, description="👎 votes on the group's replies.")

    def plus(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(**{name: getattr(self, name) + getattr(other, name) for name in UsageCounts.model_fields})


class PeriodUsage(UsageCounts):
    period: str = Field(description="The UTC day, YYYY-MM-DD.")


class UsageGroup(BaseModel):
    key: str = Field(description="The group's value: the agent's name when group_by is agent.")
    periods: list[PeriodUsage] = Field(description="One entry per period of the range, oldest first.")
    totals: UsageCounts


class UsageReport(BaseModel):
    group_by: GroupBy
    period: Literal["day"] = "day"
    start: str = Field(description="The first day of the range (UTC).")
    end: str = Field(description="The last day of the range (UTC), today.")
    items: list[UsageGroup] = Field(description="Most requests first, then by key.")
    totals: UsageCounts


def days_ending(today: date, days: int) -> list[str]:
    return [(today - timedelta(days=offset)).strftime(PERIOD_FORMAT) for offset in range(days - 1, -1, -1)]


def usage_by_agent(agents: Sequence[str], *, days: int, today: date) -> UsageReport:
    """The usage and feedback of each of ``agents`` on each of the ``days`` days ending ``today``."""
    periods = days_ending(today, days)
    keys = [(name, period) for name in agents for period in periods]
    counts: dict[tuple[str, str], UsageCounts] = {}
    for usage in UsageRecord.batch_get([(agent_subject(name), period) for name, period in keys]):
        counts[(usage.subject.removeprefix("agent#"), usage.period)] = UsageCounts(
            requests=int(usage.calls), prompt_tokens=int(usage.prompt_tokens),
            completion_tokens=int(usage.completion_tokens), tokens=usage.total_tokens)
    for votes in FeedbackCounts.batch_get([(feedback_subject(name), period) for name, period in keys]):
        key = (votes.subject.removeprefix("feedback#"), votes.period)
        counts[key] = counts.get(key, UsageCounts()).model_copy(
            update={"feedback_up": int(votes.up), "feedback_down": int(votes.down)})
    groups = []
    for name in agents:
        rows = [PeriodUsage(period=period, **counts.get((name, period), UsageCounts()).model_dump())
                for period in periods]
        totals = UsageCounts()
        for row in rows:
            totals = totals.plus(row)
        groups.append(UsageGroup(key=name, periods=rows, totals=totals))
    groups.sort(key=lambda group: (-group.totals.requests, group.key))
    overall = UsageCounts()
    for group in groups:
        overall = overall.plus(group.totals)
    return UsageReport(group_by="agent", start=periods[0], end=periods[-1], items=groups, totals=overall)


__all__ = ["MAX_DAYS", "GroupBy", "PeriodUsage", "UsageCounts", "UsageGroup", "UsageReport", "usage_by_agent"]
