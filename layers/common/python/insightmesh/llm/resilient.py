"""The resilience wrapper every network-backed LLM adapter shares (``openai``, ``bedrock``).

An adapter supplies one ``attempt`` — a single call to its provider that raises
``RetryableError`` for a transient failure, returns a ``Refusal`` when the provider is up and
said no, or returns the ``Completion`` — and ``run_with_resilience`` runs it behind the
adapter's circuit breaker and retry policy, translating the outcome into the LLM context's
errors and logging the result (provider, model, attempts, duration, token counts; never the
key, the prompt or the reply).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from insightmesh.llm.base import LlmRequestError, LlmUnavailableError, Usage
from insightmesh.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    breaker_for,
    call_with_resilience,
)

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger


class _Completed(Protocol):
    """What an attempt returns: a ``Completion``, or a ``ToolCompletion`` (tool calling runs behind
    the very same retries and breaker as ``complete``)."""

    @property
    def usage(self) -> Usage: ...


C = TypeVar("C", bound=_Completed)


@dataclass(frozen=True)
class Refusal:
    """The provider is up and refused this request (a 4xx other than 429). Returned (not raised)
    through the breaker so that it does not count as the dependency failing; ``message`` becomes
    the ``LlmRequestError``'s."""

    status: int
    code: str | None
    message: str


def default_policy(
    name: str,
    *,
    breaker: CircuitBreaker | None,
    breaker_failures: int,
    breaker_cool_down: float,
    attempts: int,
    max_retry_after: float,
    sleep: Callable[[float], None],
) -> tuple[CircuitBreaker, RetryPolicy]:
    """``breaker`` (or the process-wide breaker ``name``) and the adapters' retry policy."""
    return (
        breaker or breaker_for(name, failure_threshold=breaker_failures, cool_down=breaker_cool_down),
        RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=4.0, max_retry_after=max_retry_after, sleep=sleep),
    )


def run_with_resilience(
    provider: str,
    breaker: CircuitBreaker,
    retry: RetryPolicy,
    attempt: Callable[[int], C | Refusal],
    *,
    log: Mapping[str, object],
    logger: Logger,
) -> C:
    """Call ``attempt`` (with its 1-based number) through ``breaker`` and ``retry``.

    Raises ``LlmUnavailableError`` when the circuit is open or the retries are exhausted, and
    ``LlmRequestError`` for a ``Refusal``; logs ``llm completion`` on success.
    """
    attempts = 0

    def counted() -> C | Refusal:
        nonlocal attempts
        attempts += 1
        return attempt(attempts)

    started = time.monotonic()
    try:
        outcome = call_with_resilience(breaker, counted, retry=retry)
    except CircuitOpenError as error:
        logger.warning("llm circuit open; not called", extra={**log, "retry_in": round(error.retry_in, 1)})
        raise LlmUnavailableError(
            f"{provider} circuit is open", provider=provider, retry_after=max(error.retry_in, 0.0)
        ) from error
    except RetryableError as error:
        logger.warning("llm unavailable", extra={**log, "attempts": attempts, "error": str(error)})
        raise LlmUnavailableError(
            f"{provider} unavailable after {attempts} attempt(s): {error}",
            provider=provider,
            retry_after=error.retry_after,
        ) from error
    if isinstance(outcome, Refusal):
        logger.warning("llm request refused", extra={**log, "status": outcome.status, "code": outcome.code})
        raise LlmRequestError(outcome.message, status=outcome.status, code=outcome.code, provider=provider)
    logger.info(
        "llm completion",
        extra={
            **log,
            "attempts": attempts,
            "duration_ms": round((time.monotonic() - started) * 1000),
            # Not "*_tokens": the log redaction masks every field whose name contains "token".
            "usage": {
                "prompt": outcome.usage.prompt_tokens,
                "completion": outcome.usage.completion_tokens,
                "estimated": outcome.usage.estimated,
            },
        },
    )
    return outcome
