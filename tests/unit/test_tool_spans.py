"""Tool calls of the agent loop as GenAI ``execute_tool`` spans (insightmesh.tools.loop), children of
the caller's span although each tool runs in its own thread; exported to an in-memory exporter."""

from __future__ import annotations

import json
import threading

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from insightmesh import tracing
from insightmesh.tools.base import ToolContext
from tests.tracing_fixtures import all_text, attributes, spans_named, traced_fixture  # noqa: F401
from tests.unit.test_tool_loop import AdminOnlyTool, FailingTool, ScriptedLlm, SearchTool, SlowTool, answer, calls, loop


def run_in_request(exporter: InMemorySpanExporter, llm: ScriptedLlm, tools: list[object],
                   **kwargs: object) -> ReadableSpan:
    """The loop inside a ``request`` span; that span."""
    with tracing.span("request"):
        loop(llm, tools, **kwargs)
    [request] = spans_named(exporter, "request")
    return request


def test_a_tool_call_is_an_execute_tool_span_under_the_callers_span_without_its_arguments(
        traced: InMemorySpanExporter) -> None:
    llm = ScriptedLlm(calls(("web_search", {"query": "acme secret plans"})), answer("done"))

    request = run_in_request(traced, llm, [SearchTool()])

    [span] = spans_named(traced, "execute_tool")
    assert span.name == "execute_tool web_search"
    assert attributes(span) == {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search", "gen_ai.tool.call.id": "c0",
        "insightmesh.tool.outcome": "ok", "insightmesh.tool.result_chars": len("Acme makes anvils."),
        "insightmesh.tool.sources": 1,
    }
    assert span.parent is not None and request.context is not None
    assert span.parent.span_id == request.context.span_id and span.context.trace_id == request.context.trace_id
    assert "secret plans" not in all_text(traced)


def test_refused_and_unknown_calls_are_spans_marked_refused(traced: InMemorySpanExporter) -> None:
    llm = ScriptedLlm(calls(("sec_filings", {"query": "acme"}), ("no_such_tool", {})), answer("done"))

    run_in_request(traced, llm, [AdminOnlyTool()], context=ToolContext(user_id="U1", is_admin=False))

    spans = {span.name: span for span in spans_named(traced, "execute_tool")}
    assert set(spans) == {"execute_tool sec_filings", "execute_tool no_such_tool"}
    for span in spans.values():
        assert attributes(span)["insightmesh.tool.outcome"] == "refused"
        assert span.status.status_code is StatusCode.UNSET


def test_a_failing_tool_is_an_error_span(traced: InMemorySpanExporter) -> None:
    llm = ScriptedLlm(calls(("knowledge_search", {"query": "acme"})), answer("done"))

    run_in_request(traced, llm, [FailingTool()])

    [span] = spans_named(traced, "execute_tool")
    assert attributes(span)["insightmesh.tool.outcome"] == "failed"
    assert attributes(span)["error.type"] == "ToolError"
    assert span.status.status_code is StatusCode.ERROR


def test_a_tool_past_its_timeout_ends_its_span_failed_with_timeout_when_it_returns(
        traced: InMemorySpanExporter) -> None:
    slow = SlowTool()
    llm = ScriptedLlm(calls(("read_url", {"query": "acme"})), answer("done"))

    run_in_request(traced, llm, [slow])
    [thread] = [thread for thread in threading.enumerate() if thread.name == "tool-read_url"]
    assert spans_named(traced, "execute_tool") == []  # still running
    slow.release.set()
    thread.join(10)

    [span] = spans_named(traced, "execute_tool")
    assert attributes(span)["error.type"] == "timeout"
    assert attributes(span)["insightmesh.tool.outcome"] == "failed"


def test_arguments_are_on_the_span_redacted_only_with_content_capture(
        traced: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_VARIABLE, "true")
    llm = ScriptedLlm(calls(("web_search", {"query": "acme for jane.doe@example.com"})), answer("done"))

    run_in_request(traced, llm, [SearchTool()])

    [span] = spans_named(traced, "execute_tool")
    assert json.loads(str(attributes(span)["gen_ai.tool.call.arguments"])) == {"query": "acme for j***@example.com"}
