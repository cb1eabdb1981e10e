"""What an operator watches (admins only; the console's dashboard reads them):

* ``GET /api/readiness`` — every ``/health/ready`` check with its name, status and detail. The
  health function shows that detail only to an admin's API token (a bearer); this is the same
  report behind the control plane's guard, so that a browser session can read it too. It shares
  the health function's in-process cache (:func:`insightmesh.health.checks.cached_readiness`).
* ``GET /api/queues`` — the depth of every SQS queue and dead-letter queue of the stack
  (:mod:`insightmesh.health.queues`).
* ``GET /api/usage`` — requests, tokens, cost (and 👍/👎 by agent) per agent, user, group,
  channel, model or workspace and per day, ISO week or month, from the usage table's counters and
  index items (:mod:`insightmesh.llm.usage_report`; ``BatchGetItem``, never a Scan).
* ``GET /api/knowledge/summary`` — documents indexed and failed, and chunks
  (:mod:`insightmesh.knowledge.totals`; a bounded count over the ``by-status`` index).

Reads only: nothing here writes, so nothing is audited but a refused attempt (``require_admin``).
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, configure_openapi, responses
from insightmesh.auth.guard import authenticate_admin
from insightmesh.clock import utc_now
from insightmesh.health.queues import QueueList, queue_depths
from insightmesh.knowledge.totals import KnowledgeSummary, knowledge_summary
from insightmesh.llm.usage import PeriodKind
from insightmesh.llm.usage_report import MAX_DAYS, MAX_PERIODS, GroupBy, UsageReport, usage_report

TAGS: Final = [Tag(name="operations", description="Readiness, queues, usage and the knowledge base's size.")]


class CheckOut(BaseModel):
    name: str = Field(description="The environment variable that declares the resource, e.g. USERS_TABLE.")
    kind: str = Field(description="dynamodb_table, sqs_queue, sqs_dlq or knowledge_store.")
    resource: str = Field(description="The table's or queue's name; the knowledge store's host.")
    status: str = Field(description="ok, degraded or down.")
    latency_ms: float
    detail: str


class ReadinessOut(BaseModel):
    status: str = Field(description="The worst of the checks: ok, degraded or down.")
    checks: list[CheckOut]


def register_operations_routes(app: InsightMeshResolver) -> None:
    """Add the operator's read routes to ``app`` (see the module docstring)."""
    configure_openapi(app, description="", tags=TAGS)

    def settings_timeout() -> float:
        from insightmesh.config import get_settings

        return get_settings().HEALTH_CHECK_TIMEOUT_SECONDS

    @app.get("/api/readiness", summary="The readiness of every dependency, check by check", tags=["operations"],
             security=SECURITY, description="What /health/ready checks (every table, queue and the knowledge "
                                            "store), with each check's detail. Always 200 when the report was made: "
                                            "status says how the stack is.",
             responses=responses(200, "The readiness report", 403))
    def get_readiness() -> ReadinessOut:
        authenticate_admin(app, action="health.read", target="health")
        from insightmesh.health.checks import cached_readiness, declared_resources

        report = cached_readiness(declared_resources(), timeout=settings_timeout())
        return ReadinessOut.model_validate(report)

    @app.get("/api/queues", summary="Queue depths and dead-letter counts", tags=["operations"], security=SECURITY,
             description="Every SQS queue of the stack: messages waiting, in flight and delayed. kind dlq marks a "
                         "dead-letter queue. A queue that cannot be read is listed with its error.",
             responses=responses(200, "Every queue, by variable name", 403))
    def list_queues() -> QueueList:
        authenticate_admin(app, action="queue.read", target="queue:*")
        return queue_depths(timeout=settings_timeout())

    @app.get("/api/usage", summary="LLM usage and cost by agent, user, group, channel or model", tags=["operations"],
             security=SECURITY,
             description=f"Grouped by `group_by` (agent, user, group, channel, model or workspace), one row per "
                         f"`period` (day, week or month) over the last `days` UTC days (period day; at most "
                         f"{MAX_DAYS}) or the last `periods` ISO weeks or months (at most {MAX_PERIODS}), the "
                         "current one included: requests, tokens, cost (micro-USD and USD) and, by agent and day, "
                         "👍/👎; with totals per group and overall. Read from counters and index items kept as "
                         "usage is recorded, never by scanning.",
             responses=responses(200, "Usage per group and period", 403))
    def get_usage(
        days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="period day: how many days, ending today.")] = 7,
        group_by: Annotated[GroupBy, Query(description="What to group by.")] = "agent",
        period: Annotated[PeriodKind, Query(description="day, week (ISO) or month (UTC).")] = "day",
        periods: Annotated[int, Query(ge=1, le=MAX_PERIODS, description="period week or month: how many, ending "
                                                                        "with the current one.")] = 4,
    ) -> UsageReport:
        authenticate_admin(app, action="usage.read", target="usage")
        names: list[str] = []
        if group_by == "agent":
            from insightmesh.agents.catalog import list_agents

            names = [record.name for record in list_agents(include_deleted=True)]
        return usage_report(group_by, period=period, count=days if period == "day" else periods,
                            today=utc_now().date(), agents=names)

    @app.get("/api/knowledge/summary", summary="How big the knowledge base is", tags=["knowledge"],
             security=SECURITY,
             description="Documents indexed and failed, and their chunks: a bounded count over the documents' "
                         "status index (complete false past the bound).",
             responses=responses(200, "The knowledge base's totals", 403))
    def get_knowledge_summary() -> KnowledgeSummary:
        authenticate_admin(app, action="knowledge.read", target="knowledge:*")
        return knowledge_summary()


__all__ = ["register_operations_routes"]
