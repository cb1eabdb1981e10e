"""``GET /api/workspaces``: which Slack workspaces the bot is active in (admins only).

A workspace is listed once it has a recorded state: uninstalled or its bot token revoked
(``active: false``), or reinstalled since (``active: true``). A workspace never listed is active.
One Query (see :mod:`insightmesh.conversation.workspaces`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, responses
from insightmesh.auth.guard import authenticate_admin


class WorkspaceOut(BaseModel):
    team_id: str = Field(description="The Slack workspace (team) id.")
    active: bool = Field(description="False: uninstalled or bot token revoked; no Slack or model calls for it.")
    reason: str | None = Field(default=None, description="app_uninstalled, tokens_revoked or reinstalled.")
    changed_at: datetime | None = Field(default=None, description="When the state last changed (UTC).")


class WorkspaceList(BaseModel):
    items: list[WorkspaceOut]


def register_workspace_routes(app: InsightMeshResolver) -> None:
    @app.get("/api/workspaces", summary="Slack workspaces and whether the bot is active in them", tags=["workspaces"],
             security=SECURITY,
             description="Admins only. The workspaces with a recorded state: uninstalled or bot token revoked "
                         "(active false), or reinstalled since. A workspace not listed is active.",
             responses=responses(200, "The workspaces with a recorded state", 403))
    def list_workspaces() -> WorkspaceList:
        authenticate_admin(app, action="workspace.read", target="workspace:*")
        from insightmesh.conversation import workspaces

        return WorkspaceList(items=[WorkspaceOut(team_id=state.team_id, active=state.active, reason=state.reason,
                                                 changed_at=state.changed_at)
                                    for state in workspaces.list_states()])
