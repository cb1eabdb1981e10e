"""A user's API tokens, listed and revoked: one piece of code behind ``/api/me/tokens`` (the caller's
own) and ``/api/users/{id}/tokens`` (an admin, for anyone).

Access patterns: listing is one ``Query by-user`` (:func:`insightmesh.auth.tokens.list_tokens`);
revoking is that Query, one conditional ``UpdateItem`` (:func:`insightmesh.auth.tokens.revoke_token`,
which never touches another user's token), an audit entry ``token.revoke`` on ``user:<owner>`` (the
actor is whoever revoked it), and the Query again for the answer.
"""

from __future__ import annotations

from insightmesh.admin.schemas import TokenList, TokenOut
from insightmesh.api.errors import NotFoundError
from insightmesh.audit import log as audit_log
from insightmesh.auth.principal import Principal
from insightmesh.auth.tokens import ApiToken, list_tokens, revoke_token, token_state
from insightmesh.clock import utc_now


def token_out(token: ApiToken) -> TokenOut:
    return TokenOut(token_id=token.token_id, name=token.name, scopes=list(token.scopes or []),
                    state=token_state(token, utc_now()),
                    created_at=token.created_at, expires_at=token.expires_at, revoked_at=token.revoked_at,
                    last_used_at=token.last_used_at)


def tokens_of(user_id: str) -> TokenList:
    """Every token of ``user_id``, newest first (revoked and expired included)."""
    return TokenList(items=[token_out(token) for token in list_tokens(user_id)])


def revoke(owner_id: str, token_id: str, *, actor: Principal, request_id: str, missing: str) -> TokenOut:
    """Revoke ``owner_id``'s token ``token_id`` (again: harmless) and audit it; ``missing`` is the
    404's message when the owner has no such token."""
    if not revoke_token(token_id, user_id=owner_id):
        raise NotFoundError(missing)
    audit_log.record(actor=actor, action="token.revoke", target=f"user:{owner_id}", after={"token_id": token_id},
                     request_id=request_id)
    return next(token_out(token) for token in list_tokens(owner_id) if token.token_id == token_id)


__all__ = ["revoke", "token_out", "tokens_of"]
