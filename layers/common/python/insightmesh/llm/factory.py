"""Which LLM the process talks to, decided once from the environment.

* ``LLM_PROVIDER`` (``offline``): ``offline``, ``openai``, ``anthropic`` or ``bedrock``; ``offline``
  is refused in production.
* ``LLM_BASE_URL`` (``https://api.openai.com/v1``): the OpenAI-compatible server (openai,
  anthropic); https only in production.
* ``LLM_MODEL`` (the provider's default): ``gpt-4o-mini``; bedrock
  ``anthropic.claude-3-haiku-20240307-v1:0``; anthropic ``claude-3-5-haiku-latest``.
* ``LLM_API_KEY`` (a secret): ``LLM_API_KEY``, else ``LLM_API_KEY_SECRET_ID`` (Secrets Manager,
  what the template sets), else ``LLM_API_KEY_PARAMETER`` (SSM).
* ``LLM_TIMEOUT_SECONDS`` (``30``) and ``LLM_CONNECT_TIMEOUT_SECONDS`` (``3``): read and connect
  timeouts of one attempt.
* ``LLM_BREAKER_FAILURES`` (``3``): consecutive failed attempts that open the ``llm:<provider>``
  breaker; ``LLM_BREAKER_COOLDOWN_SECONDS`` (``30``): how long it stays open before a trial call.

An empty value means "not set" (the template passes empty parameters through). ``anthropic``
speaks through an OpenAI-compatible endpoint, so it needs ``LLM_BASE_URL`` pointing at one (for
example ``https://api.anthropic.com/v1``); a key is required for ``api.openai.com`` and
``api.anthropic.com``, optional for self-hosted servers (Ollama, vLLM, LiteLLM). The key is read
lazily — not when the settings are validated — and again for each request (from the secrets
cache), so a rotated key is picked up.

``get_llm_client()`` is cached for the process; tests call ``get_llm_client.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.config import Environment, LlmProvider, describe_validation_error, get_secret
from insightmesh.llm.base import LlmClient, LlmConfigurationError, LlmUnavailableError
from insightmesh.resilience import Timeouts

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
DEFAULT_MODELS: Final[dict[LlmProvider, str]] = {
    LlmProvider.OFFLINE: "offline",
    LlmProvider.OPENAI: "gpt-4o-mini",
    LlmProvider.ANTHROPIC: "claude-3-5-haiku-latest",
    LlmProvider.BEDROCK: "anthropic.claude-3-haiku-20240307-v1:0",
}
# Hosted APIs that refuse anonymous requests: a missing key is a configuration error up front.
KEY_REQUIRED_HOSTS: Final = frozenset({"api.openai.com", "api.anthropic.com"})
KEY_PLACEHOLDER: Final = "not-configured"


def _empty_is_unset(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class LlmSettings(BaseSettings):
    """The LLM's environment. Field names are the variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    LLM_PROVIDER: LlmProvider = LlmProvider.OFFLINE
    LLM_BASE_URL: str | None = None
    LLM_MODEL: str | None = Field(default=None, max_length=256)
    LLM_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=900)
    LLM_CONNECT_TIMEOUT_SECONDS: float = Field(default=3.0, gt=0, le=60)
    LLM_BREAKER_FAILURES: int = Field(default=3, ge=1, le=100)
    LLM_BREAKER_COOLDOWN_SECONDS: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("LLM_BASE_URL", "LLM_MODEL", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return _empty_is_unset(value)

    @field_validator("LLM_BASE_URL")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _check_provider(self) -> LlmSettings:
        if self.LLM_PROVIDER is LlmProvider.ANTHROPIC and self.host in ("", "api.openai.com"):
            raise ValueError(
                "LLM_BASE_URL: LLM_PROVIDER=anthropic needs LLM_BASE_URL set to an OpenAI-compatible "
                "endpoint (for example https://api.anthropic.com/v1)"
            )
        if self.ENVIRONMENT is Environment.PRODUCTION:
            if self.LLM_PROVIDER is LlmProvider.OFFLINE:
                raise ValueError("LLM_PROVIDER=offline is a development default and is refused in production")
            if self.uses_base_url and self.base_url.startswith("http://"):
                raise ValueError("LLM_BASE_URL must use https in production")
        return self

    @property
    def uses_base_url(self) -> bool:
        return self.LLM_PROVIDER in (LlmProvider.OPENAI, LlmProvider.ANTHROPIC)

    @property
    def base_url(self) -> str:
        return self.LLM_BASE_URL or DEFAULT_BASE_URL

    @property
    def host(self) -> str:
        return "" if self.LLM_BASE_URL is None else (urlsplit(self.LLM_BASE_URL).hostname or "")

    @property
    def model(self) -> str:
        return self.LLM_MODEL or DEFAULT_MODELS[self.LLM_PROVIDER]

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(connect=self.LLM_CONNECT_TIMEOUT_SECONDS, read=self.LLM_TIMEOUT_SECONDS)

    @property
    def key_required(self) -> bool:
        return self.uses_base_url and (urlsplit(self.base_url).hostname or "") in KEY_REQUIRED_HOSTS


def load_llm_settings() -> LlmSettings:
    """Validate the LLM environment; LlmConfigurationError names the variable at fault."""
    try:
        return LlmSettings()
    except ValidationError as error:
        raise LlmConfigurationError(describe_validation_error(error)) from error


def llm_api_key() -> str:
    """``LLM_API_KEY`` (env, Secrets Manager or SSM, cached); empty when not configured."""
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    try:
        value = get_secret("LLM_API_KEY", default="")
    except GetParameterError as error:
        raise LlmUnavailableError("LLM_API_KEY could not be read from Secrets Manager/SSM") from error
    return "" if value.strip() == KEY_PLACEHOLDER else value.strip()


def build_llm_client(settings: LlmSettings) -> LlmClient:
    """The client ``settings`` describe (providers imported here, so only the one used is loaded)."""
    provider = settings.LLM_PROVIDER
    if provider is LlmProvider.OFFLINE:
        from insightmesh.llm.offline import OfflineClient

        return OfflineClient()
    if provider is LlmProvider.BEDROCK:
        from insightmesh.llm.bedrock import BedrockClient

        return BedrockClient(
            model=settings.model,
            timeouts=settings.timeouts,
            breaker_failures=settings.LLM_BREAKER_FAILURES,
            breaker_cool_down=settings.LLM_BREAKER_COOLDOWN_SECONDS,
        )
    if settings.key_required and not llm_api_key():
        raise LlmConfigurationError(
            f"LLM_API_KEY: not set (LLM_PROVIDER={provider.value} at {settings.base_url} needs an API key; "
            "set LLM_API_KEY, LLM_API_KEY_SECRET_ID or LLM_API_KEY_PARAMETER)"
        )
    from insightmesh.llm.openai import OpenAICompatibleClient

    return OpenAICompatibleClient(
        base_url=settings.base_url,
        model=settings.model,
        api_key=llm_api_key,
        provider=provider.value,
        timeouts=settings.timeouts,
        breaker_failures=settings.LLM_BREAKER_FAILURES,
        breaker_cool_down=settings.LLM_BREAKER_COOLDOWN_SECONDS,
    )


@lru_cache(maxsize=4)
def get_llm_client(model: str | None = None) -> LlmClient:
    """The process's LLM client, built from the environment on first use; with ``model``, the same
    provider asking that model instead of ``LLM_MODEL`` (a budget's cheaper fallback, issue 16)."""
    settings = load_llm_settings()
    if model and model != settings.model:
        settings = settings.model_copy(update={"LLM_MODEL": model})
    return build_llm_client(settings)
