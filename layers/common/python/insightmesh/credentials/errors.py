"""What can go wrong with a credential, in domain terms — each error is also its HTTP answer.

Job types catch :class:`CredentialError` (every error below is one); the HTTP routes let them
reach the resolver's one error handler, which answers with the error envelope and the status of
the :class:`~insightmesh.api.errors.ApiError` each one also is. Messages never contain token
material (they are shown to admins and recorded on task runs).
"""

from __future__ import annotations

from insightmesh.api.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)


class CredentialError(Exception):
    """Base of every credential error (a job that needs a credential catches this)."""


class CredentialNotFoundError(CredentialError, NotFoundError):
    """No credential with this id (never created, or deleted)."""

    code = "credential_not_found"


class CredentialScopeError(CredentialError, ConflictError):
    """The credential was not granted a scope the caller needs: connect it again with that scope."""

    code = "credential_lacks_scope"


class CredentialExpiredError(CredentialError, ConflictError):
    """The credential cannot give an access token any more (revoked at Google, refresh refused,
    or no refresh token and the access token expired): connect it again."""

    code = "credential_expired"


class CredentialUnavailableError(CredentialError, ServiceUnavailableError):
    """Google or KMS is unreachable or misbehaving; retry later (the credential is untouched)."""

    code = "credential_provider_unavailable"


class GoogleNotConfiguredError(CredentialError, ServiceUnavailableError):
    """The Google OAuth client is not configured (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, PUBLIC_BASE_URL)."""

    code = "google_oauth_not_configured"


class AuthorizationStateError(CredentialError, BadRequestError):
    """The callback does not belong to a connect flow that is still open: unknown, replayed or
    expired state, or another admin's. Nothing is stored."""

    code = "invalid_authorization_state"


class AuthorizationRefusedError(CredentialError, BadRequestError):
    """Google did not authorise the connection (consent denied, code refused). Nothing is stored."""

    code = "authorization_refused"


__all__ = [
    "AuthorizationRefusedError",
    "AuthorizationStateError",
    "CredentialError",
    "CredentialExpiredError",
    "CredentialNotFoundError",
    "CredentialScopeError",
    "CredentialUnavailableError",
    "GoogleNotConfiguredError",
]
