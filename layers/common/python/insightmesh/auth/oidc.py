"""Browser sign-in: OpenID Connect Authorization Code flow with PKCE (S256).

``begin_login`` creates a single-use login state — ``state``, ``nonce``, PKCE ``code_verifier``,
the hash of a random *browser binding*, the page to return to — in ``AUTH_STATES_TABLE`` for ten
minutes, and returns the IdP's authorization URL plus a signed pre-auth cookie ``im_login``
carrying ``state`` and the binding. ``complete_login`` (the callback) refuses, before touching
any table, a callback whose ``state`` is missing or differs from the cookie's; then consumes the
stored state with one conditional DeleteItem (so a replayed callback finds nothing), exchanges
the code with the verifier, validates the ID token (signature against the IdP's JWKS, ``iss``,
``aud``, ``azp``, ``exp``/``iat``/``nbf`` with a minute of leeway, ``nonce``), requires a verified
e-mail in ``OIDC_ALLOWED_DOMAINS`` (an empty list refuses everyone) — and, when the issuer is
Google, an ``hd`` (Workspace hosted domain) claim in that list too —, and finds the user by
e-mail or creates one (never an admin). Codes, tokens and the ID token are never logged.

``AUTH_STATES_TABLE`` — :class:`AuthState`, hash ``state``; TTL ``expires_at``

* ``PutItem`` with ``attribute_not_exists(state)``: begin a login.
* ``DeleteItem(state)`` with ``attribute_exists(state) AND binding_hash = :b``, ``ReturnValues
  ALL_OLD``: consume it, exactly once. ``expires_at`` is checked in code too (TTL is lazy).

The discovery document and the JWKS are fetched through one process-wide httpx client with
explicit timeouts, bounded retries and a circuit breaker, and cached per process; the JWKS is
fetched again when an ID token names a key id it does not contain (at most every 30 s).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError, PutError
from pynamodb.models import Model

from insightmesh.api.errors import BadRequestError, ServiceUnavailableError, UnauthorizedError
from insightmesh.auth.sessions import cookie_values, issue_session, set_cookie, sign, unsign
from insightmesh.aws import model_meta
from insightmesh.config import get_secret, get_settings, load_settings
from insightmesh.directory.models import Identity, Membership, User, identity_key, normalize_email, utc_now
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitOpenError, RetryableError, RetryPolicy, breaker_for, call_with_resilience

LOGIN_COOKIE: Final = "im_login"
LOGIN_COOKIE_PATH: Final = "/auth"
LOGIN_PURPOSE: Final = "insightmesh/login/v1"
LOGIN_TTL: Final = timedelta(minutes=10)
CALLBACK_PATH: Final = "/auth/callback"
CLOCK_LEEWAY_SECONDS: Final = 60
DISCOVERY_MAX_AGE_SECONDS: Final = 24 * 3600
JWKS_MAX_AGE_SECONDS: Final = 3600
JWKS_MIN_REFRESH_SECONDS: Final = 30
MAX_NEXT_PATH_LENGTH: Final = 512
MAX_PARAMETER_LENGTH: Final = 2048
EMAIL_PROVIDER: Final = "email"  # identity "email#<address>" claims a user per address (as admin_tools does)
OIDC_PROVIDER: Final = "oidc"
SUPPORTED_ID_TOKEN_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
GOOGLE_ISSUER_HOST: Final = "accounts.google.com"
HTTP_TIMEOUT: Final = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)


# -- errors -----------------------------------------------------------------------------------


class LoginStateError(BadRequestError):
    """The callback does not belong to a login this browser started (state, cookie, replay)."""

    code = "invalid_login_state"


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


# -- the login-state table --------------------------------------------------------------------


class AuthState(Model):
    Meta = model_meta("AUTH_STATES_TABLE", connect_timeout=1, read_timeout=2)

    state = UnicodeAttribute(hash_key=True)
    nonce = UnicodeAttribute()
    code_verifier = UnicodeAttribute()
    binding_hash = UnicodeAttribute()  # sha256 of the browser binding held in the im_login cookie
    next_path = UnicodeAttribute(default="/")
    created_at = UTCDateTimeAttribute(default=utc_now)
    expires_at = TTLAttribute()


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


# -- begin ------------------------------------------------------------------------------------


def safe_next_path(value: str | None) -> str:
    """``value`` if it is a local absolute path (``/...``, not ``//host`` nor ``/\\host``), else ``/``."""
    if not value or len(value) > MAX_NEXT_PATH_LENGTH or not value.startswith("/"):
        return "/"
    if value.startswith("//") or "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _settings_or_unavailable() -> OidcSettings:
    settings = get_oidc_settings()
    if not settings.configured:
        raise IdentityProviderError("sign-in is not configured (OIDC_ISSUER, OIDC_CLIENT_ID, PUBLIC_BASE_URL)")
    return settings


def begin_login(*, next_path: str = "/") -> tuple[str, str]:
    """Start a sign-in: ``(authorization URL to redirect to, Set-Cookie of the im_login cookie)``."""
    settings = _settings_or_unavailable()
    metadata = provider_metadata(settings.OIDC_ISSUER)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, binding = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
    now = utc_now()
    item = AuthState(state, nonce=nonce, code_verifier=verifier, binding_hash=_hash(binding),
                     next_path=safe_next_path(next_path), created_at=now, expires_at=now + LOGIN_TTL)
    item.save(condition=AuthState.state.does_not_exist())
    expires = int(time.time() + LOGIN_TTL.total_seconds())
    cookie = set_cookie(LOGIN_COOKIE, sign({"state": state, "binding": binding, "exp": expires}, purpose=LOGIN_PURPOSE),
                        max_age=int(LOGIN_TTL.total_seconds()), path=LOGIN_COOKIE_PATH)
    query = urlencode({
        "response_type": "code",
        "client_id": settings.OIDC_CLIENT_ID,
        "redirect_uri": settings.redirect_uri,
        "scope": settings.OIDC_SCOPES,
        "state": state,
        "nonce": nonce,
        "code_challenge": _s256(verifier),
        "code_challenge_method": "S256",
    })
    separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return f"{metadata.authorization_endpoint}{separator}{query}", cookie


def clear_login_cookie() -> str:
    return set_cookie(LOGIN_COOKIE, "", max_age=0, path=LOGIN_COOKIE_PATH)


# -- complete ---------------------------------------------------------------------------------


def _parameter(query: Mapping[str, str], name: str) -> str:
    value = query.get(name) or ""
    return value if len(value) <= MAX_PARAMETER_LENGTH else ""


def _browser_binding(state: str, cookie_header: str | None) -> str:
    """The binding of the login this browser started for ``state``; refuse when there is none."""
    for value in cookie_values(cookie_header, LOGIN_COOKIE):
        claims = unsign(value, purpose=LOGIN_PURPOSE)
        if claims is None:
            continue
        cookie_state, binding = claims.get("state"), claims.get("binding")
        if (isinstance(cookie_state, str) and isinstance(binding, str) and binding
                and hmac.compare_digest(cookie_state.encode(), state.encode())):
            return binding
    raise LoginStateError("this sign-in was not started by this browser, or it expired; sign in again")


def _consume_state(state: str, binding: str) -> AuthState:
    """Delete the login state if it exists and belongs to ``binding``; return what was stored."""
    condition = AuthState.state.exists() & (AuthState.binding_hash == _hash(binding))
    try:
        response = AuthState._get_connection().delete_item(state, condition=condition, return_values="ALL_OLD")
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise LoginStateError("this sign-in is unknown, already used or expired; sign in again") from error
        raise
    item = AuthState.from_raw_data(response["Attributes"])
    if item.expires_at <= utc_now():
        raise LoginStateError("this sign-in expired; sign in again")
    return item


def _exchange_code(settings: OidcSettings, metadata: ProviderMetadata, code: str, verifier: str) -> str:
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


def _admitted_email(claims: Mapping[str, Any], settings: OidcSettings) -> str:
    email = normalize_email(claims.get("email") if isinstance(claims.get("email"), str) else None)
    if email is None or email.count("@") != 1:
        raise LoginRefusedError("the identity provider shared no e-mail address")
    verified = claims.get("email_verified")
    if verified is not True and verified != "true":
        raise LoginRefusedError("the e-mail address is not verified")
    domain = email.rsplit("@", 1)[1]
    if domain not in settings.OIDC_ALLOWED_DOMAINS:
        get_logger().info("sign-in refused: domain not allowed", extra={"domain": domain})
        raise LoginRefusedError("accounts of this domain may not sign in")
    if settings.is_google:
        # Google: the address alone does not prove membership of the organisation (a consumer
        # account may carry any verified address); the Workspace's hosted domain (hd) does.
        hosted = claims.get("hd")
        if not isinstance(hosted, str) or hosted.strip().lower() not in settings.OIDC_ALLOWED_DOMAINS:
            get_logger().info("sign-in refused: google hosted domain not allowed",
                              extra={"hd": hosted if isinstance(hosted, str) else None})
            raise LoginRefusedError("only accounts of an allowed Google Workspace domain may sign in")
    return email


def _find_or_create_user(email: str, claims: Mapping[str, Any]) -> User:
    """The user with ``email``: its ``email#`` identity's user, else by the by-email index, else a
    new (non-admin) user claimed by a conditional put of that identity, so concurrent sign-ins
    (or a CLI command, which claims e-mails the same way) create one user."""
    key = identity_key(EMAIL_PROVIDER, email)
    try:
        claim: Identity | None = Identity.get(key, consistent_read=True)
    except Identity.DoesNotExist:
        claim = None
    if claim is None:
        for existing in User.by_email.query(email, limit=1):
            return existing
        now = utc_now()
        claim = Identity(key, provider_type=EMAIL_PROVIDER, provider_user_id=email, user_id=str(uuid.uuid4()),
                         provider_email=email, is_primary=True, is_active=True, created_at=now)
        try:
            claim.save(condition=Identity.identity_key.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            claim = Identity.get(key, consistent_read=True)
    try:
        return User.get(claim.user_id, consistent_read=True)
    except User.DoesNotExist:
        pass
    from insightmesh.directory.users import ALL_USERS

    now = utc_now()
    Membership(ALL_USERS, claim.user_id, added_at=now, added_by=OIDC_PROVIDER).save()
    name = claims.get("name")
    display = name.strip() if isinstance(name, str) and name.strip() else email.split("@", 1)[0]
    user = User(claim.user_id, email=email, display_name=display[:200],
                real_name=display[:200] if isinstance(name, str) and name.strip() else None,
                is_active=True, is_admin=False, primary_provider=OIDC_PROVIDER, created_at=now)
    try:
        user.save(condition=User.user_id.does_not_exist())
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        return User.get(claim.user_id, consistent_read=True)
    get_logger().info("user created at first sign-in", extra={"user_id": user.user_id})
    return user


def _record_login(user: User, when: datetime) -> None:
    """``last_login_at`` on the user item (an attribute the directory model does not declare, so a
    cheap UpdateItem that leaves ``version`` alone). Best effort: sign-in does not fail on it."""
    from pynamodb.exceptions import UpdateError
    from pynamodb.expressions.operand import Path

    try:
        User._get_connection().update_item(
            user.user_id,
            actions=[Path("last_login_at").set({"S": when.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")})],
            condition=User.user_id.exists(),
        )
    except UpdateError as error:
        get_logger().warning("could not record the sign-in time",
                             extra={"user_id": user.user_id, "error_code": error.cause_response_code})


@dataclass(frozen=True)
class LoginResult:
    user: User
    session_cookie: str  # Set-Cookie header value
    csrf_token: str
    next_path: str  # a local path, checked when the login began


def finish_login(*, query: Mapping[str, str], cookie_header: str | None) -> LoginResult:
    """Finish a sign-in from the IdP's callback (see ``complete_login``), with the page to return to."""
    settings = _settings_or_unavailable()
    state = _parameter(query, "state")
    if not state:
        raise LoginStateError("the sign-in callback has no state; sign in again")
    binding = _browser_binding(state, cookie_header)
    stored = _consume_state(state, binding)

    if query.get("error"):
        get_logger().info("sign-in refused by the identity provider",
                          extra={"oauth_error": _parameter(query, "error")[:64]})
        raise LoginRefusedError("the identity provider did not authorise the sign-in")
    code = _parameter(query, "code")
    if not code:
        raise LoginStateError("the sign-in callback has no code; sign in again")
    metadata = provider_metadata(settings.OIDC_ISSUER)
    id_token = _exchange_code(settings, metadata, code, stored.code_verifier)
    claims = validate_id_token(id_token, settings=settings, metadata=metadata, nonce=stored.nonce)
    email = _admitted_email(claims, settings)
    user = _find_or_create_user(email, claims)
    if not user.is_active:
        get_logger().info("sign-in refused: user inactive", extra={"user_id": user.user_id})
        raise LoginRefusedError("this account is deactivated")
    _record_login(user, utc_now())
    cookie, csrf = issue_session(user)
    get_logger().info("signed in", extra={"user_id": user.user_id})
    return LoginResult(user=user, session_cookie=cookie, csrf_token=csrf, next_path=safe_next_path(stored.next_path))


def complete_login(*, query: Mapping[str, str], cookie_header: str | None) -> tuple[User, str, str]:
    """Finish a sign-in from the IdP's callback: ``(user, session Set-Cookie, csrf token)``.

    Raises LoginStateError (400) when the callback does not belong to a login this browser
    started — nothing is stored or consumed then —, LoginRefusedError (401) when the IdP's
    answer does not admit the person, IdentityProviderError (503) when the IdP is unavailable.
    """
    result = finish_login(query=query, cookie_header=cookie_header)
    return result.user, result.session_cookie, result.csrf_token
