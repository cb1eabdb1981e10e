"""Circuit breaker, retry policy and Retry-After parsing (insightmesh.resilience)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from insightmesh import resilience
from insightmesh.resilience import (
    MAX_RETRY_AFTER_SECONDS,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    RetryableError,
    RetryPolicy,
    Timeouts,
    breaker_for,
    call_with_resilience,
    parse_retry_after,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Dependency:
    """A callable that fails ``failures`` times (with ``error``) and then answers ``result``."""

    def __init__(self, failures: int = 0, error: BaseException | None = None, result: str = "ok") -> None:
        self.failures = failures
        self.error = error or ConnectionError("dependency down")
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.result


def always_failing() -> Dependency:
    return Dependency(failures=10**9)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("slack", failure_threshold=3, cool_down=30.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(always_failing())


# -- circuit breaker ----------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_passes_calls_through(breaker: CircuitBreaker) -> None:
    assert breaker.state is BreakerState.CLOSED
    assert breaker.call(lambda: 42) == 42
    assert breaker.state is BreakerState.CLOSED


def test_failures_below_the_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.call(lambda: "still called") == "still called"


def test_it_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    assert breaker.state is BreakerState.OPEN


def test_the_original_error_propagates_while_counting(breaker: CircuitBreaker) -> None:
    error = ConnectionError("specific")
    with pytest.raises(ConnectionError) as caught:
        breaker.call(Dependency(failures=1, error=error))
    assert caught.value is error


def test_an_open_circuit_raises_without_calling_the_dependency(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(10)
    dependency = Dependency()

    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(dependency)

    assert dependency.calls == 0
    assert caught.value.name == "slack"
    assert caught.value.retry_in == pytest.approx(20.0)
    assert "'slack'" in str(caught.value)


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.call(lambda: "ok") == "ok"
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_it_stays_open_until_the_cool_down_has_passed(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(29.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_half_open_success_closes_the_circuit(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    probe = Dependency()

    assert breaker.call(probe) == "ok"

    assert probe.calls == 1
    assert breaker.state is BreakerState.CLOSED
    # Closed again with a clean slate: it takes a full threshold of failures to re-open.
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_a_half_open_failure_reopens_for_another_cool_down(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    fail(breaker, 1)  # one failed trial is enough

    assert breaker.state is BreakerState.OPEN
    clock.advance(29)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(Dependency())
    assert caught.value.retry_in == pytest.approx(1.0)
    clock.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_lets_only_max_calls_trials_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker("llm", failure_threshold=1, cool_down=5, half_open_max_calls=2, clock=clock)
    fail(breaker, 1)
    clock.advance(5)
    seen: list[str] = []

    def third_concurrent_call() -> str:
        seen.append("trial 2 in flight")
        with pytest.raises(CircuitOpenError) as caught:
            breaker.call(lambda: "never")
        assert caught.value.retry_in == 0.0
        return "trial 2"

    def first_trial() -> str:
        seen.append("trial 1 in flight")
        # While trial 1 is in flight, trial 2 may start; a third call is refused.
        assert breaker.call(third_concurrent_call) == "trial 2"
        return "trial 1"

    assert breaker.call(first_trial) == "trial 1"
    assert seen == ["trial 1 in flight", "trial 2 in flight"]
    assert breaker.state is BreakerState.CLOSED


def test_with_one_trial_a_second_half_open_call_is_refused(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    refused = Dependency()

    def trial() -> str:
        with pytest.raises(CircuitOpenError):
            breaker.call(refused)
        return "trial"

    assert breaker.call(trial) == "trial"
    assert refused.calls == 0


def test_errors_that_are_not_counted_do_not_open_the_circuit(clock: FakeClock) -> None:
    breaker = CircuitBreaker("google", failure_threshold=1, counted=(ConnectionError,), clock=clock)

    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(Dependency(failures=1, error=ValueError("a 404, the service answered")))

    assert breaker.state is BreakerState.CLOSED


def test_an_uncounted_error_in_a_half_open_trial_does_not_wedge_the_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker(
        "google", failure_threshold=1, cool_down=5, counted=(ConnectionError,), clock=clock
    )
    fail(breaker, 1)
    clock.advance(5)

    with pytest.raises(ValueError):
        breaker.call(Dependency(failures=1, error=ValueError("bad request")))

    # The trial slot was given back: the next call is a trial, and its success closes the circuit.
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is BreakerState.CLOSED


def test_record_success_and_failure_can_be_reported_directly(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


@pytest.fixture
def breaker_name() -> Iterator[str]:
    name = f"dependency-{uuid.uuid4().hex}"
    yield name
    resilience._breakers.pop(name, None)


def test_breaker_for_returns_one_breaker_per_name(breaker_name: str) -> None:
    first = breaker_for(breaker_name, failure_threshold=2, cool_down=7)
    second = breaker_for(breaker_name, failure_threshold=99, cool_down=99)

    assert second is first
    assert (first.name, first.failure_threshold, first.cool_down) == (breaker_name, 2, 7)
    other = breaker_for(breaker_name + "-other")
    try:
        assert other is not first
    finally:
        resilience._breakers.pop(breaker_name + "-other", None)


def test_breaker_for_shares_state_between_callers(breaker_name: str) -> None:
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker_for(breaker_name, failure_threshold=2).call(always_failing())
    assert breaker_for(breaker_name).state is BreakerState.OPEN


# -- retry policy -------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.jitter_calls: list[tuple[float, float]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def jitter(self, low: float, high: float) -> float:
        self.jitter_calls.append((low, high))
        return high


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def policy(recorder: Recorder, **overrides: object) -> RetryPolicy:
    return RetryPolicy(sleep=recorder.sleep, jitter=recorder.jitter, **overrides)  # type: ignore[arg-type]


def test_a_success_is_returned_without_sleeping(recorder: Recorder) -> None:
    dependency = Dependency()
    assert policy(recorder).call(dependency) == "ok"
    assert dependency.calls == 1
    assert recorder.sleeps == []


def test_transient_failures_are_retried_until_success(recorder: Recorder) -> None:
    dependency = Dependency(failures=2, error=RetryableError("503"))
    assert policy(recorder, attempts=3).call(dependency) == "ok"
    assert dependency.calls == 3
    assert recorder.sleeps == [0.2, 0.4]


def test_attempts_are_bounded_and_the_last_error_is_raised(recorder: Recorder) -> None:
    dependency = Dependency(failures=10, error=RetryableError("503"))

    with pytest.raises(RetryableError, match="503"):
        policy(recorder, attempts=4).call(dependency)

    assert dependency.calls == 4
    assert len(recorder.sleeps) == 3


def test_a_single_attempt_never_retries(recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=RetryableError("503"))
    with pytest.raises(RetryableError):
        policy(recorder, attempts=1).call(dependency)
    assert dependency.calls == 1
    assert recorder.sleeps == []


def test_zero_attempts_is_refused(recorder: Recorder) -> None:
    dependency = Dependency()
    with pytest.raises(ValueError, match="attempts"):
        policy(recorder, attempts=0).call(dependency)
    assert dependency.calls == 0


def test_backoff_doubles_up_to_the_ceiling_with_full_jitter(recorder: Recorder) -> None:
    dependency = Dependency(failures=10, error=RetryableError("503"))

    with pytest.raises(RetryableError):
        policy(recorder, attempts=7, base_delay=1.0, max_delay=5.0).call(dependency)

    assert recorder.jitter_calls == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 5.0), (0.0, 5.0), (0.0, 5.0)]
    assert recorder.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_the_jittered_value_is_what_is_slept(recorder: Recorder) -> None:
    dependency = Dependency(failures=2, error=RetryableError("503"))
    retry = RetryPolicy(sleep=recorder.sleep, jitter=lambda low, high: (low + high) / 2, base_delay=1.0)
    retry.call(dependency)
    assert recorder.sleeps == [0.5, 1.0]


def test_default_jitter_stays_within_the_ceiling(recorder: Recorder) -> None:
    retry = RetryPolicy(sleep=recorder.sleep, base_delay=0.5, max_delay=1.0)
    for attempt in range(1, 6):
        delay = retry.delay_for(attempt, RetryableError("x"))
        assert delay is not None
        assert 0.0 <= delay <= min(1.0, 0.5 * 2 ** (attempt - 1))


def test_retry_after_replaces_the_backoff(recorder: Recorder) -> None:
    dependency = Dependency(failures=2, error=RetryableError("429", retry_after=7))
    assert policy(recorder).call(dependency) == "ok"
    assert recorder.sleeps == [7.0, 7.0]
    assert recorder.jitter_calls == []


def test_a_zero_retry_after_retries_immediately(recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=RetryableError("429", retry_after=0))
    assert policy(recorder).call(dependency) == "ok"
    assert recorder.sleeps == [0.0]


def test_a_retry_after_of_exactly_the_maximum_is_honoured(recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=RetryableError("429", retry_after=30.0))
    assert policy(recorder, max_retry_after=30.0).call(dependency) == "ok"
    assert recorder.sleeps == [30.0]


def test_a_retry_after_above_the_maximum_is_not_retried(recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=RetryableError("429", retry_after=31))

    with pytest.raises(RetryableError) as caught:
        policy(recorder, max_retry_after=30.0).call(dependency)

    assert caught.value.retry_after == 31
    assert dependency.calls == 1
    assert recorder.sleeps == []


def test_non_retryable_errors_propagate_immediately(recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=PermissionError("403"))
    with pytest.raises(PermissionError):
        policy(recorder, attempts=5).call(dependency)
    assert dependency.calls == 1
    assert recorder.sleeps == []


def test_retry_on_selects_what_is_retried(recorder: Recorder) -> None:
    dependency = Dependency(failures=2, error=TimeoutError("read timeout"))
    assert policy(recorder, retry_on=(TimeoutError,)).call(dependency) == "ok"
    assert dependency.calls == 3

    retryable = Dependency(failures=1, error=RetryableError("no longer retried"))
    with pytest.raises(RetryableError):
        policy(recorder, retry_on=(TimeoutError,)).call(retryable)
    assert retryable.calls == 1


# -- Retry-After parsing ------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 12 ", 12.0), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0), ("3600", MAX_RETRY_AFTER_SECONDS)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # a date without a zone is UTC
        ("Wed, 21 Oct 2015 08:28:30 +0100", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        ("Thu, 22 Oct 2015 07:28:00 GMT", MAX_RETRY_AFTER_SECONDS),  # capped
    ],
)
def test_retry_after_as_an_http_date(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


def test_retry_after_http_date_defaults_to_the_current_time() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT") == 0.0


@pytest.mark.parametrize(
    "header", [None, "", "   ", "soon", "Someday, 99 Foo 20XX", "5 seconds", "nan", "inf"]
)
def test_garbage_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


# -- call_with_resilience -----------------------------------------------------------------------


def test_call_with_resilience_returns_the_result(breaker: CircuitBreaker, recorder: Recorder) -> None:
    dependency = Dependency(failures=1, error=RetryableError("503"))
    assert call_with_resilience(breaker, dependency, retry=policy(recorder)) == "ok"
    assert dependency.calls == 2
    assert breaker.state is BreakerState.CLOSED


def test_every_attempt_is_counted_by_the_breaker(clock: FakeClock, recorder: Recorder) -> None:
    breaker = CircuitBreaker("slack", failure_threshold=2, clock=clock)
    dependency = Dependency(failures=10, error=RetryableError("503"))

    # Two failed attempts open the circuit; the third attempt meets the open circuit, which is
    # not retried.
    with pytest.raises(CircuitOpenError):
        call_with_resilience(breaker, dependency, retry=policy(recorder, attempts=5))

    assert dependency.calls == 2
    assert len(recorder.sleeps) == 2
    assert breaker.state is BreakerState.OPEN


def test_an_open_circuit_is_not_retried(breaker: CircuitBreaker, recorder: Recorder) -> None:
    fail(breaker, 3)
    dependency = Dependency()

    with pytest.raises(CircuitOpenError):
        call_with_resilience(breaker, dependency, retry=policy(recorder, attempts=5))

    assert dependency.calls == 0
    assert recorder.sleeps == []


def test_an_open_circuit_is_not_retried_even_by_a_retry_everything_policy(
    breaker: CircuitBreaker, recorder: Recorder
) -> None:
    fail(breaker, 3)
    dependency = Dependency()
    retry_all = policy(recorder, attempts=5, retry_on=(Exception,))

    with pytest.raises(CircuitOpenError):
        call_with_resilience(breaker, dependency, retry=retry_all)

    assert dependency.calls == 0
    assert recorder.sleeps == []


def test_a_retry_everything_policy_still_retries_other_errors(recorder: Recorder) -> None:
    dependency = Dependency(failures=2, error=KeyError("flaky"))
    assert policy(recorder, retry_on=(Exception,)).call(dependency) == "ok"
    assert dependency.calls == 3


def test_call_with_resilience_has_a_default_policy(breaker: CircuitBreaker) -> None:
    call: Callable[[], str] = Dependency()
    assert call_with_resilience(breaker, call) == "ok"


def test_timeouts_total() -> None:
    assert Timeouts().total == 12.0
    assert Timeouts(connect=0.5, read=1.5).total == 2.0
