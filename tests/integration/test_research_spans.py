"""Durable research steps as spans (insightmesh.research.workflow): one span per step the workflow
runs, in the run's trace, with the run id — and none for a step replayed from its checkpoint. Run
by the durable SDK's testing package as in test_research_workflow, with the offline LLM."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from aws_durable_execution_sdk_python.execution import InvocationStatus
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from insightmesh.llm.offline import OfflineClient
from tests.integration.test_research_workflow import FlakyPeople, Harness, StandinSearch, new_run, run_workflow
from tests.tracing_fixtures import attributes, spans_named, traced_fixture  # noqa: F401

STEPS = ("research plan", "research researcher", "research synthesis", "research review", "research report")


@pytest.fixture
def harness(tables: dict[str, str]) -> Iterator[Harness]:
    StandinSearch.calls.clear()
    yield Harness()


def test_each_step_the_workflow_runs_is_a_span_in_the_runs_trace(
        harness: Harness, traced: InMemorySpanExporter) -> None:
    run_id = new_run()

    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)

    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    steps = [span for span in traced.get_finished_spans() if span.name in STEPS]
    assert Counter(span.name for span in steps) == {"research plan": 1, "research researcher": 6,
                                                    "research synthesis": 1, "research review": 1,
                                                    "research report": 1}
    assert {attributes(span)["insightmesh.research.run_id"] for span in steps} == {run_id}
    assert {attributes(span)["insightmesh.research.researcher"] for span in spans_named(
        traced, "research researcher")} == {"overview", "people", "financials", "news", "competitors", "technology"}
    [run_span] = spans_named(traced, "research run")
    assert {span.context.trace_id for span in steps} == {run_span.context.trace_id}
    # The LLM and tool spans of a researcher are its children (the SDK runs researchers in threads).
    researcher_ids = {span.context.span_id for span in spans_named(traced, "research researcher")}
    tool_spans = spans_named(traced, "execute_tool")
    assert tool_spans and all(span.parent and span.parent.span_id in researcher_ids for span in tool_spans)
    [plan] = spans_named(traced, "research plan")
    assert any(span.name == "chat offline" and span.parent and span.parent.span_id == plan.context.span_id
               for span in traced.get_finished_spans())


def test_a_replayed_step_has_no_new_span_and_a_failed_one_ends_in_error(
        harness: Harness, traced: InMemorySpanExporter) -> None:
    llm = FlakyPeople()  # the "people" researcher fails once; the SDK retries it in a new invocation

    result, _ = run_workflow(harness.deps(llm), new_run())

    assert result.status is InvocationStatus.SUCCEEDED and llm.plans == 1
    assert len(spans_named(traced, "research run")) > 1, "more than one invocation"
    assert len(spans_named(traced, "research plan")) == 1, "the plan was replayed, not run again"
    people = [span for span in spans_named(traced, "research researcher")
              if attributes(span)["insightmesh.research.researcher"] == "people"]
    assert [span.status.status_code for span in people] == [StatusCode.ERROR, StatusCode.UNSET]
