"""HTTP API plumbing shared by every HTTP function: resolver factory, errors, rate limiting."""

from insightmesh.api.app import InsightMeshResolver, create_app
from insightmesh.api.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    ValidationFailedError,
)

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "InsightMeshResolver",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "ValidationFailedError",
    "create_app",
]
