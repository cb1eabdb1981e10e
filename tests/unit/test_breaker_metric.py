"""A circuit breaker that opens says so as a CloudWatch metric (EMF through powertools), which the
template's LlmCircuitOpenAlarm watches; its state changes (BreakerOpen 1/0) feed the dashboard."""

from __future__ import annotations

import json

from insightmesh.resilience import CircuitBreaker


def _points(out: str, metric: str = "CircuitOpened") -> list[dict]:
    points = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [p for p in points if metric in p]


def test_opening_emits_circuit_opened_once_with_the_dependency(capsys):
    now = [0.0]
    breaker = CircuitBreaker("llm:openai", failure_threshold=2, cool_down=10.0, clock=lambda: now[0])

    breaker.record_failure()
    assert _points(capsys.readouterr().out) == []  # one failure: still closed
    breaker.record_failure()

    [point] = _points(capsys.readouterr().out)
    assert point["CircuitOpened"] == [1.0] and point["dependency"] == "llm:openai"
    assert point["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "InsightMesh"
    assert point["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "CircuitOpened", "Unit": "Count"}]


def test_a_failed_half_open_trial_opens_it_again_and_counts_again(capsys):
    now = [0.0]
    breaker = CircuitBreaker("llm:bedrock", failure_threshold=1, cool_down=5.0, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 6.0
    assert breaker.state.value == "half_open"
    breaker.record_failure()

    assert [p["dependency"] for p in _points(capsys.readouterr().out)] == ["llm:bedrock", "llm:bedrock"]


def _states(out: str) -> list[tuple[str, float]]:
    return [(p["Dependency"], p["BreakerOpen"][0]) for p in _points(out, "BreakerOpen")]


def test_breaker_open_is_one_when_it_opens_and_zero_when_a_trial_closes_it(capsys):
    now = [0.0]
    breaker = CircuitBreaker("slack", failure_threshold=2, cool_down=5.0, clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_failure()
    [point] = _points(capsys.readouterr().out, "BreakerOpen")
    assert point["BreakerOpen"] == [1.0] and point["Dependency"] == "slack"
    assert point["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "InsightMesh"
    assert ["Dependency"] == [d for d in point["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] if d != "service"]

    now[0] = 6.0
    assert breaker.call(lambda: "ok") == "ok"  # the half-open trial succeeds: closed
    assert _states(capsys.readouterr().out) == [("slack", 0.0)]


def test_the_healthy_path_emits_nothing(capsys):
    breaker = CircuitBreaker("web", failure_threshold=3)
    for _ in range(50):
        breaker.call(lambda: None)
    breaker.record_failure()  # below the threshold: still closed
    breaker.call(lambda: None)
    assert _points(capsys.readouterr().out, "BreakerOpen") == []


def test_failures_while_already_open_are_no_new_state(capsys):
    now = [0.0]
    breaker = CircuitBreaker("llm:openai", failure_threshold=1, cool_down=10.0, clock=lambda: now[0])
    breaker.record_failure()
    breaker.record_failure()  # a call that was in flight when it opened fails too
    assert _states(capsys.readouterr().out) == [("llm:openai", 1.0)]
    now[0] = 11.0
    assert breaker.state.value == "half_open"
    breaker.record_failure()  # the trial fails: open again
    assert _states(capsys.readouterr().out) == [("llm:openai", 1.0)]
