"""Research runs in the control plane: ``GET /api/research-runs`` (admins: every run, or those in
one status), ``GET /api/research-runs/{run_id}`` (an admin, or the person who asked for it) and
``GET /api/me/research-runs`` (the caller's own runs).

Newest first, one Query per page on an index of the research runs table, never a Scan
(:mod:`insightmesh.research.runs`). A run someone else asked for is a 404 to a non-admin, as a run
that does not exist: whether it exists is not theirs to learn.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, configure_openapi, responses
from insightmesh.api.errors import NotFoundError
from insightmesh.api.pagination import DEFAULT_LIMIT
from insightmesh.auth.guard import authenticate_admin, authenticate_scoped
from insightmesh.research import runs
from insightmesh.research.runs import ResearchRunOut, ResearchRunPage

TAGS: Final = [Tag(name="research", description="Research runs: the profile agent's studies and agents' PDF reports.")]
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"  # a durable execution's name
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run's id.")]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "capped"]


def register_research_run_routes(app: InsightMeshResolver) -> None:
    """Add the research run routes to ``app`` (see the module docstring)."""
    configure_openapi(app, description="", tags=TAGS)

    @app.get("/api/research-runs", summary="Research runs", tags=["research"], security=SECURITY,
             description="Admins only. Newest first; filter by status.",
             responses=responses(200, "A page of research runs", 403))
    def list_research_runs(
        status: Annotated[Status | None, Query(description="Only the runs in this status.")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ResearchRunPage:
        authenticate_admin(app, action="research_run.read", target="research-runs")
        return runs.list_runs(status=status, limit=limit, cursor=cursor)

    @app.get("/api/research-runs/<run_id>", summary="One research run", tags=["research"], security=SECURITY,
             description="An admin, or the person who asked for the run; anyone else gets 404.",
             responses=responses(200, "The run, with its steps", 403, 404))
    def get_research_run(run_id: RunIdPath) -> ResearchRunOut:
        principal = authenticate_scoped(app, action="research_run.read", target=f"research-run:{run_id}")
        run = runs.get_run(run_id, consistent=False)
        if run is None or not (principal.is_admin or run.user_id == principal.user_id):
            raise NotFoundError(f"no research run {run_id!r}")
        return runs.run_out(run)

    @app.get("/api/me/research-runs", summary="My research runs", tags=["me"], security=SECURITY,
             description="The runs you asked for, newest first.",
             responses=responses(200, "A page of your research runs", 403))
    def list_my_research_runs(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> ResearchRunPage:
        principal = authenticate_scoped(app, action="research_run.read", target="me")
        return runs.list_user_runs(principal.user_id, limit=limit, cursor=cursor)


__all__ = ["register_research_run_routes"]
