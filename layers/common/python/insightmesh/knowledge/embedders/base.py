"""The dense embedding port: the :class:`DenseEmbedder` protocol, its errors, and what the
embedders share (batching, vector checks, resilient calls)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from insightmesh.llm.resilient import Refusal
from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    Timeouts,
    call_with_resilience,
)

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


def check_vectors(vectors: list[list[float]], expected: int, size: int | None, provider: str) -> list[list[float]]:
    if len(vectors) != expected:
        raise EmbeddingRequestError(f"{provider} returned {len(vectors)} embeddings for {expected} texts",
                                    provider=provider)
    for vector in vectors:
        if not vector or (size is not None and len(vector) != size):
            raise EmbeddingRequestError(
                f"{provider} returned a {len(vector)}-dimensional embedding, expected {size}", provider=provider
            )
    return vectors


def as_vector(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    vector: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            return None
        vector.append(float(item))
    return vector


def run_resilient(name: str, breaker: CircuitBreaker, retry: RetryPolicy, attempt: Callable[[], Any]) -> Any:
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
