"""The admin API's resolver, built in one place: ``functions/admin_api`` serves it, and the console
dispatches to it in-process (``functions/console``), so no route is registered twice by hand."""

from __future__ import annotations

from insightmesh.admin.budgets import register_budget_routes
from insightmesh.admin.channels import register_channel_routes
from insightmesh.admin.eval_cases import register_eval_case_routes
from insightmesh.admin.feedback import register_feedback_routes
from insightmesh.admin.me_routes import register_me_routes
from insightmesh.admin.models import register_model_routes
from insightmesh.admin.operations import register_operations_routes
from insightmesh.admin.research_runs import register_research_run_routes
from insightmesh.admin.routes import register_admin_routes
from insightmesh.admin.user_token_routes import register_user_token_routes
from insightmesh.admin.workspaces import register_workspace_routes
from insightmesh.api import InsightMeshResolver, create_app
from insightmesh.auth.routes import register_auth_routes


def build_admin_app() -> InsightMeshResolver:
    """The control plane under /api (agents, grants, groups, users, audit, me, workspaces) and /auth."""
    app = create_app("admin_api", title="InsightMesh admin API", openapi_path="/api/openapi.json", json_only=True)
    register_admin_routes(app)
    register_me_routes(app)
    register_user_token_routes(app)
    register_workspace_routes(app)
    register_feedback_routes(app)
    register_eval_case_routes(app)
    register_channel_routes(app)
    register_budget_routes(app)
    register_operations_routes(app)
    register_model_routes(app)
    register_research_run_routes(app)
    register_auth_routes(app)
    return app


__all__ = ["build_admin_app"]
