"""The Dashboard (admins): readiness, queues, task runs, usage, cost and feedback, budgets, the
knowledge base.

Every section is its own API call (``/api/readiness``, ``/api/queues``, ``/api/task-runs``,
``/api/usage`` — with ``/api/models`` for the unpriced models when there is usage to show —,
``/api/budgets``, ``/api/knowledge/summary`` and the first failed documents), and each degrades on
its own: a section whose call fails shows that call's error in place (``role=alert``) and the
others still render. Only a refusal of the caller (401, 403) is the whole page's answer. The usage
chart is an inline SVG drawn here (no chart library: a few rectangles, and no script under the
CSP), with a table of the same figures for screen readers and for reading exact numbers, cost
included (US dollars to the cent). Budgets are listed with their spend in the current period and a
state as :mod:`insightmesh.budgets.check` decides it: ``over`` at or past the limit, ``warning`` at
or past ``warn_at`` of it, ``ok`` below; those that need attention first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.event_handler import Response

from insightmesh.console.api import ApiFailure, ApiResponse
from insightmesh.console.app import ConsoleResolver

USAGE_DAYS: Final = 7
RUNS_SHOWN: Final = 10
FIRST_STATUSES: Final = ("running", "failed", "timed_out")  # shown before the other recent runs
FAILURES_SHOWN: Final = 5
# A usage row with any of these is shown.
MEASURES: Final = ("requests", "tokens", "cost_micros", "feedback_up", "feedback_down")
# The chart's geometry, in SVG user units (the SVG scales to its box through its viewBox).
CHART_WIDTH: Final = 480
LABEL_WIDTH: Final = 120
ROW_HEIGHT: Final = 28
BAR_HEIGHT: Final = 18
VALUE_WIDTH: Final = 140
BUDGETS_SHOWN: Final = 100  # the API's largest page; past it the section says how many it shows
BUDGET_STATES: Final = ("over", "warning", "ok")  # the order they are listed in


@dataclass(frozen=True)
class Section:
    """One section's data, or the error its call answered."""

    data: Any = None
    error: ApiFailure | None = None


@dataclass(frozen=True)
class Bar:
    label: str
    y: int
    width: int
    tokens: int
    requests: int


@dataclass(frozen=True)
class BudgetRow:
    scope: str
    value: str
    period: str
    limit_usd: float
    spent_usd: float
    percent: int  # of the limit spent, rounded down (so 100 means the limit is reached)
    state: str  # one of BUDGET_STATES
    warn_at: float
    resets_at: str


def usd(value: float) -> str:
    """``$1,234.57``: US dollars to the cent; a cost above zero but under half a cent is ``< $0.01``,
    not a misleading ``$0.00``."""
    if 0 < value < 0.005:
        return "< $0.01"
    return f"${value:,.2f}"


def _percent(spent: float, limit: float) -> int:
    """The percent of ``limit`` spent, rounded down, but not below a whole number that float division
    misses by a hair (0.57 / 0.01 is 56.99999999999999: 57%)."""
    return math.floor(spent / limit * 100 + 1e-9) if limit else 0


def budget_rows(items: list[dict[str, Any]]) -> list[BudgetRow]:
    """``GET /api/budgets``' items with their percent and state, over-limit first, then warnings,
    then the others, the most spent (as a share of the limit) first within each."""
    rows = []
    for item in items:
        limit, spent = float(item["limit_usd"]), float(item.get("spent_usd") or 0)
        warn_at = float(item["warn_at"])
        state = "over" if spent >= limit else "warning" if spent >= warn_at * limit else "ok"
        rows.append(BudgetRow(scope=item["scope"], value=item["value"], period=item["period"], limit_usd=limit,
                              spent_usd=spent, percent=_percent(spent, limit), state=state,
                              warn_at=warn_at, resets_at=item["resets_at"]))
    return sorted(rows, key=lambda row: (BUDGET_STATES.index(row.state), -row.spent_usd / (row.limit_usd or 1),
                                         row.scope, row.value))


def unpriced_models(models: dict[str, Any]) -> list[str]:
    """The models used this month that have no price (``GET /api/models``): they cost the default."""
    return [model["model"] for model in models["items"]
            if model["input_usd_per_million"] is None and "used" in model["sources"]]


def _section(answer: ApiResponse) -> Section:
    return Section(data=answer.body) if answer.ok else Section(error=answer.error)


def usage_bars(groups: list[dict[str, Any]]) -> list[Bar]:
    """One bar per agent with requests in the range, its length its share of the most tokens."""
    active = [group for group in groups if group["totals"]["requests"] or group["totals"]["tokens"]]
    most = max((group["totals"]["tokens"] for group in active), default=0) or 1
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    return [Bar(label=group["key"], y=index * ROW_HEIGHT, tokens=group["totals"]["tokens"],
                requests=group["totals"]["requests"],
                width=max(2, round(span * group["totals"]["tokens"] / most)) if group["totals"]["tokens"] else 0)
            for index, group in enumerate(active)]


def register(app: ConsoleResolver) -> None:
    """Add the dashboard's route to ``app``."""

    def runs() -> Section:
        """Running, failed and timed-out runs first (newest first within each), then the latest others."""
        shown: list[dict[str, Any]] = []
        for status in FIRST_STATUSES:
            answer = app.call("GET", "/api/task-runs", query={"status": status, "limit": str(RUNS_SHOWN)})
            if not answer.ok:
                return Section(error=answer.error)
            shown.extend(answer.body["items"])
        latest = app.call("GET", "/api/task-runs", query={"limit": str(RUNS_SHOWN)})
        if not latest.ok:
            return Section(error=latest.error)
        seen = {run["run_id"] for run in shown}
        others = [run for run in latest.body["items"] if run["run_id"] not in seen]
        return Section(data=(shown + others)[:max(RUNS_SHOWN, len(shown))])

    def knowledge() -> Section:
        summary = app.call("GET", "/api/knowledge/summary")
        if not summary.ok:
            return Section(error=summary.error)
        failures: list[dict[str, Any]] = []
        if summary.body["failed"]:
            failed = app.call("GET", "/api/knowledge/documents", query={"status": "failed",
                                                                       "limit": str(FAILURES_SHOWN)})
            if not failed.ok:
                return Section(error=failed.error)
            failures = failed.body["items"]
        return Section(data={**summary.body, "failures": failures})

    def budgets() -> Section:
        answer = app.call("GET", "/api/budgets", query={"limit": str(BUDGETS_SHOWN)})
        if not answer.ok:
            return Section(error=answer.error)
        return Section(data={"rows": budget_rows(answer.body["items"]), "more": bool(answer.body.get("next_cursor"))})

    def unpriced() -> Section:
        """The models used this month without a price; an unreadable list is a note, not the usage's error."""
        answer = app.call("GET", "/api/models")
        return Section(data=unpriced_models(answer.body)) if answer.ok else Section(error=answer.error)

    @app.get("/console/dashboard")
    def _dashboard() -> Response[str]:
        session = app.signed_in()
        readiness = app.call("GET", "/api/readiness")
        if readiness.status in (401, 403):  # the caller, not a source: the API's 403 page (audited)
            return app.failure(readiness.error, session=session)
        usage = _section(app.call("GET", "/api/usage", query={"days": str(USAGE_DAYS), "group_by": "agent"}))
        bars = usage_bars(usage.data["items"]) if usage.data else []
        rows = [group for group in usage.data["items"] if any(group["totals"][measure] for measure in MEASURES)] \
            if usage.data else []
        models = unpriced() if rows else Section()  # no usage shown: no cost to qualify
        if readiness.ok:  # the checks that are not ok first, each group by name as the API lists them
            readiness.body["checks"].sort(key=lambda check: check["status"] == "ok")
        return app.page("dashboard.html", session=session, readiness=_section(readiness),
                        queues=_section(app.call("GET", "/api/queues")), runs=runs(), usage=usage,
                        usage_rows=rows, bars=bars, unpriced=models, budgets=budgets(), usd=usd,
                        chart={"width": CHART_WIDTH, "label": LABEL_WIDTH, "row": ROW_HEIGHT, "bar": BAR_HEIGHT,
                               "value": VALUE_WIDTH, "height": max(1, len(bars)) * ROW_HEIGHT},
                        knowledge=knowledge(), days=USAGE_DAYS)


__all__ = ["BudgetRow", "budget_rows", "register", "unpriced_models", "usage_bars", "usd"]
