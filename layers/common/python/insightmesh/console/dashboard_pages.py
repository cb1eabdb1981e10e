"""The Dashboard (admins): readiness, queues, task runs, usage and feedback, the knowledge base.

Every section is its own API call (``/api/readiness``, ``/api/queues``, ``/api/task-runs``,
``/api/usage``, ``/api/knowledge/summary`` and the first failed documents), and each degrades on
its own: a section whose call fails shows that call's error in place (``role=alert``) and the
others still render. Only a refusal of the caller (401, 403) is the whole page's answer. The usage
chart is an inline SVG drawn here (no chart library: a few rectangles, and no script under the
CSP), with a table of the same figures for screen readers and for reading exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.event_handler import Response

from insightmesh.console.api import ApiFailure, ApiResponse
from insightmesh.console.app import ConsoleResolver

USAGE_DAYS: Final = 7
RUNS_SHOWN: Final = 10
FIRST_STATUSES: Final = ("running", "failed", "timed_out")  # shown before the other recent runs
FAILURES_SHOWN: Final = 5
MEASURES: Final = ("requests", "tokens", "feedback_up", "feedback_down")  # a usage row with any of them is shown
# The chart's geometry, in SVG user units (the SVG scales to its box through its viewBox).
CHART_WIDTH: Final = 480
LABEL_WIDTH: Final = 120
ROW_HEIGHT: Final = 28
BAR_HEIGHT: Final = 18
VALUE_WIDTH: Final = 140


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
        if readiness.ok:  # the checks that are not ok first, each group by name as the API lists them
            readiness.body["checks"].sort(key=lambda check: check["status"] == "ok")
        return app.page("dashboard.html", session=session, readiness=_section(readiness),
                        queues=_section(app.call("GET", "/api/queues")), runs=runs(), usage=usage,
                        usage_rows=rows, bars=bars,
                        chart={"width": CHART_WIDTH, "label": LABEL_WIDTH, "row": ROW_HEIGHT, "bar": BAR_HEIGHT,
                               "value": VALUE_WIDTH, "height": max(1, len(bars)) * ROW_HEIGHT},
                        knowledge=knowledge(), days=USAGE_DAYS)


__all__ = ["register", "usage_bars"]
