"""Another user's API tokens, for admins: ``GET /api/users/{id}/tokens`` and
``DELETE /api/users/{id}/tokens/{token_id}``.

Admins only (a member gets 403, audited by the guard; an API token needs ``admin:read`` to list and
``admin:write`` to revoke). The logic is the one behind ``/api/me/tokens``
(:mod:`insightmesh.admin.tokens`); an unknown user is a 404 (one GetItem first), and a revocation is
audited ``token.revoke`` on ``user:<id>`` with the admin as actor.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from insightmesh.admin import tokens, users
from insightmesh.admin.me_routes import TokenIdPath
from insightmesh.admin.schemas import USER_ID_PATTERN, TokenList, TokenOut
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, responses
from insightmesh.auth.guard import authenticate_admin

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The directory user id.")]


def register_user_token_routes(app: InsightMeshResolver) -> None:
    """Add the routes to ``app`` (after ``register_admin_routes``, which adds the "users" tag)."""

    @app.get("/api/users/<user_id>/tokens", summary="A user's API tokens", tags=["users"], security=SECURITY,
             description="Every token of the user, newest first (revoked and expired included). Never a secret.",
             responses=responses(200, "The user's tokens", 403, 404))
    def list_user_tokens(user_id: UserIdPath) -> TokenList:
        authenticate_admin(app, action="token.read", target=users.target(user_id))
        users.require_user(user_id)
        return tokens.tokens_of(user_id)

    @app.delete("/api/users/<user_id>/tokens/<token_id>", summary="Revoke a user's API token", tags=["users"],
                security=SECURITY,
                description="Revoking a revoked token again is harmless. A token of another user, or none: 404. "
                            "Audited (token.revoke on user:<id>).",
                responses=responses(200, "The token, revoked", 403, 404))
    def revoke_user_token(user_id: UserIdPath, token_id: TokenIdPath) -> TokenOut:
        principal = authenticate_admin(app, action="token.revoke", target=users.target(user_id))
        users.require_user(user_id)
        return tokens.revoke(user_id, token_id, actor=principal, request_id=app.correlation_id,
                             missing=f"user {user_id!r} has no token {token_id!r}")


__all__ = ["register_user_token_routes"]
