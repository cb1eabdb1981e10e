"""health: GET /health (liveness, no I/O), GET /health/ready (every table and queue), fallback 404."""

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from insightmesh import __version__
from insightmesh.api import create_app
from insightmesh.api.ratelimit import RateLimiter
from insightmesh.config import get_settings
from insightmesh.health.checks import check_readiness, declared_resources

settings = get_settings()
app = create_app("health", title="InsightMesh health", openapi_path="/health/openapi.json")
readiness_limit = RateLimiter("health-ready", settings.RATE_LIMIT_PER_MINUTE)


@app.get("/health", summary="Liveness: the function answers; no I/O")
def live() -> dict[str, str]:
    return {"status": "ok", "service": settings.SERVICE_NAME, "version": __version__}


@app.get("/health/ready", summary="Readiness of every table and queue", middlewares=[readiness_limit.middleware()])
def ready() -> Response[Any]:
    report = check_readiness(declared_resources(), timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    status = 503 if report["status"] == "down" else 200
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=report)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
