"""The agent loop (insightmesh.tools.loop): step limit, token cap, timeouts, bad arguments,
refused and unknown tools, bounded results, numbered sources — against a scripted model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from insightmesh.llm.base import ChatMessage, Usage
from insightmesh.llm.offline import OfflineClient
from insightmesh.llm.tools import (
    INVALID_ARGUMENTS_KEY,
    ToolCall,
    ToolCompletion,
    ToolResultTurn,
    ToolSpec,
    Turn,
)
from insightmesh.tools import registry
from insightmesh.tools.base import Source, ToolContext, ToolError, ToolOutput
from insightmesh.tools.knowledge_search import KnowledgeSearchTool
from insightmesh.tools.loop import RESULT_CHARS, TOTAL_RESULT_CHARS, run_tool_loop


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)


class SearchTool:
    name: ClassVar[str] = "web_search"
    description: ClassVar[str] = "Search the web."
    parameters: ClassVar[type[BaseModel]] = Query
    timeout_seconds: ClassVar[float] = 5.0

    def __init__(self, text: str = "Acme makes anvils.", sources: Sequence[Source] = ()) -> None:
        self.text, self.sources = text, tuple(sources) or (Source("Acme", "https://acme.example/"),)
        self.calls: list[str] = []

    def allowed(self, context: ToolContext) -> bool:
        return True

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        assert isinstance(arguments, Query)
        self.calls.append(arguments.query)
        return ToolOutput(text=self.text, sources=self.sources)


class SlowTool(SearchTool):
    name: ClassVar[str] = "read_url"
    timeout_seconds: ClassVar[float] = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        self.release.wait(10)
        return ToolOutput(text="too late")


class AdminOnlyTool(SearchTool):
    name: ClassVar[str] = "sec_filings"

    def allowed(self, context: ToolContext) -> bool:
        return context.is_admin


class FailingTool(SearchTool):
    name: ClassVar[str] = "knowledge_search"

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        raise ToolError("the search service is down")


class ScriptedLlm:
    """A tool-calling model that answers from a script, recording what it was sent."""

    name = "scripted"

    def __init__(self, *steps: ToolCompletion) -> None:
        self.steps = list(steps)
        self.requests: list[tuple[list[Turn], list[ToolSpec]]] = []

    def complete(self, messages: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loop uses complete_with_tools")

    def complete_with_tools(self, turns: Sequence[Turn], *, tools: Sequence[ToolSpec], system: str | None = None,
                            max_tokens: int = 1024, temperature: float = 0.2) -> ToolCompletion:
        self.requests.append((list(turns), list(tools)))
        return self.steps.pop(0)


def calls(*items: tuple[str, dict[str, Any]], tokens: int = 10) -> ToolCompletion:
    return ToolCompletion(text="", tool_calls=tuple(ToolCall(f"c{i}", name, args) for i, (name, args)
                                                    in enumerate(items)),
                          usage=Usage(tokens, 1), model="m", provider="scripted", finish_reason="tool_calls")


def answer(text: str, tokens: int = 10) -> ToolCompletion:
    return ToolCompletion(text=text, tool_calls=(), usage=Usage(tokens, 1), model="m", provider="scripted")


QUESTION = [ChatMessage.user("Who is Acme?")]


def loop(llm: ScriptedLlm, tools: Sequence[Any], *, context: ToolContext | None = None, max_steps: int = 4,
         max_tokens: int = 10_000, **kwargs: Any) -> Any:
    return run_tool_loop(llm, QUESTION, tools=tools, context=context or ToolContext(user_id="U1"), system="sys",
                         max_steps=max_steps, max_tokens=max_tokens, **kwargs)


def results_of(llm: ScriptedLlm, request: int) -> list[ToolResultTurn]:
    return [turn for turn in llm.requests[request][0] if isinstance(turn, ToolResultTurn)]


def test_a_tool_result_goes_back_with_numbered_sources_and_the_answer_ends_the_loop() -> None:
    search = SearchTool()
    llm = ScriptedLlm(calls(("web_search", {"query": "acme"})), answer("Acme makes anvils [1]."))
    progress: list[str] = []
    texts: list[str] = []

    result = loop(llm, [search], context=ToolContext(user_id="U1", progress=progress.append), on_text=texts.append)

    assert result.stopped == "answer" and result.text == "Acme makes anvils [1]." and result.steps == 2
    assert texts == ["Acme makes anvils [1]."]
    assert search.calls == ["acme"]
    assert progress == ["Searching the web for “acme”…"]
    [offered] = llm.requests[0][1]
    assert offered.name == "web_search" and offered.parameters["properties"]["query"]["type"] == "string"
    [sent] = results_of(llm, 1)
    assert sent.content == "Acme makes anvils.\n\nSources:\n[1] Acme — https://acme.example/"
    assert result.sources == (Source("Acme", "https://acme.example/"),)
    assert result.usage == Usage(20, 2)


def test_sources_are_numbered_globally_and_deduplicated_by_url_after_the_initial_ones() -> None:
    first = Source("Acme", "https://acme.example/")
    second = Source("News", "https://news.example/acme")
    search = SearchTool(sources=[first, second])
    llm = ScriptedLlm(calls(("web_search", {"query": "a"})), calls(("web_search", {"query": "b"})), answer("done"))

    result = loop(llm, [search], sources=[Source("Handbook", "https://drive.example/h", kind="knowledge")])

    assert [source.title for source in result.sources] == ["Handbook", "Acme", "News"]
    assert results_of(llm, 2)[1].content.endswith("[2] Acme — https://acme.example/\n[3] News — https://news.example/acme")


def test_the_step_limit_asks_for_an_answer_without_tools() -> None:
    search = SearchTool()
    llm = ScriptedLlm(*[calls(("web_search", {"query": f"q{i}"})) for i in range(2)], answer("What I found [1]."))

    result = loop(llm, [search], max_steps=2)

    assert result.stopped == "step_limit" and result.text == "What I found [1]." and result.steps == 3
    assert search.calls == ["q0", "q1"]
    turns, offered = llm.requests[-1]
    assert offered == []  # the last call offers no tools
    assert isinstance(turns[-1], ChatMessage) and "Answer now" in turns[-1].content


def test_the_token_cap_stops_the_loop_with_what_it_has() -> None:
    search = SearchTool(text="Acme was founded in 1949 in the desert.")
    llm = ScriptedLlm(calls(("web_search", {"query": "acme"}), tokens=60), calls(("web_search", {"query": "b"}),
                                                                                tokens=60), answer("never"))

    result = loop(llm, [search], max_tokens=100)

    assert result.stopped == "token_cap"
    assert result.steps == 2 and search.calls == ["acme"]  # the second step's calls are not run
    assert "Acme was founded in 1949" in result.text and "[1]" in result.text
    assert "token budget" in result.text
    assert len(llm.steps) == 1  # no further call to the model


def test_a_tool_past_its_timeout_is_an_error_result_for_the_model() -> None:
    slow = SlowTool()
    llm = ScriptedLlm(calls(("read_url", {"query": "x"})), answer("It timed out."))
    try:
        result = loop(llm, [slow])
    finally:
        slow.release.set()

    [sent] = results_of(llm, 1)
    assert sent.is_error and "did not answer within 0.1 s" in sent.content
    assert result.text == "It timed out."


def test_bad_arguments_unknown_tools_and_refused_tools_are_fed_back_as_errors() -> None:
    search, admin_only = SearchTool(), AdminOnlyTool()
    llm = ScriptedLlm(
        calls(("web_search", {"query": ""}), ("web_search", {"q": "acme"}),
              ("web_search", {INVALID_ARGUMENTS_KEY: "{"}), ("delete_everything", {}),
              ("sec_filings", {"query": "acme"}), ("web_search", {"query": "ok"})),
        answer("done"))

    loop(llm, [search, admin_only])

    sent = results_of(llm, 1)
    assert [result.is_error for result in sent] == [True, True, True, True, True, False]
    assert "invalid arguments for web_search: query" in sent[0].content
    assert "q: Extra inputs are not permitted" in sent[1].content
    assert "not a JSON object" in sent[2].content
    assert "no tool named 'delete_everything'" in sent[3].content and "sec_filings, web_search" in sent[3].content
    assert "not available to this person" in sent[4].content
    assert search.calls == ["ok"]  # only the valid call ran
    assert [result.call_id for result in sent] == [f"c{i}" for i in range(6)]


def test_a_tool_not_enabled_here_is_refused_even_when_offered() -> None:
    search = SearchTool()
    llm = ScriptedLlm(calls(("web_search", {"query": "acme"})), answer("done"))

    loop(llm, [search], context=ToolContext(user_id="U1", enabled=frozenset({"knowledge_search"})))

    assert results_of(llm, 1)[0].is_error and "not enabled here" in results_of(llm, 1)[0].content
    assert search.calls == []


def test_a_tool_error_is_its_message_for_the_model() -> None:
    llm = ScriptedLlm(calls(("knowledge_search", {"query": "acme"})), answer("done"))
    loop(llm, [FailingTool()])
    [sent] = results_of(llm, 1)
    assert sent.is_error and sent.content == "Error: the search service is down"


def test_results_are_bounded_each_and_in_total() -> None:
    search = SearchTool(text="x" * (RESULT_CHARS * 3))
    steps = [calls(*[("web_search", {"query": str(i)})] * 3) for i in range(4)]
    llm = ScriptedLlm(*steps, answer("done"))

    result = loop(llm, [search], max_steps=4)

    assert all(len(r.content.split("\n\nSources:")[0]) <= RESULT_CHARS for r in result.results)
    assert sum(len(r.content.split("\n\nSources:")[0]) for r in result.results) <= TOTAL_RESULT_CHARS + 12 * 200
    assert "cut" in result.results[0].content


def test_the_offline_plan_runs_through_the_loop_with_the_knowledge_search_tool() -> None:
    from insightmesh.knowledge.base import Passage

    passage = Passage(document_id="d1", title="Acme handbook", url="https://drive.example/acme",
                      text="Acme Corp sells anvils to coyotes.", score=1.0, chunk_index=0)
    seen: list[str] = []
    context = ToolContext(user_id="U1", retrieve=lambda q: seen.append(q) or [passage])

    result = run_tool_loop(OfflineClient(), [ChatMessage.user("anvils at Acme")], tools=[KnowledgeSearchTool()],
                           context=context, system=None, max_steps=4, max_tokens=10_000)

    assert seen == ["anvils at Acme"]
    assert result.stopped == "answer" and result.steps == 2
    assert "Acme Corp sells anvils to coyotes. [1]" in result.text
    assert result.sources == (Source("Acme handbook", "https://drive.example/acme", kind="knowledge",
                                     snippet="Acme Corp sells anvils to coyotes."),)


def test_the_registry_imports_tools_lazily_and_knows_their_names() -> None:
    assert isinstance(registry.get_tool("knowledge_search"), KnowledgeSearchTool)
    assert registry.get_tool("knowledge_search") is registry.get_tool("knowledge_search")
    assert [tool.name for tool in registry.tools_named(["knowledge_search", "nonsense"])] == ["knowledge_search"]
    with pytest.raises(KeyError):
        registry.get_tool("nonsense")
    assert registry.tool_names() == ("knowledge_search", "read_url", "sec_filings", "web_search")
