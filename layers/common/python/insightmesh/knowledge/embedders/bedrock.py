"""Titan Text Embeddings through ``bedrock-runtime`` ``InvokeModel`` (see :mod:`insightmesh.knowledge.embedders`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from insightmesh.knowledge.embedders.base import (
    DEFAULT_TIMEOUTS,
    KNOWN_DIMENSIONS,
    TITAN_V2_DIMENSIONS,
    EmbeddingRequestError,
    EmbeddingUnavailableError,
    as_vector,
    batches,
    check_vectors,
    run_resilient,
)
from insightmesh.knowledge.settings import (
    KnowledgeConfigurationError,
)
from insightmesh.llm.resilient import Refusal, default_policy
from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    RetryableError,
    Timeouts,
    parse_retry_after,
)


class BedrockEmbedder:
    """Titan Text Embeddings through ``bedrock-runtime`` ``InvokeModel`` (see the module docstring).

    Titan v2 takes ``{"inputText", "dimensions" (256, 512 or 1024), "normalize": true}`` and answers
    ``{"embedding": [...]}``; v1 takes ``inputText`` only. One text per call, ``concurrency`` calls
    at a time, each behind the ``embeddings:bedrock`` breaker and retry policy.
    """

    provider: Final = "bedrock"

    def __init__(
        self,
        *,
        model: str,
        dimensions: int = 0,
        batch_size: int = 64,
        concurrency: int = 4,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        breaker: CircuitBreaker | None = None,
        breaker_failures: int = 3,
        breaker_cool_down: float = 30.0,
        attempts: int = 3,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.concurrency = max(1, concurrency)
        self.timeouts = timeouts
        self._v2 = "titan-embed-text-v2" in model
        if dimensions and self._v2 and dimensions not in TITAN_V2_DIMENSIONS:
            raise KnowledgeConfigurationError(
                f"EMBEDDING_DIMENSIONS: Titan text v2 supports 256, 512 or 1024, not {dimensions}"
            )
        self._requested = dimensions if dimensions > 0 and self._v2 else None
        self._size = self._requested or KNOWN_DIMENSIONS.get(model, 1024)
        self.breaker, self.retry = default_policy(
            f"embeddings:{self.provider}", breaker=breaker, breaker_failures=breaker_failures,
            breaker_cool_down=breaker_cool_down, attempts=attempts, max_retry_after=max_retry_after, sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"BedrockEmbedder(model={self.model!r})"

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}:{self._size}"

    def dimensions(self) -> int:
        return self._size

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in batches(texts, self.batch_size):
            if self.concurrency == 1 or len(batch) == 1:
                vectors.extend(self._embed_one(text) for text in batch)
            else:
                with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
                    vectors.extend(pool.map(self._embed_one, batch))
        return check_vectors(vectors, len(texts), self._size, self.provider)

    def _embed_one(self, text: str) -> list[float]:
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        from insightmesh.llm.bedrock import RETRYABLE_CODES, bedrock_runtime

        request: dict[str, Any] = {"inputText": text or " "}
        if self._v2:
            request["normalize"] = True
            if self._requested is not None:
                request["dimensions"] = self._requested
        client = bedrock_runtime(self.timeouts)
        logger = get_logger()
        log = {"provider": self.provider, "model": self.model}

        def attempt() -> list[float] | Refusal:
            try:
                response = client.invoke_model(
                    modelId=self.model, body=json.dumps(request), contentType="application/json",
                    accept="application/json",
                )
                payload = json.loads(response["body"].read())
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code") or "Unknown")
                metadata = error.response.get("ResponseMetadata", {})
                status = int(metadata.get("HTTPStatusCode") or 0)
                if code in RETRYABLE_CODES or status == 429 or status >= 500:
                    retry_after = parse_retry_after((metadata.get("HTTPHeaders") or {}).get("retry-after"))
                    logger.warning("embedding attempt refused", extra={**log, "status": status, "code": code})
                    raise RetryableError(f"bedrock answered {code} (HTTP {status})",
                                         retry_after=retry_after) from error
                return Refusal(status, code, f"bedrock refused the embedding request: {code} (HTTP {status})")
            except (HTTPClientError, BotoConnectionError) as error:
                logger.warning("embedding attempt failed", extra={**log, "error": type(error).__name__})
                raise RetryableError(f"bedrock unreachable ({type(error).__name__})") from error
            except BotoCoreError as error:  # credentials, region, parameter validation: not transient
                raise EmbeddingUnavailableError(f"bedrock call failed ({type(error).__name__})",
                                                provider=self.provider) from error
            except ValueError as error:
                raise EmbeddingRequestError("bedrock answered with invalid JSON", provider=self.provider) from error
            vector = as_vector(payload.get("embedding")) if isinstance(payload, dict) else None
            if vector is None:
                raise EmbeddingRequestError("bedrock answered without an embedding", provider=self.provider)
            return vector

        result: list[float] = run_resilient(f"embeddings:{self.provider}", self.breaker, self.retry, attempt)
        return result
