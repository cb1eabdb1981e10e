"""Settings of the control plane's authentication (API tokens, sessions, rate limits).

Validated at cold start by ``get_auth_settings()`` (the admin API handler calls it at import);
a bad value raises ConfigurationError naming the variable. The OIDC settings live in
``insightmesh.auth.oidc_provider.OidcSettings``.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.config import Environment, load_settings


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower-cased; else ``None``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


class AuthSettings(BaseSettings):
    """Field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    # The public base URL of the API; its origin is trusted for CSRF (with ALLOWED_ORIGINS) and
    # the OIDC redirect URI is PUBLIC_BASE_URL + "/auth/callback".
    PUBLIC_BASE_URL: str = ""
    API_RATE_LIMIT_PER_MINUTE: int = Field(default=300, ge=0, le=100_000)
    API_IP_RATE_LIMIT_PER_MINUTE: int = Field(default=600, ge=0, le=100_000)
    LOGIN_RATE_LIMIT_PER_MINUTE: int = Field(default=20, ge=0, le=10_000)

    @field_validator("PUBLIC_BASE_URL")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and origin_of(value) is None:
            raise ValueError("must be an absolute http(s) URL such as https://insightmesh.example.com")
        return value

    @model_validator(mode="after")
    def _refuse_insecure_base_url(self) -> AuthSettings:
        if (self.ENVIRONMENT is Environment.PRODUCTION and self.PUBLIC_BASE_URL
                and not self.PUBLIC_BASE_URL.startswith("https://")):
            raise ValueError("PUBLIC_BASE_URL must use https in production")
        return self

    @property
    def public_origin(self) -> str | None:
        return origin_of(self.PUBLIC_BASE_URL) if self.PUBLIC_BASE_URL else None


@lru_cache(maxsize=1)
def get_auth_settings() -> AuthSettings:
    return load_settings(AuthSettings)
