"""Dense embeddings for chunks and questions (sparse vectors are :mod:`insightmesh.knowledge.sparse`).

**Dense embeddings** sit behind :class:`DenseEmbedder` (``EMBEDDING_PROVIDER``):

* ``offline`` — none; :func:`get_embedder` returns ``None`` and search is sparse only;
* ``openai`` — any OpenAI-compatible ``POST {base}/embeddings`` (OpenAI, Ollama, vLLM, LiteLLM,
  ...) through the LLM context's process-wide httpx client
  (:mod:`.openai_compatible`), explicit timeouts, bounded retries
  honouring ``Retry-After`` and the circuit breaker ``embeddings:openai``
  (``insightmesh.resilience``, with the same policy as the chat adapters);
* ``bedrock`` — ``bedrock-runtime`` ``InvokeModel`` with Titan Text Embeddings v2 (one text per
  call, as the model takes, a few calls in parallel), breaker ``embeddings:bedrock``.

Texts are sent in batches of ``EMBEDDING_BATCH_SIZE`` (64). Failures raise :class:`EmbeddingError`
(``EmbeddingUnavailableError`` when retries are exhausted or the circuit is open,
``EmbeddingRequestError`` when the provider refused the request); logs never carry the texts.
"""

from __future__ import annotations

from functools import lru_cache

from insightmesh.knowledge.embedders.base import DenseEmbedder
from insightmesh.knowledge.embedders.bedrock import BedrockEmbedder
from insightmesh.knowledge.embedders.openai_compatible import OpenAIEmbedder
from insightmesh.knowledge.settings import (
    EmbeddingProvider,
    KnowledgeConfigurationError,
    KnowledgeSettings,
    load_knowledge_settings,
    optional_secret,
)
from insightmesh.resilience import Timeouts


def build_embedder(settings: KnowledgeSettings) -> DenseEmbedder | None:
    """The dense embedder ``settings`` describe; None for ``offline``."""
    provider = settings.EMBEDDING_PROVIDER
    timeouts = Timeouts(connect=3.0, read=settings.EMBEDDING_TIMEOUT_SECONDS)
    if provider is EmbeddingProvider.OFFLINE:
        return None
    if provider is EmbeddingProvider.BEDROCK:
        return BedrockEmbedder(model=settings.embedding_model, dimensions=settings.EMBEDDING_DIMENSIONS,
                               batch_size=settings.EMBEDDING_BATCH_SIZE, timeouts=timeouts)
    if settings.embedding_host == "api.openai.com" and optional_secret("EMBEDDING_API_KEY") is None:
        raise KnowledgeConfigurationError(
            "EMBEDDING_API_KEY: not set (EMBEDDING_PROVIDER=openai at api.openai.com needs an API key; "
            "set EMBEDDING_API_KEY, EMBEDDING_API_KEY_SECRET_ID or EMBEDDING_API_KEY_PARAMETER)"
        )
    return OpenAIEmbedder(
        base_url=settings.EMBEDDING_BASE_URL,
        model=settings.embedding_model,
        api_key=lambda: optional_secret("EMBEDDING_API_KEY"),
        dimensions=settings.EMBEDDING_DIMENSIONS,
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        timeouts=timeouts,
    )


@lru_cache(maxsize=1)
def get_embedder() -> DenseEmbedder | None:
    """The process's dense embedder, from the environment on first use; None when offline."""
    return build_embedder(load_knowledge_settings())


def embedder_name(embedder: DenseEmbedder | None) -> str:
    return "offline" if embedder is None else embedder.name
