"""The OpenID Connect identity provider: settings, discovery, JWKS, the code exchange and ID
token validation (signature against the IdP's JWKS, ``iss``, ``aud``, ``azp``,
``exp``/``iat``/``nbf`` with a minute of leeway, ``nonce``). The browser's side of sign-in, the
login state machine, is :mod:`insightmesh.auth.login`. Codes, tokens and the ID token are never
logged.

The discovery document and the JWKS are fetched through one process-wide httpx client with
explicit timeouts, bounded retries and a circuit breaker, and cached per process; the JWKS is
fetched again when an ID token names a key id it does not contain (at most every 30 s).
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from insightmesh.api.errors import ServiceUnavailableError, UnauthorizedError
from insightmesh.config import get_secret, get_settings, load_settings
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitOpenError, RetryableError, RetryPolicy, breaker_for, call_with_resilience

CALLBACK_PATH: Final = "/auth/callback"
CLOCK_LEEWAY_SECONDS: Final = 60
DISCOVERY_MAX_AGE_SECONDS: Final = 24 * 3600
JWKS_MAX_AGE_SECONDS: Final = 3600
JWKS_MIN_REFRESH_SECONDS: Final = 30
SUPPORTED_ID_TOKEN_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
GOOGLE_ISSUER_HOST: Final = "accounts.google.com"
HTTP_TIMEOUT: Final = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)


# -- errors -----------------------------------------------------------------------------------


class LoginRefusedError(UnauthorizedError):
    """The identity provider's answer does not admit this person."""

    code = "login_refused"


class IdentityProviderError(ServiceUnavailableError):
    """The identity provider is unreachable, misbehaving or not configured."""

    code = "identity_provider_unavailable"


# -- settings ---------------------------------------------------------------------------------


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class OidcSettings(BaseSettings):
    """Field names are the environment variable names. The client secret is not a field: it is
    resolved lazily (``OIDC_CLIENT_SECRET``, ``..._SECRET_ID`` or ``..._PARAMETER``) at the code
    exchange. An empty issuer or client id leaves sign-in unconfigured (503), not the API down."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    OIDC_ISSUER: str = ""
    OIDC_CLIENT_ID: str = ""
    OIDC_ALLOWED_DOMAINS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    OIDC_SCOPES: str = "openid email profile"
    PUBLIC_BASE_URL: str = ""

    @field_validator("OIDC_ISSUER", "PUBLIC_BASE_URL")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError("must be an absolute http(s) URL without query or fragment")
        return value

    @field_validator("OIDC_ALLOWED_DOMAINS", mode="before")
    @classmethod
    def _parse_domains(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("OIDC_ALLOWED_DOMAINS")
    @classmethod
    def _normalise_domains(cls, value: list[str]) -> list[str]:
        domains = [domain.strip().lstrip("@").lower() for domain in value]
        for domain in domains:
            if not domain or "@" in domain or "/" in domain or " " in domain:
                raise ValueError(f"not an e-mail domain: {domain!r}")
        return domains

    @field_validator("OIDC_SCOPES")
    @classmethod
    def _require_openid(cls, value: str) -> str:
        scopes = value.split()
        if "openid" not in scopes:
            raise ValueError("must include 'openid'")
        return " ".join(scopes)

    @property
    def configured(self) -> bool:
        return bool(self.OIDC_ISSUER and self.OIDC_CLIENT_ID and self.PUBLIC_BASE_URL)

    @property
    def is_google(self) -> bool:
        """Whether the issuer is Google's (``accounts.google.com``): sign-in then requires the ID
        token's hosted-domain claim ``hd`` to be one of OIDC_ALLOWED_DOMAINS."""
        return urlsplit(self.OIDC_ISSUER).hostname == GOOGLE_ISSUER_HOST

    @property
    def redirect_uri(self) -> str:
        return self.PUBLIC_BASE_URL + CALLBACK_PATH

    def client_secret(self) -> str:
        return get_secret("OIDC_CLIENT_SECRET", default="")


@lru_cache(maxsize=1)
def get_oidc_settings() -> OidcSettings:
    return load_settings(OidcSettings)


def configured_settings() -> OidcSettings:
    """The OIDC settings, or IdentityProviderError (503) when sign-in is not configured."""
    settings = get_oidc_settings()
    if not settings.configured:
        raise IdentityProviderError("sign-in is not configured (OIDC_ISSUER, OIDC_CLIENT_ID, PUBLIC_BASE_URL)")
    return settings


# -- the identity provider --------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


_client_lock = threading.Lock()
_http_client: httpx.Client | None = None
_cache_lock = threading.Lock()
_discovery: dict[str, tuple[float, ProviderMetadata]] = {}
_jwks: dict[str, tuple[float, KeySet]] = {}


def http_client() -> httpx.Client:
    """The process-wide client for the identity provider (explicit timeouts, no redirects)."""
    global _http_client  # one client per process, created on first use
    with _client_lock:
        if _http_client is None:
            _http_client = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                        headers={"Accept": "application/json"})
        return _http_client


def reset_caches() -> None:
    """Forget the discovery documents, key sets and settings (tests; a rotated configuration)."""
    with _cache_lock:
        _discovery.clear()
        _jwks.clear()
    get_oidc_settings.cache_clear()


def _require_secure(url: str, what: str) -> None:
    if urlsplit(url).scheme != "https" and not get_settings().OAUTH_INSECURE_TRANSPORT:
        raise IdentityProviderError(f"the identity provider's {what} must use https "
                                    "(OAUTH_INSECURE_TRANSPORT allows http outside production)")


def _get_json(url: str, what: str) -> dict[str, Any]:
    """GET a JSON object from the identity provider: bounded retries, circuit breaker."""
    _require_secure(url, what)

    def attempt() -> dict[str, Any]:
        try:
            response = http_client().get(url)
        except httpx.HTTPError as error:
            raise RetryableError(f"{what}: {type(error).__name__}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"{what}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise IdentityProviderError(f"the identity provider's {what} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise IdentityProviderError(f"the identity provider's {what} is not JSON") from error
        if not isinstance(body, dict):
            raise IdentityProviderError(f"the identity provider's {what} is not a JSON object")
        return body

    try:
        return call_with_resilience(breaker_for("oidc", answered=(IdentityProviderError,)), attempt,
                                    retry=RetryPolicy(attempts=2, base_delay=0.1, max_delay=0.5, max_retry_after=1))
    except (RetryableError, CircuitOpenError) as error:
        get_logger().warning("identity provider unavailable", extra={"what": what, "error": str(error)})
        raise IdentityProviderError("the identity provider is unavailable; try again shortly") from error


def provider_metadata(issuer: str) -> ProviderMetadata:
    """The issuer's discovery document (cached per process), checked to name the same issuer."""
    now = time.monotonic()
    with _cache_lock:
        cached = _discovery.get(issuer)
    if cached is not None and now - cached[0] < DISCOVERY_MAX_AGE_SECONDS:
        return cached[1]
    document = _get_json(f"{issuer}/.well-known/openid-configuration", "discovery document")
    endpoints = {name: document.get(name) for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")}
    if document.get("issuer") != issuer or not all(isinstance(value, str) and value for value in endpoints.values()):
        raise IdentityProviderError("the identity provider's discovery document does not match OIDC_ISSUER")
    algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    metadata = ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(endpoints["authorization_endpoint"]),
        token_endpoint=str(endpoints["token_endpoint"]),
        jwks_uri=str(endpoints["jwks_uri"]),
        id_token_algorithms=tuple(a for a in algorithms if a in SUPPORTED_ID_TOKEN_ALGORITHMS) or ("RS256",),
        token_auth_methods=tuple(str(method) for method in methods),
    )
    for url, what in ((metadata.authorization_endpoint, "authorization endpoint"),
                      (metadata.token_endpoint, "token endpoint"), (metadata.jwks_uri, "jwks_uri")):
        _require_secure(url, what)
    with _cache_lock:
        _discovery[issuer] = (now, metadata)
    return metadata


def _key_set(jwks_uri: str, *, refresh: bool) -> KeySet:
    now = time.monotonic()
    with _cache_lock:
        cached = _jwks.get(jwks_uri)
    if cached is not None:
        age = now - cached[0]
        if age < JWKS_MAX_AGE_SECONDS and (not refresh or age < JWKS_MIN_REFRESH_SECONDS):
            return cached[1]
    document = _get_json(jwks_uri, "jwks")
    try:
        key_set = KeySet.import_key_set(document)  # type: ignore[arg-type]  # checked by import_key_set
    except (JoseError, KeyError, TypeError, ValueError) as error:
        raise IdentityProviderError("the identity provider's JWKS is not a valid key set") from error
    with _cache_lock:
        _jwks[jwks_uri] = (now, key_set)
    return key_set


def _signing_key(metadata: ProviderMetadata, kid: str | None, alg: str) -> Any:
    for refresh in (False, True):
        key_set = _key_set(metadata.jwks_uri, refresh=refresh)
        candidates = [key for key in key_set if kid is None or key.kid == kid]
        candidates = [key for key in candidates if key.get("use") in (None, "sig") and key.get("alg") in (None, alg)]
        if len(candidates) == 1 or (candidates and kid is not None):
            return candidates[0]
    raise LoginRefusedError("the ID token is signed with an unknown key")


# -- the code exchange and the ID token -----------------------------------------------------


def exchange_code(settings: OidcSettings, metadata: ProviderMetadata, code: str, verifier: str) -> str:
    """POST the code (with the PKCE verifier) to the token endpoint; return the ID token."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": settings.redirect_uri,
            "code_verifier": verifier}
    secret = settings.client_secret()
    auth: httpx.BasicAuth | None = None
    if secret and "client_secret_basic" in metadata.token_auth_methods:
        # RFC 6749 §2.3.1: the id and secret are form-encoded before being used as Basic credentials.
        auth = httpx.BasicAuth(urlencode({"": settings.OIDC_CLIENT_ID})[1:], urlencode({"": secret})[1:])
    else:
        form["client_id"] = settings.OIDC_CLIENT_ID
        if secret:
            form["client_secret"] = secret

    def attempt() -> httpx.Response:
        try:
            # One attempt: a code is single-use, a retried exchange would only be refused.
            if auth is None:
                return http_client().post(metadata.token_endpoint, data=form)
            return http_client().post(metadata.token_endpoint, data=form, auth=auth)
        except httpx.HTTPError as error:
            raise RetryableError(f"token endpoint: {type(error).__name__}") from error

    try:
        response = breaker_for("oidc", answered=(IdentityProviderError,)).call(attempt)
    except (RetryableError, CircuitOpenError) as error:
        get_logger().warning("identity provider unavailable", extra={"what": "token endpoint", "error": str(error)})
        raise IdentityProviderError("the identity provider is unavailable; try again shortly") from error
    if response.status_code >= 500:
        raise IdentityProviderError(f"the identity provider's token endpoint answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error_code = body.get("error") if isinstance(body, dict) else None
        get_logger().info("code exchange refused", extra={"status": response.status_code,
                                                          "oauth_error": str(error_code)[:64]})
        raise LoginRefusedError("the identity provider refused the sign-in; sign in again")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise LoginRefusedError("the identity provider returned no ID token")
    return id_token


def validate_id_token(id_token: str, *, settings: OidcSettings, metadata: ProviderMetadata, nonce: str,
                      now: float | None = None) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, times and nonce check out."""
    try:
        header = extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError) as error:
        raise LoginRefusedError("the ID token is malformed") from error
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in metadata.id_token_algorithms or (kid is not None and not isinstance(kid, str)):
        raise LoginRefusedError("the ID token is signed with an algorithm that is not accepted")
    key = _signing_key(metadata, kid, str(alg))
    try:
        claims = jwt.decode(id_token, key, algorithms=[str(alg)]).claims
    except (JoseError, ValueError) as error:
        raise LoginRefusedError("the ID token's signature is not valid") from error

    moment = int(time.time() if now is None else now)
    registry = jwt.JWTClaimsRegistry(now=moment, leeway=CLOCK_LEEWAY_SECONDS,
                                     exp={"essential": True}, iat={"essential": True})
    try:
        registry.validate(claims)
    except JoseError as error:
        raise LoginRefusedError("the ID token is expired or not yet valid") from error
    if claims.get("iss") != metadata.issuer:
        raise LoginRefusedError("the ID token was issued by another issuer")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if settings.OIDC_CLIENT_ID not in audiences:
        raise LoginRefusedError("the ID token is meant for another client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != settings.OIDC_CLIENT_ID:
        raise LoginRefusedError("the ID token is meant for another client")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
        raise LoginRefusedError("the ID token does not answer this sign-in (nonce)")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise LoginRefusedError("the ID token names no subject")
    return claims
