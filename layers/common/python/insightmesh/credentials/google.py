"""Google's OAuth 2.0 endpoints for connecting credentials, through authlib's httpx client.

* :func:`authorization_url` — the consent URL: ``response_type=code``, the requested scopes,
  ``access_type=offline`` and ``prompt=consent`` (so Google returns a refresh token every time),
  ``include_granted_scopes=true``, the ``state`` and a PKCE ``S256`` challenge;
* :func:`exchange_code` — the code (with the PKCE verifier) for tokens: one attempt, a code is
  single-use;
* :func:`refresh` — a new access token from the refresh token: bounded retries of transient
  failures; Google's ``invalid_grant`` (revoked or expired grant) is :class:`CredentialExpiredError`;
* :func:`revoke` — revoke a token (``POST`` to the revocation endpoint): ``True`` when Google
  revoked it or no longer knows it, ``False`` when Google could not be reached.

Every call goes through one process-wide :class:`authlib.integrations.httpx_client.OAuth2Client`
per client configuration (explicit timeouts, no redirects followed), one call at a time per client
(authlib keeps the last token on the client object), and through the ``google-oauth`` circuit
breaker. Tokens are never logged; only Google's error codes are.

Settings (environment variables, read at every call so a rotated secret is picked up):
``GOOGLE_CLIENT_ID``; the secret ``GOOGLE_CLIENT_SECRET`` (the variable, else Secrets Manager via
``GOOGLE_CLIENT_SECRET_SECRET_ID``; empty or ``not-configured`` = not configured → 503);
``GOOGLE_AUTHORIZE_URL``, ``GOOGLE_TOKEN_URL``, ``GOOGLE_REVOKE_URL`` (Google's by default, a
stand-in locally); ``PUBLIC_BASE_URL`` (the redirect URI is ``PUBLIC_BASE_URL`` +
``/api/credentials/google/callback``). Endpoints must use https unless
``OAUTH_INSECURE_TRANSPORT=true``, which production refuses (``insightmesh.config``).
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, GetSecretError
from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.clock import utc_now
from insightmesh.config import ConfigurationError, Environment, get_secret, get_settings, load_settings
from insightmesh.credentials.errors import (
    AuthorizationRefusedError,
    CredentialExpiredError,
    CredentialUnavailableError,
    GoogleNotConfiguredError,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    breaker_for,
    call_with_resilience,
)

with warnings.catch_warnings():
    # authlib prefers the httpx2 package and warns when it falls back to httpx, which this project uses.
    # (authlib.deprecate installs an "always" filter for its warnings on import: ours goes in front of it.)
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401

    warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=DeprecationWarning)
    from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

T = TypeVar("T")

DEFAULT_AUTHORIZE_URL: Final = "https://accounts.google.com/o/oauth2/v2/auth"
DEFAULT_TOKEN_URL: Final = "https://oauth2.googleapis.com/token"  # noqa: S105  # a URL
DEFAULT_REVOKE_URL: Final = "https://oauth2.googleapis.com/revoke"
CALLBACK_PATH: Final = "/api/credentials/google/callback"
NOT_CONFIGURED: Final = "not-configured"  # the template's placeholder secret when none is given
BREAKER: Final = "google-oauth"
# As insightmesh.auth.oidc_provider: connect quickly, bound every read.
HTTP_TIMEOUT: Final = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)
DEFAULT_EXPIRES_IN: Final = 3600
MAX_EXPIRES_IN: Final = 7 * 24 * 3600
REFRESH_RETRY: Final = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, max_retry_after=2.0)
REVOKE_RETRY: Final = RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0, max_retry_after=2.0)


# -- settings ---------------------------------------------------------------------------------


def _absolute_url(value: str, *, query_allowed: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or (
            parts.query and not query_allowed):
        raise ValueError("must be an absolute http(s) URL" + ("" if query_allowed else " without query")
                         + " nor fragment")
    return value


class GoogleSettings(BaseSettings):
    """Field names are the environment variable names. The client secret is not a field: it is
    resolved when needed (see :meth:`client_secret`)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    GOOGLE_CLIENT_ID: str = ""
    GOOGLE_AUTHORIZE_URL: str = DEFAULT_AUTHORIZE_URL
    GOOGLE_TOKEN_URL: str = DEFAULT_TOKEN_URL
    GOOGLE_REVOKE_URL: str = DEFAULT_REVOKE_URL
    PUBLIC_BASE_URL: str = ""

    @field_validator("GOOGLE_CLIENT_ID")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("GOOGLE_AUTHORIZE_URL", "GOOGLE_TOKEN_URL", "GOOGLE_REVOKE_URL", mode="before")
    @classmethod
    def _default_when_empty(cls, value: object, info: Any) -> object:
        if isinstance(value, str) and not value.strip():
            return {"GOOGLE_AUTHORIZE_URL": DEFAULT_AUTHORIZE_URL, "GOOGLE_TOKEN_URL": DEFAULT_TOKEN_URL,
                    "GOOGLE_REVOKE_URL": DEFAULT_REVOKE_URL}[info.field_name]
        return value

    @field_validator("GOOGLE_AUTHORIZE_URL", "GOOGLE_TOKEN_URL", "GOOGLE_REVOKE_URL")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _absolute_url(value.strip(), query_allowed=False)

    @field_validator("PUBLIC_BASE_URL")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        return _absolute_url(value, query_allowed=False) if value else value

    @model_validator(mode="after")
    def _https_in_production(self) -> GoogleSettings:
        if self.ENVIRONMENT is Environment.PRODUCTION:
            insecure = [name for name in ("GOOGLE_AUTHORIZE_URL", "GOOGLE_TOKEN_URL", "GOOGLE_REVOKE_URL",
                                          "PUBLIC_BASE_URL")
                        if getattr(self, name) and not getattr(self, name).startswith("https://")]
            if insecure:
                raise ValueError(f"{', '.join(insecure)} must use https in production")
        return self

    @property
    def redirect_uri(self) -> str:
        return self.PUBLIC_BASE_URL + CALLBACK_PATH

    def client_secret(self) -> str:
        """The client secret, or ``""`` when none is configured (``not-configured`` counts as none)."""
        try:
            value = get_secret("GOOGLE_CLIENT_SECRET", default="")
        except (GetParameterError, GetSecretError) as error:
            get_logger().warning("google client secret unavailable", extra={"error_type": type(error).__name__})
            raise CredentialUnavailableError("the Google client secret could not be read; try again shortly") from error
        value = value.strip()
        return "" if value == NOT_CONFIGURED else value


def google_settings() -> GoogleSettings:
    """The settings, from the environment now; ConfigurationError names a bad variable."""
    return load_settings(GoogleSettings)


def validate_settings() -> None:
    """Fail a cold start on a malformed variable (an unconfigured client is not an error)."""
    google_settings()


@dataclass(frozen=True)
class GoogleClient:
    """The configuration of one OAuth client (the secret is never shown by ``repr``)."""

    settings: GoogleSettings
    secret: str = field(repr=False)


def _require_secure(url: str, what: str) -> None:
    if urlsplit(url).scheme != "https" and not get_settings().OAUTH_INSECURE_TRANSPORT:
        raise GoogleNotConfiguredError(f"Google's {what} must use https "
                                       "(OAUTH_INSECURE_TRANSPORT allows http outside production)")


def configured_client(*, need_secret: bool = True) -> GoogleClient:
    """The configured client, or GoogleNotConfiguredError (503) naming what is missing."""
    try:
        settings = google_settings()
    except ConfigurationError as error:
        raise GoogleNotConfiguredError(f"the Google OAuth client is misconfigured: {error}") from error
    secret = settings.client_secret() if need_secret else ""
    missing = [name for name, value in (("GOOGLE_CLIENT_ID", settings.GOOGLE_CLIENT_ID),
                                        ("GOOGLE_CLIENT_SECRET", secret if need_secret else "-"),
                                        ("PUBLIC_BASE_URL", settings.PUBLIC_BASE_URL)) if not value]
    if missing:
        raise GoogleNotConfiguredError("connecting Google credentials is not configured: set "
                                       + ", ".join(missing))
    for url, what in ((settings.GOOGLE_AUTHORIZE_URL, "authorization endpoint"),
                      (settings.GOOGLE_TOKEN_URL, "token endpoint"),
                      (settings.GOOGLE_REVOKE_URL, "revocation endpoint")):
        _require_secure(url, what)
    return GoogleClient(settings=settings, secret=secret)


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenSet:
    """Tokens from Google's token endpoint. ``repr`` shows no token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scopes: tuple[str, ...]
    token_type: str = "Bearer"  # noqa: S105  # a token type, not a token

    def payload(self) -> dict[str, Any]:
        """What is sealed on the credential."""
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": self.token_type}


def _token_set(token: Mapping[str, Any], *, requested: Iterable[str], refresh_token: str | None = None) -> TokenSet:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise RetryableError("token endpoint: no access_token in the answer")
    expires_in: Any = token.get("expires_in", DEFAULT_EXPIRES_IN)
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        seconds = DEFAULT_EXPIRES_IN
    if not math.isfinite(seconds):
        seconds = DEFAULT_EXPIRES_IN
    seconds = min(max(seconds, 0.0), MAX_EXPIRES_IN)
    scope = token.get("scope")
    scopes = tuple(sorted(set(scope.split()))) if isinstance(scope, str) and scope.strip() else tuple(sorted(requested))
    refresh = token.get("refresh_token")
    token_type = token.get("token_type")
    return TokenSet(access_token=access_token,
                    refresh_token=refresh if isinstance(refresh, str) and refresh else refresh_token,
                    expires_at=utc_now() + timedelta(seconds=seconds), scopes=scopes,
                    token_type=token_type if isinstance(token_type, str) and token_type else "Bearer")


# -- the authlib client -----------------------------------------------------------------------


class OAuthRefusal(Exception):
    """Google answered with an OAuth error (``error`` is its code): the endpoint is up."""

    def __init__(self, error: str) -> None:
        super().__init__(f"google refused: {error}")
        self.error = error


_clients_lock = threading.Lock()
_clients: dict[tuple[str, str, str], tuple[Any, threading.Lock]] = {}


def _client(google: GoogleClient) -> tuple[Any, threading.Lock]:
    """The process-wide authlib client of this configuration, and the lock to use it under."""
    settings = google.settings
    key = (settings.GOOGLE_CLIENT_ID, hashlib.sha256(google.secret.encode()).hexdigest(), settings.redirect_uri)
    with _clients_lock:
        entry = _clients.get(key)
        if entry is None:
            if len(_clients) >= 4:  # a rotated secret or changed settings: drop the old clients
                _close_all()
            client = OAuth2Client(client_id=settings.GOOGLE_CLIENT_ID, client_secret=google.secret or None,
                                  redirect_uri=settings.redirect_uri, code_challenge_method="S256",
                                  revocation_endpoint_auth_method="none",
                                  timeout=HTTP_TIMEOUT, follow_redirects=False)
            entry = (client, threading.Lock())
            _clients[key] = entry
        return entry


def _close_all() -> None:
    for client, _ in _clients.values():
        client.close()
    _clients.clear()


def reset_clients() -> None:
    """Close and forget the clients (tests; a rotated configuration)."""
    with _clients_lock:
        _close_all()


def _call(google: GoogleClient, what: str, operation: Callable[[Any], T]) -> T:
    """Run ``operation(client)`` under the client's lock, turning transport failures into
    RetryableError and Google's OAuth errors into OAuthRefusal."""
    client, lock = _client(google)
    with lock:
        try:
            return operation(client)
        except OAuthError as error:
            raise OAuthRefusal(str(getattr(error, "error", "") or "oauth_error")[:64]) from None
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            if status >= 500 or status == 429:
                raise RetryableError(f"{what}: HTTP {status}") from None
            raise OAuthRefusal(f"http_{status}") from None
        except httpx.HTTPError as error:
            raise RetryableError(f"{what}: {type(error).__name__}") from None
        except ValueError as error:  # not a JSON object (authlib), e.g. a gateway's error page
            raise RetryableError(f"{what}: unexpected answer") from error
        finally:
            client.token = None  # keep no token on the shared client


def _unavailable(what: str, error: Exception) -> CredentialUnavailableError:
    get_logger().warning("google oauth unavailable", extra={"what": what, "error": str(error)})
    return CredentialUnavailableError("Google is unavailable; try again shortly")


def _breaker() -> CircuitBreaker:
    return breaker_for(BREAKER, answered=(OAuthRefusal,))


# -- operations -------------------------------------------------------------------------------


def authorization_url(google: GoogleClient, *, state: str, code_verifier: str, scopes: Iterable[str]) -> str:
    """The URL of Google's consent page for this flow (see the module doc)."""
    client, lock = _client(google)
    with lock:
        url, _ = client.create_authorization_url(
            google.settings.GOOGLE_AUTHORIZE_URL, state=state, code_verifier=code_verifier,
            scope=" ".join(scopes), access_type="offline", prompt="consent", include_granted_scopes="true")
    return str(url)


def exchange_code(google: GoogleClient, *, code: str, code_verifier: str, requested: Iterable[str]) -> TokenSet:
    """Trade the authorization code for tokens. AuthorizationRefusedError (400) when Google
    refuses the code, CredentialUnavailableError (503) when it cannot be reached."""
    scopes = tuple(requested)

    def attempt() -> TokenSet:
        token = _call(google, "token endpoint", lambda client: dict(client.fetch_token(
            google.settings.GOOGLE_TOKEN_URL, grant_type="authorization_code", code=code,
            code_verifier=code_verifier)))
        return _token_set(token, requested=scopes)

    try:
        # One attempt: a code is single-use, a retried exchange would only be refused.
        return _breaker().call(attempt)
    except OAuthRefusal as refusal:
        get_logger().info("google refused the code exchange", extra={"oauth_error": refusal.error})
        raise AuthorizationRefusedError("Google refused the authorization code; start again") from None
    except (RetryableError, CircuitOpenError) as error:
        raise _unavailable("token endpoint", error) from None


def refresh(google: GoogleClient, *, refresh_token: str, scopes: Iterable[str]) -> TokenSet:
    """A new access token. CredentialExpiredError when Google refuses the refresh token
    (``invalid_grant``), GoogleNotConfiguredError when it refuses the client,
    CredentialUnavailableError when it cannot be reached."""
    granted = tuple(scopes)

    def attempt() -> TokenSet:
        token = _call(google, "token endpoint", lambda client: dict(client.refresh_token(
            google.settings.GOOGLE_TOKEN_URL, refresh_token=refresh_token)))
        return _token_set(token, requested=granted, refresh_token=refresh_token)

    try:
        return call_with_resilience(_breaker(), attempt, retry=REFRESH_RETRY)
    except OAuthRefusal as refusal:
        get_logger().info("google refused the refresh", extra={"oauth_error": refusal.error})
        if refusal.error == "invalid_grant":
            raise CredentialExpiredError("Google refused to refresh the credential (revoked or expired); "
                                         "connect it again") from None
        if refusal.error in ("invalid_client", "unauthorized_client"):
            raise GoogleNotConfiguredError("Google refused the OAuth client; check GOOGLE_CLIENT_ID and "
                                           "GOOGLE_CLIENT_SECRET") from None
        raise CredentialUnavailableError("Google refused the refresh; try again later") from None
    except (RetryableError, CircuitOpenError) as error:
        raise _unavailable("token endpoint", error) from None


def revoke(google: GoogleClient, *, token: str) -> bool:
    """Revoke ``token`` (a refresh token revokes the whole grant). ``True`` when Google revoked
    it or does not know it (nothing left to revoke); ``False`` when Google could not be reached
    or refused — logged as a warning, without the token."""

    def attempt() -> bool:
        response = _call(google, "revocation endpoint",
                         lambda client: client.revoke_token(google.settings.GOOGLE_REVOKE_URL, token=token))
        status = int(response.status_code)
        if status >= 500 or status == 429:
            raise RetryableError(f"revocation endpoint: HTTP {status}")
        if status == 200:
            return True
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if error == "invalid_token":
            return True  # already revoked or expired: Google holds nothing for it any more
        raise OAuthRefusal(str(error or f"http_{status}")[:64])

    try:
        return call_with_resilience(_breaker(), attempt, retry=REVOKE_RETRY)
    except OAuthRefusal as refusal:
        get_logger().warning("google refused the revocation", extra={"oauth_error": refusal.error})
        return False
    except (RetryableError, CircuitOpenError) as error:
        get_logger().warning("google revocation failed; the grant may still be active",
                             extra={"error": str(error)})
        return False


__all__ = [
    "CALLBACK_PATH",
    "GoogleClient",
    "GoogleSettings",
    "TokenSet",
    "authorization_url",
    "configured_client",
    "exchange_code",
    "google_settings",
    "refresh",
    "reset_clients",
    "revoke",
    "validate_settings",
]
