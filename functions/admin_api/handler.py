"""admin_api: the control plane under /api (agents, grants, groups, users, audit, me) and /auth."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.admin.routes import register_admin_routes
from insightmesh.admin.workspaces import register_workspace_routes
from insightmesh.api import create_app
from insightmesh.auth.routes import register_auth_routes

app = create_app("admin_api", title="InsightMesh admin API", openapi_path="/api/openapi.json", json_only=True)
register_admin_routes(app)
register_workspace_routes(app)
register_auth_routes(app)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
