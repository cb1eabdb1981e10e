"""console: the browser console under /console/ (and / redirecting there) — a client of /api.

The console renders pages; every read and write goes through the admin and tasks APIs' own
resolver apps, built by the same factories their functions use and called in-process with the
browser's cookie and CSRF token (insightmesh.console.api.InProcessApi).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh.admin.app import build_admin_app
from insightmesh.console import build_console_app
from insightmesh.jobs.app import build_tasks_app
from insightmesh.tracing import flushed

app = build_console_app([build_admin_app(), build_tasks_app()])


@flushed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
