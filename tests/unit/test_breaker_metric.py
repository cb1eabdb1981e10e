"""A circuit breaker that opens says so as a CloudWatch metric (EMF through powertools), which the
template's LlmCircuitOpenAlarm watches."""

from __future__ import annotations

import json

from insightmesh.resilience import CircuitBreaker


def _points(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


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
