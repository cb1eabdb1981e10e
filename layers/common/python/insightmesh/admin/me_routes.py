"""The caller's own API tokens: ``GET /api/me/tokens`` and ``DELETE /api/me/tokens/{token_id}``;
and their own LLM usage and cost: ``GET /api/me/usage`` (one ``BatchGetItem`` of their
``user#<id>`` counters: :func:`insightmesh.llm.usage_report.usage_of_user`).

Open to every authenticated user (a token needs ``admin:read`` to list and ``admin:write`` to
revoke, as every /api route); each sees and revokes only their own tokens. The logic, shared with the
admin's ``/api/users/{id}/tokens``, and its access patterns: :mod:`insightmesh.admin.tokens`.
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from insightmesh.admin import tokens
from insightmesh.admin.schemas import TokenList, TokenOut
from insightmesh.admin.tokens import token_out
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, responses
from insightmesh.auth.guard import authenticate_scoped
from insightmesh.clock import utc_now
from insightmesh.llm.usage import PeriodKind
from insightmesh.llm.usage_report import MAX_DAYS, MAX_PERIODS, MyUsage, usage_of_user

TOKEN_ID_PATTERN: Final = r"^[0-9a-f]{16}$"  # noqa: S105  # a pattern, not a secret
TokenIdPath = Annotated[str, Path(pattern=TOKEN_ID_PATTERN, description="The token's public id.")]


def register_me_routes(app: InsightMeshResolver) -> None:
    """Add the caller's token routes to ``app`` (after ``register_admin_routes``, which adds the "me" tag)."""
    @app.get("/api/me/tokens", summary="My API tokens", tags=["me"], security=SECURITY,
             responses=responses(200, "Your tokens, newest first"))
    def list_my_tokens() -> TokenList:
        principal = authenticate_scoped(app, action="token.read", target="me")
        return tokens.tokens_of(principal.user_id)

    @app.get("/api/me/usage", summary="My LLM usage and cost", tags=["me"], security=SECURITY,
             description=f"Your requests, tokens and cost per `period` (day, week or month, UTC) over the last "
                         f"`days` days (period day; at most {MAX_DAYS}) or the last `periods` weeks or months (at "
                         f"most {MAX_PERIODS}), the current one included.",
             responses=responses(200, "Your usage per period", 403))
    def get_my_usage(
        period: Annotated[PeriodKind, Query(description="day, week (ISO) or month.")] = "day",
        days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="period day: how many days, ending today.")] = 7,
        periods: Annotated[int, Query(ge=1, le=MAX_PERIODS, description="period week or month: how many.")] = 4,
    ) -> MyUsage:
        principal = authenticate_scoped(app, action="usage.read", target="me")
        return usage_of_user(principal.user_id, period=period, count=days if period == "day" else periods,
                             today=utc_now().date())

    @app.delete("/api/me/tokens/<token_id>", summary="Revoke one of my API tokens", tags=["me"], security=SECURITY,
                description="Revoking a revoked token again is harmless. Another user's token, or none: 404.",
                responses=responses(200, "The token, revoked", 404))
    def revoke_my_token(token_id: TokenIdPath) -> TokenOut:
        principal = authenticate_scoped(app, action="token.revoke", target="me")
        return tokens.revoke(principal.user_id, token_id, actor=principal, request_id=app.correlation_id,
                             missing=f"you have no token {token_id!r}")


__all__ = ["register_me_routes", "token_out"]
