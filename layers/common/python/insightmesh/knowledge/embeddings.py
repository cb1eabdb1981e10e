"""Vectors for chunks and questions: a sparse lexical vector always, a dense embedding optionally.

**Sparse vectors are BM25 split in two.** BM25 scores a document for a query as
``Σ_t idf(t) · tf(t)·(k1+1) / (tf(t) + k1·(1 - b + b·|d|/avgdl))``. The right-hand factor depends
only on the document, so it is computed here, at ingestion, as the value of term ``t`` in the
chunk's sparse vector (``k1 = 1.2``, ``b = 0.75``, against a *fixed* average length
:data:`AVERAGE_CHUNK_TERMS`: the corpus average would change with every upsert and force
re-encoding everything). ``idf(t)`` depends on the whole collection, which only Qdrant knows: the
collection's sparse vector is declared with ``modifier=IDF``, so Qdrant multiplies each query
term's weight by ``ln(1 + (N - n(t) + 0.5)/(n(t) + 0.5))`` at query time, from its live counts.
A query vector therefore weights each of its distinct terms ``1.0`` and the dot product Qdrant
computes *is* BM25 — with no vocabulary to store, train or ship.

**Terms are hashed to indices** with BLAKE2b (the first four bytes, masked to 31 bits), never
with Python's ``hash()``, which is salted per process: the index of a term must be the same in the
ingesting Lambda, the answering Lambda and next year's process. Two terms that collide share a
dimension (about one pair in 2³¹/V² for a vocabulary of V terms: negligible), which at worst adds
a little score to a chunk that contains the other term.

**Tokens** are Unicode word runs (letters and digits, no underscores), case-folded, minus a small
English stop-word list, with a light suffix stemmer (plurals, ``-ing``, ``-ed``, a final ``-e``)
so that "policies"/"policy" and "approved"/"approves" meet. It is deliberately simple and the
same for documents and questions, which is all that lexical matching needs.

**Dense embeddings** sit behind :class:`DenseEmbedder` (``EMBEDDING_PROVIDER``):

* ``offline`` — none; :func:`get_embedder` returns ``None`` and search is sparse only;
* ``openai`` — any OpenAI-compatible ``POST {base}/embeddings`` (OpenAI, Ollama, vLLM, LiteLLM,
  ...) through the LLM context's process-wide httpx client, explicit timeouts, bounded retries
  honouring ``Retry-After`` and the circuit breaker ``embeddings:openai``
  (``insightmesh.resilience``, with the same policy as the chat adapters);
* ``bedrock`` — ``bedrock-runtime`` ``InvokeModel`` with Titan Text Embeddings v2 (one text per
  call, as the model takes, a few calls in parallel), breaker ``embeddings:bedrock``.

Texts are sent in batches of ``EMBEDDING_BATCH_SIZE`` (64). Failures raise :class:`EmbeddingError`
(``EmbeddingUnavailableError`` when retries are exhausted or the circuit is open,
``EmbeddingRequestError`` when the provider refused the request); logs never carry the texts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Final, Protocol

import httpx

from insightmesh.knowledge.settings import (
    EmbeddingProvider,
    KnowledgeConfigurationError,
    KnowledgeSettings,
    load_knowledge_settings,
    optional_secret,
)
from insightmesh.llm.resilient import Refusal, default_policy
from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    Timeouts,
    call_with_resilience,
    parse_retry_after,
)

# -- sparse: hashed BM25 term-frequency vectors ---------------------------------------------------

K1: Final = 1.2
B: Final = 0.75
AVERAGE_CHUNK_TERMS: Final = 120.0  # ~1,200-character chunks hold ~120 terms once stop words are gone
INDEX_MASK: Final = 0x7FFF_FFFF  # 31 bits: a valid Qdrant sparse index (u32) in every client and language

STOP_WORDS: Final = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up us very was we were what when where which while who whom why will
    with would you your yours yourself yourselves""".split()
)

_WORD: Final = re.compile(r"[^\W_]+")


def stem(word: str) -> str:
    """A light English suffix stemmer (see the module docstring); words of 3 letters or fewer,
    and tokens with digits, are left alone."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4 and not word.endswith(("aies", "eies")):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        word = word[:-1]
    elif word.endswith("s") and not word.endswith(("us", "ss", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 7:
        word = word[:-3]
    elif word.endswith("ed") and len(word) >= 6:
        word = word[:-2]
    if word.endswith("e") and len(word) >= 4:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """The terms of ``text``: case-folded Unicode word runs, stop words out, stemmed."""
    return [stem(word) for word in _WORD.findall(text.casefold()) if word not in STOP_WORDS]


def term_index(term: str) -> int:
    """The stable sparse index of ``term`` (BLAKE2b, 31 bits): the same in every process."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big") & INDEX_MASK


def bm25_weight(tf: int, length: int) -> float:
    """BM25's term-frequency saturation for ``tf`` occurrences in a chunk of ``length`` terms."""
    norm = K1 * (1.0 - B + B * length / AVERAGE_CHUNK_TERMS)
    return tf * (K1 + 1.0) / (tf + norm)


def sparse_vector(text: str, *, query: bool = False) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of ``text``, indices ascending.

    A document (``query=False``) weights each term by :func:`bm25_weight`; a query weights each
    distinct term ``1.0`` (Qdrant's IDF modifier supplies the rest of BM25). Empty when ``text``
    has no terms.
    """
    terms = tokenize(text)
    if not terms:
        return [], []
    counts = Counter(term_index(term) for term in terms)
    indices = sorted(counts)
    if query:
        return indices, [1.0] * len(indices)
    return indices, [bm25_weight(counts[index], len(terms)) for index in indices]


# -- dense: the provider port ---------------------------------------------------------------------


class EmbeddingError(RuntimeError):
    """An embedding call failed (see the subclasses)."""

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class EmbeddingUnavailableError(EmbeddingError):
    """The provider could not be reached, kept failing, or its circuit is open."""


class EmbeddingRequestError(EmbeddingError):
    """The provider is up and refused the request (a 4xx other than 429), or answered nonsense."""


class DenseEmbedder(Protocol):
    """A dense embedding provider. ``embed`` batches internally and returns one vector per text,
    in order, each of :meth:`dimensions` floats."""

    @property
    def name(self) -> str:
        """``"<provider>:<model>:<dimensions>"``: part of every document's content hash, so that
        changing the model re-embeds everything."""
        ...

    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


KNOWN_DIMENSIONS: Final[dict[str, int]] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
}
TITAN_V2_DIMENSIONS: Final = frozenset({256, 512, 1024})
DEFAULT_TIMEOUTS: Final = Timeouts(connect=3.0, read=30.0)


def batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[start:start + size] for start in range(0, len(texts), size)]


def _check_vectors(vectors: list[list[float]], expected: int, size: int | None, provider: str) -> list[list[float]]:
    if len(vectors) != expected:
        raise EmbeddingRequestError(f"{provider} returned {len(vectors)} embeddings for {expected} texts",
                                    provider=provider)
    for vector in vectors:
        if not vector or (size is not None and len(vector) != size):
            raise EmbeddingRequestError(
                f"{provider} returned a {len(vector)}-dimensional embedding, expected {size}", provider=provider
            )
    return vectors


def _as_vector(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    vector: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            return None
        vector.append(float(item))
    return vector


def _run(name: str, breaker: CircuitBreaker, retry: RetryPolicy, attempt: Callable[[], Any]) -> Any:
    """``attempt`` behind ``breaker`` and ``retry``, in the embedding context's errors."""
    try:
        outcome = call_with_resilience(breaker, attempt, retry=retry)
    except CircuitOpenError as error:
        raise EmbeddingUnavailableError(f"{name} circuit is open", provider=name) from error
    except RetryableError as error:
        raise EmbeddingUnavailableError(f"{name} unavailable: {error}", provider=name) from error
    if isinstance(outcome, Refusal):
        raise EmbeddingRequestError(outcome.message, provider=name)
    return outcome


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

        vectors: list[list[float]] = _run(f"embeddings:{self.provider}", self.breaker, self.retry, attempt)
        return _check_vectors(vectors, len(texts), size, self.provider)

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
            vector = _as_vector(item.get("embedding")) if isinstance(item, dict) else None
            if vector is None:
                raise EmbeddingRequestError("embeddings answered without a float embedding",
                                            provider=self.provider)
            index = item.get("index", position)
            ordered.append((index if isinstance(index, int) else position, vector))
        return [vector for _, vector in sorted(ordered, key=lambda pair: pair[0])]


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
        return _check_vectors(vectors, len(texts), self._size, self.provider)

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
            vector = _as_vector(payload.get("embedding")) if isinstance(payload, dict) else None
            if vector is None:
                raise EmbeddingRequestError("bedrock answered without an embedding", provider=self.provider)
            return vector

        result: list[float] = _run(f"embeddings:{self.provider}", self.breaker, self.retry, attempt)
        return result


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
