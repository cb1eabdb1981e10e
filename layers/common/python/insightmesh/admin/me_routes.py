"""The caller's own API tokens: ``GET /api/me/tokens`` and ``DELETE /api/me/tokens/{token_id}``.

Open to every authenticated user (a token needs ``admin:read`` to list and ``admin:write`` to
revoke, as every /api route); each sees and revokes only their own tokens. Access patterns: one
``Query by-user`` to list; revoking is that Query plus one conditional ``UpdateItem``
(:func:`insightmesh.auth.tokens.revoke_token`), and an audit entry (``token.revoke``).
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler.openapi.params import Path

from insightmesh.admin.schemas import TokenList, TokenOut
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, responses
from insightmesh.api.errors import NotFoundError
from insightmesh.audit import log as audit_log
from insightmesh.auth.guard import authenticate_scoped
from insightmesh.auth.tokens import ApiToken, list_tokens, revoke_token, token_state
from insightmesh.clock import utc_now

TOKEN_ID_PATTERN: Final = r"^[0-9a-f]{16}$"  # noqa: S105  # a pattern, not a secret
TokenIdPath = Annotated[str, Path(pattern=TOKEN_ID_PATTERN, description="The token's public id.")]


def token_out(token: ApiToken) -> TokenOut:
    return TokenOut(token_id=token.token_id, name=token.name, scopes=list(token.scopes or []),
                    state=token_state(token, utc_now()),
                    created_at=token.created_at, expires_at=token.expires_at, revoked_at=token.revoked_at,
                    last_used_at=token.last_used_at)


def register_me_routes(app: InsightMeshResolver) -> None:
    """Add the caller's token routes to ``app`` (after ``register_admin_routes``, which adds the "me" tag)."""
    @app.get("/api/me/tokens", summary="My API tokens", tags=["me"], security=SECURITY,
             responses=responses(200, "Your tokens, newest first"))
    def list_my_tokens() -> TokenList:
        principal = authenticate_scoped(app, action="token.read", target="me")
        return TokenList(items=[token_out(token) for token in list_tokens(principal.user_id)])

    @app.delete("/api/me/tokens/<token_id>", summary="Revoke one of my API tokens", tags=["me"], security=SECURITY,
                description="Revoking a revoked token again is harmless. Another user's token, or none: 404.",
                responses=responses(200, "The token, revoked", 404))
    def revoke_my_token(token_id: TokenIdPath) -> TokenOut:
        principal = authenticate_scoped(app, action="token.revoke", target="me")
        if not revoke_token(token_id, user_id=principal.user_id):
            raise NotFoundError(f"you have no token {token_id!r}")
        audit_log.record(actor=principal, action="token.revoke", target=f"user:{principal.user_id}",
                         after={"token_id": token_id}, request_id=app.correlation_id)
        revoked = next(token for token in list_tokens(principal.user_id) if token.token_id == token_id)
        return token_out(revoked)


__all__ = ["register_me_routes", "token_out"]
