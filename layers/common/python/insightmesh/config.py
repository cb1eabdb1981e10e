"""Configuration: pydantic-settings models validated once, at cold start.

A missing or malformed variable fails fast with a message that names the variable. In
``ENVIRONMENT=production`` development defaults are refused (see ``_refuse_dev_defaults``).

Secrets are never read at import time. ``Secret`` values are resolved lazily, on first use, from
(in order) the plain environment variable (local development), a Secrets Manager secret named by
``<NAME>_SECRET_ID`` (an ARN or a name), or an SSM SecureString named by ``<NAME>_PARAMETER``.
Fetched values are cached by powertools' parameters utility, so a warm function does not fetch
them again and a cold start pays only for the secrets it actually uses.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Final, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The development default, public on purpose: production refuses it (see _refuse_dev_defaults).
DEV_SECRET_KEY: Final = "insightmesh-development-secret-key-change-me"  # noqa: S105
MIN_SECRET_KEY_LENGTH: Final = 32
SECRET_CACHE_SECONDS: Final = 300

S = TypeVar("S", bound=BaseSettings)


class ConfigurationError(RuntimeError):
    """Raised at cold start when the environment does not describe a valid configuration."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LlmProvider(StrEnum):
    OFFLINE = "offline"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    BEDROCK = "bedrock"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Settings shared by every function. Field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    SERVICE_NAME: str = Field(default="insightmesh", min_length=1, max_length=64)
    APP_VERSION: str = "0.1.0"
    AWS_REGION: str = "us-east-1"
    LOG_LEVEL: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )
    OAUTH_INSECURE_TRANSPORT: bool = False
    LLM_PROVIDER: LlmProvider = LlmProvider.OFFLINE
    MAX_REQUEST_BYTES: int = Field(default=1_048_576, ge=1024, le=10_485_760)
    HEALTH_CHECK_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0, le=10)
    RATE_LIMIT_PER_MINUTE: int = Field(default=120, ge=0, le=100_000)
    RATE_LIMIT_TABLE: str | None = None

    @field_validator("ALLOWED_ORIGINS", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _refuse_dev_defaults(self) -> Settings:
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        problems: list[str] = []
        for origin in self.ALLOWED_ORIGINS:
            if origin == "*" or "localhost" in origin or "127.0.0.1" in origin:
                problems.append(f"ALLOWED_ORIGINS must not contain {origin!r} in production")
            elif not origin.startswith("https://"):
                problems.append(f"ALLOWED_ORIGINS must use https in production, got {origin!r}")
        if self.OAUTH_INSECURE_TRANSPORT:
            problems.append("OAUTH_INSECURE_TRANSPORT must be false in production")
        if self.LLM_PROVIDER is LlmProvider.OFFLINE:
            problems.append("LLM_PROVIDER=offline is a development default and is refused in production")
        direct_key = os.environ.get("SECRET_KEY")
        if direct_key is not None:
            problems.extend(secret_key_problems(direct_key))
        elif not (os.environ.get("SECRET_KEY_SECRET_ID") or os.environ.get("SECRET_KEY_PARAMETER")):
            problems.append("SECRET_KEY (or SECRET_KEY_SECRET_ID / SECRET_KEY_PARAMETER) is required in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT is Environment.PRODUCTION

    def secret_key(self) -> str:
        """The signing key, fetched lazily and checked again in production."""
        value = get_secret("SECRET_KEY", default=None if self.is_production else DEV_SECRET_KEY)
        if self.is_production:
            problems = secret_key_problems(value)
            if problems:
                raise ConfigurationError("; ".join(problems))
        return value


def secret_key_problems(value: str) -> list[str]:
    if value == DEV_SECRET_KEY:
        return ["SECRET_KEY is the development default and is refused in production"]
    if len(value) < MIN_SECRET_KEY_LENGTH:
        return [f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters in production"]
    return []


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the environment variable."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "configuration"
        lines.append(f"{name}: {problem['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(model: type[S]) -> S:
    """Validate ``model`` from the environment, raising ConfigurationError naming the variable."""
    try:
        return model()
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from error


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings(Settings)


def get_secret(name: str, *, default: str | None = None) -> str:
    """Resolve secret ``name`` lazily: env value, then Secrets Manager, then SSM (all cached).

    Raises ConfigurationError naming the variable when none is configured and no default applies.
    """
    direct = os.environ.get(name)
    if direct:
        return direct
    secret_id = os.environ.get(f"{name}_SECRET_ID")
    if secret_id:
        # Imported here so that a cold start that never needs a secret does not import it.
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(secret_id, max_age=SECRET_CACHE_SECONDS)
        return value if isinstance(value, str) else value.decode()
    parameter = os.environ.get(f"{name}_PARAMETER")
    if parameter:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_parameter(parameter, decrypt=True, max_age=SECRET_CACHE_SECONDS))
    if default is not None:
        return default
    raise ConfigurationError(f"{name}: not set (set {name}, {name}_SECRET_ID or {name}_PARAMETER)")
