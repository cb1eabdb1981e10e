"""admin_api: the control plane under /api (agents, grants, groups, users, audit, me) and /auth."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.admin.app import build_admin_app
from insightmesh.tracing import flushed

app = build_admin_app()


@flushed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
