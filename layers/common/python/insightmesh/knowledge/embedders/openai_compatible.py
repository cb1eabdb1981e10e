"""``POST {base}/embeddings`` of any OpenAI-compatible server (see :mod:`insightmesh.knowledge.embedders`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx

from insightmesh.knowledge.embedders.base import (
    DEFAULT_TIMEOUTS,
    KNOWN_DIMENSIONS,
    EmbeddingRequestError,
    EmbeddingUnavailableError,
    as_vector,
    batches,
    check_vectors,
    run_resilient,
)
from insightmesh.llm.resilient import Refusal, default_policy
from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    RetryableError,
    Timeouts,
    parse_retry_after,
)


class OpenAIEmbedder:
    """``POST {base_url}/embeddings`` of any OpenAI-compatible server (see the module docstring).

    ``api_key`` is a string or a function returning one (read per request: a rotated secret is
    picked up); empty means no ``Authorization`` header. ``dimensions`` 0 means the model's default
    (known models) or whatever the server returns for a probe (others), and is then not sent.
    """

    provider: Final = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | Callable[[], str | None] = "",
        dimensions: int = 0,
        batch_size: int = 64,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        breaker: CircuitBreaker | None = None,
        breaker_failures: int = 3,
        breaker_cool_down: float = 30.0,
        attempts: int = 3,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self.timeouts = timeouts
        self._api_key = api_key
        self._requested = dimensions if dimensions > 0 else None
        self._size: int | None = self._requested or KNOWN_DIMENSIONS.get(model)
        self._size_lock = threading.Lock()
        self.breaker, self.retry = default_policy(
            f"embeddings:{self.provider}", breaker=breaker, breaker_failures=breaker_failures,
            breaker_cool_down=breaker_cool_down, attempts=attempts, max_retry_after=max_retry_after, sleep=sleep,
        )

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/embeddings"

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}:{self.dimensions()}"

    def dimensions(self) -> int:
        with self._size_lock:
            if self._size is None:
                self._size = len(self._embed_batch(["dimension probe"], None)[0])
            return self._size

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        size = self.dimensions() if texts else None
        vectors: list[list[float]] = []
        for batch in batches(texts, self.batch_size):
            vectors.extend(self._embed_batch(batch, size))
        return vectors

    def _key(self) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            key = self._api_key() if callable(self._api_key) else self._api_key
        except GetParameterError as error:
            raise EmbeddingUnavailableError("EMBEDDING_API_KEY could not be read from Secrets Manager/SSM",
                                            provider=self.provider) from error
        return key or ""

    def _embed_batch(self, texts: Sequence[str], size: int | None) -> list[list[float]]:
        from insightmesh.llm.openai import http_client

        body: dict[str, Any] = {"model": self.model, "input": [text or " " for text in texts],
                                "encoding_format": "float"}
        if self._requested is not None:
            body["dimensions"] = self._requested
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect, pool=self.timeouts.connect)
        client = http_client(self.base_url)
        logger = get_logger()
        log = {"provider": self.provider, "model": self.model, "texts": len(texts)}

        def attempt() -> list[list[float]] | Refusal:
            try:
                response = client.post(self.url, json=body, headers=headers, timeout=timeout)
            except httpx.TimeoutException as error:
                logger.warning("embedding attempt timed out", extra=log)
                raise RetryableError(f"embeddings timed out ({type(error).__name__})") from error
            except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
                logger.warning("embedding attempt failed to connect", extra=log)
                raise RetryableError(f"embeddings connection failed ({type(error).__name__})") from error
            except httpx.HTTPError as error:  # proxy or protocol misconfiguration: not transient
                raise EmbeddingUnavailableError(f"embeddings request failed ({type(error).__name__})",
                                                provider=self.provider) from error
            status = response.status_code
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                logger.warning("embedding attempt refused", extra={**log, "status": status, "retry_after": retry_after})
                raise RetryableError(f"embeddings answered HTTP {status}", retry_after=retry_after)
            if status >= 400:
                return Refusal(status, None, f"embeddings refused the request: HTTP {status}")
            return self._parse(response)

        vectors: list[list[float]] = run_resilient(f"embeddings:{self.provider}", self.breaker, self.retry, attempt)
        return check_vectors(vectors, len(texts), size, self.provider)

    def _parse(self, response: httpx.Response) -> list[list[float]]:
        try:
            payload = response.json()
        except ValueError as error:
            raise EmbeddingRequestError("embeddings answered with invalid JSON", provider=self.provider) from error
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise EmbeddingRequestError("embeddings answered without data", provider=self.provider)
        ordered: list[tuple[int, list[float]]] = []
        for position, item in enumerate(data):
            vector = as_vector(item.get("embedding")) if isinstance(item, dict) else None
            if vector is None:
                raise EmbeddingRequestError("embeddings answered without a float embedding",
                                            provider=self.provider)
            index = item.get("index", position)
            ordered.append((index if isinstance(index, int) else position, vector))
        return [vector for _, vector in sorted(ordered, key=lambda pair: pair[0])]
