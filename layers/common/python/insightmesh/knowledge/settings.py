"""The knowledge base's environment, validated once per process.

* ``QDRANT_URL`` (unset): a Qdrant server or cluster, spoken to over REST (``prefer_grpc=False``).
  **Required in production**; locally ``insightmesh dev`` points it at its REST bridge.
* ``QDRANT_API_KEY`` (a secret, via ``get_secret``): sent as ``api-key``; empty or the template's
  placeholder ``not-configured`` means none.
* ``QDRANT_PATH`` (``.insightmesh/qdrant``): the embedded store's folder when ``QDRANT_URL`` is
  unset (qdrant-client's local mode, persisted; one process at a time). ``:memory:`` keeps it in
  memory (tests, benchmarks).
* ``QDRANT_COLLECTION`` (``insightmesh-knowledge``); ``QDRANT_TIMEOUT_SECONDS`` (``10``).
* ``EMBEDDING_PROVIDER`` (``offline``): ``offline`` (sparse lexical vectors only), ``openai`` (any
  OpenAI-compatible ``POST {EMBEDDING_BASE_URL}/embeddings``) or ``bedrock`` (Titan text v2).
* ``EMBEDDING_BASE_URL`` (``https://api.openai.com/v1``), ``EMBEDDING_MODEL`` (the provider's
  default: ``text-embedding-3-small`` / ``amazon.titan-embed-text-v2:0``), ``EMBEDDING_DIMENSIONS``
  (``0`` = the model's default), ``EMBEDDING_API_KEY`` (a secret), ``EMBEDDING_BATCH_SIZE``
  (``64`` texts per call), ``EMBEDDING_TIMEOUT_SECONDS`` (``30``).

An empty value means "not set" (the template passes empty parameters through).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.config import ConfigurationError, Environment, describe_validation_error, get_secret

DEFAULT_QDRANT_PATH: Final = ".insightmesh/qdrant"
DEFAULT_COLLECTION: Final = "insightmesh-knowledge"
DEFAULT_EMBEDDING_BASE_URL: Final = "https://api.openai.com/v1"
IN_MEMORY: Final = ":memory:"
# What the template's Secrets Manager secrets hold until someone sets the parameter.
KEY_PLACEHOLDER: Final = "not-configured"


class EmbeddingProvider(StrEnum):
    OFFLINE = "offline"
    OPENAI = "openai"
    BEDROCK = "bedrock"


DEFAULT_EMBEDDING_MODELS: Final[dict[EmbeddingProvider, str]] = {
    EmbeddingProvider.OFFLINE: "bm25-hashed",
    EmbeddingProvider.OPENAI: "text-embedding-3-small",
    EmbeddingProvider.BEDROCK: "amazon.titan-embed-text-v2:0",
}


class KnowledgeConfigurationError(ConfigurationError):
    """The knowledge base's environment (or its collection) is not usable as configured."""


_DEFAULTS: Final[dict[str, str]] = {
    "QDRANT_PATH": DEFAULT_QDRANT_PATH,
    "QDRANT_COLLECTION": DEFAULT_COLLECTION,
    "EMBEDDING_BASE_URL": DEFAULT_EMBEDDING_BASE_URL,
}


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class KnowledgeSettings(BaseSettings):
    """The knowledge base's environment. Field names are the variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    QDRANT_URL: str | None = None
    QDRANT_PATH: str = DEFAULT_QDRANT_PATH
    QDRANT_COLLECTION: str = Field(default=DEFAULT_COLLECTION, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    QDRANT_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=300)
    EMBEDDING_PROVIDER: EmbeddingProvider = EmbeddingProvider.OFFLINE
    EMBEDDING_BASE_URL: str = DEFAULT_EMBEDDING_BASE_URL
    EMBEDDING_MODEL: str | None = Field(default=None, max_length=256)
    EMBEDDING_DIMENSIONS: int = Field(default=0, ge=0, le=16_384)
    EMBEDDING_BATCH_SIZE: int = Field(default=64, ge=1, le=2048)
    EMBEDDING_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=900)

    @field_validator("QDRANT_URL", "EMBEDDING_MODEL", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _blank_is_none(value)

    @field_validator("QDRANT_PATH", "QDRANT_COLLECTION", "EMBEDDING_BASE_URL", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return _DEFAULTS[info.field_name or ""]
        return value.strip() if isinstance(value, str) else value

    @field_validator("QDRANT_URL", "EMBEDDING_BASE_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _production(self) -> KnowledgeSettings:
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        if self.QDRANT_URL is None:
            raise ValueError(
                "QDRANT_URL is required in production (the Qdrant server or cluster of the knowledge base; "
                "the embedded store under QDRANT_PATH is for development only)"
            )
        if self.EMBEDDING_PROVIDER is EmbeddingProvider.OPENAI and self.EMBEDDING_BASE_URL.startswith("http://"):
            raise ValueError("EMBEDDING_BASE_URL must use https in production")
        return self

    @property
    def embedding_model(self) -> str:
        return self.EMBEDDING_MODEL or DEFAULT_EMBEDDING_MODELS[self.EMBEDDING_PROVIDER]

    @property
    def embedding_host(self) -> str:
        return urlsplit(self.EMBEDDING_BASE_URL).hostname or ""


def load_knowledge_settings() -> KnowledgeSettings:
    """Validate the environment; KnowledgeConfigurationError names the variable at fault."""
    try:
        return KnowledgeSettings()
    except ValidationError as error:
        raise KnowledgeConfigurationError(describe_validation_error(error)) from error


def optional_secret(name: str) -> str | None:
    """Secret ``name`` (env, Secrets Manager or SSM, cached), or None when unset or a placeholder."""
    value = get_secret(name, default="").strip()
    return None if not value or value == KEY_PLACEHOLDER else value
