"""health: GET /health (liveness, no I/O), GET /health/ready (overall status; every table and queue
with an admin's API token), fallback 404."""

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh import __version__
from insightmesh.api import create_app
from insightmesh.api.ratelimit import RateLimiter
from insightmesh.auth.guard import admin_bearer
from insightmesh.config import get_settings
from insightmesh.health.checks import cached_readiness, declared_resources, summary
from insightmesh.tracing import flushed

settings = get_settings()
app = create_app("health", title="InsightMesh health", openapi_path="/health/openapi.json")
readiness_limit = RateLimiter("health-ready", settings.RATE_LIMIT_PER_MINUTE)


@app.get("/health", summary="Liveness: the function answers; no I/O")
def live() -> dict[str, str]:
    return {"status": "ok", "service": settings.SERVICE_NAME, "version": __version__}


@app.get("/health/ready", summary="Readiness: the overall status; each table and queue for an admin token",
         middlewares=[readiness_limit.middleware()])
def ready() -> Response[Any]:
    admin = admin_bearer(app)  # None when anonymous; 401/403 for a token that is not an admin's
    report = cached_readiness(declared_resources(), timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    status = 503 if report["status"] == "down" else 200
    body = report if admin is not None else summary(report)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@flushed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
