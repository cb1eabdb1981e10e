"""Timeouts, bounded retries and circuit breakers for every outbound call.

``call_with_resilience(breaker, fn, retry=...)`` is the one way the layer calls a dependency:
the breaker short-circuits while the dependency is known to be down, and the retry policy
retries transient failures with exponential backoff and full jitter, honouring a server's
``Retry-After``. Timeouts are explicit on every client (``Timeouts`` → httpx/botocore config).

No library is used for the breaker: pybreaker/circuitbreaker keep state in module globals with
no half-open probe limit and no injectable clock, which makes their state machine untestable
without sleeping; the few lines below are deterministic with an injected clock.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final, TypeVar

T = TypeVar("T")

MAX_RETRY_AFTER_SECONDS: Final = 60.0


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts for one dependency, in seconds."""

    connect: float = 2.0
    read: float = 10.0

    @property
    def total(self) -> float:
        return self.connect + self.read


class RetryableError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) is the server's own advice, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(Exception):
    """Raised without calling the dependency while its breaker is open."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit for {name!r} is open; retry in {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
        if not math.isfinite(seconds):  # "nan"/"inf" are garbage, not advice
            return None
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retry: at most ``attempts`` calls in all, backoff base·2ⁿ with full jitter, capped.

    When the failure carries ``retry_after`` that wait is used instead of the backoff (never more
    than ``max_retry_after``; a longer demand is not retried at all, the error is raised).
    """

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 30.0
    retry_on: tuple[type[BaseException], ...] = (RetryableError,)
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform

    def delay_for(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float):
            return float(retry_after) if retry_after <= self.max_retry_after else None
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.jitter(0.0, ceiling)

    def call(self, fn: Callable[[], T]) -> T:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        attempt = 1
        while True:
            try:
                return fn()
            except self.retry_on as error:
                # An open circuit is never retried, even by a policy that retries every Exception.
                if attempt >= self.attempts or isinstance(error, CircuitOpenError):
                    raise
                delay = self.delay_for(attempt, error)
                if delay is None:
                    raise
                self.sleep(delay)
                attempt += 1


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """closed → (``failure_threshold`` consecutive failures) → open → (``cool_down`` s) → half-open.

    Half-open lets ``half_open_max_calls`` trial calls through: a success closes the circuit,
    a failure opens it again for another cool-down. Thread-safe; the clock is injectable.
    """

    name: str
    failure_threshold: int = 5
    cool_down: float = 30.0
    half_open_max_calls: int = 1
    counted: tuple[type[BaseException], ...] = (Exception,)
    # Errors that prove the dependency is up (it answered, refusing this one request): a success.
    answered: tuple[type[BaseException], ...] = ()
    clock: Callable[[], float] = time.monotonic
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _trials: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._advance()
            return self._state

    def _advance(self) -> None:
        if self._state is BreakerState.OPEN and self.clock() - self._opened_at >= self.cool_down:
            self._state = BreakerState.HALF_OPEN
            self._trials = 0

    def _before_call(self) -> None:
        with self._lock:
            self._advance()
            if self._state is BreakerState.OPEN:
                raise CircuitOpenError(self.name, self.cool_down - (self.clock() - self._opened_at))
            if self._state is BreakerState.HALF_OPEN:
                if self._trials >= self.half_open_max_calls:
                    raise CircuitOpenError(self.name, 0.0)
                self._trials += 1

    def record_success(self) -> None:
        with self._lock:
            closed = self._state is not BreakerState.CLOSED  # a change, not the healthy path
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._trials = 0
        if closed:
            breaker_state_changed(self.name, is_open=False)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            opened = self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold
            changed = opened and self._state is not BreakerState.OPEN
            if opened:
                self._state = BreakerState.OPEN
                self._opened_at = self.clock()
                self._failures = 0
        if opened:
            circuit_opened(self.name)
        if changed:
            breaker_state_changed(self.name, is_open=True)

    def _release_trial(self) -> None:
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._trials > 0:
                self._trials -= 1

    def call(self, fn: Callable[[], T]) -> T:
        self._before_call()
        settled = False
        try:
            result = fn()
        except self.answered:
            settled = True
            self.record_success()
            raise
        except self.counted:
            settled = True
            self.record_failure()
            raise
        finally:
            # Neither a success nor a counted failure (an uncounted error, or KeyboardInterrupt):
            # give back the half-open trial slot, or the breaker would refuse every call for ever.
            if not settled and sys.exc_info()[0] is not None:
                self._release_trial()
        self.record_success()
        return result


def circuit_opened(name: str) -> None:
    """Count a breaker opening: the EMF metric ``CircuitOpened`` (namespace InsightMesh,
    dimension ``dependency``) that the template's alarms watch, e.g. ``dependency=llm:openai``."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="CircuitOpened", unit=MetricUnit.Count, value=1, namespace="InsightMesh",
                       default_dimensions={"dependency": name}):
        pass


def breaker_state_changed(name: str, *, is_open: bool) -> None:
    """The breaker's state as the EMF metric ``BreakerOpen`` (namespace InsightMesh, dimension
    ``Dependency``): 1 when it opens, 0 when it closes, which the operations dashboard plots.
    Emitted on a change of state only, never for a call through a closed breaker."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="BreakerOpen", unit=MetricUnit.Count, value=1 if is_open else 0,
                       namespace="InsightMesh", default_dimensions={"Dependency": name}):
        pass


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(
    name: str,
    *,
    failure_threshold: int = 5,
    cool_down: float = 30.0,
    answered: tuple[type[BaseException], ...] = (),
) -> CircuitBreaker:
    """The process-wide breaker of dependency ``name`` (one per dependency, created once)."""
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, failure_threshold=failure_threshold, cool_down=cool_down,
                                     answered=answered)
            _breakers[name] = breaker
        return breaker


def call_with_resilience(
    breaker: CircuitBreaker, fn: Callable[[], T], *, retry: RetryPolicy | None = None
) -> T:
    """Each attempt goes through the breaker; an open circuit is not retried."""
    policy = retry or RetryPolicy()
    return policy.call(lambda: breaker.call(fn))
