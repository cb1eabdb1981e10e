"""The durable research workflow (insightmesh.research.workflow) run by the durable execution SDK's
own testing package (its in-process executor: checkpoints, retries and replays as Lambda does),
against moto's tables, with stand-in tools, a recording progress board and delivery, and either
the offline LLM or the OpenAI stand-in (tests/standins/openai_server.py) scripted turn by turn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest
from aws_durable_execution_sdk_python.execution import InvocationStatus, durable_execution
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner
from pydantic import BaseModel

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.budgets import check as budgets
from insightmesh.budgets.settings import budget_settings
from insightmesh.knowledge.base import Audience, Passage, Viewer
from insightmesh.llm.base import LlmUnavailableError, Usage
from insightmesh.llm.offline import OfflineClient
from insightmesh.llm.openai import OpenAICompatibleClient
from insightmesh.llm.pricing import forget_prices, pricing_settings
from insightmesh.llm.tools import ToolCompletion
from insightmesh.llm.usage import agent_subject, period_of, usage_for
from insightmesh.research import runs, workflow
from insightmesh.research.base import PlanTask, TaskStatus
from insightmesh.research.settings import ResearchSettings
from insightmesh.resilience import Timeouts
from insightmesh.tools.base import Source, ToolContext, ToolOutput
from tests.integration.test_budgets import set_budget, spend
from tests.standins.openai_server import OpenAIStandin
from tests.standins.openai_server import start as start_openai

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}
SHARED = Source(title="Acme Corp — About", url="https://acme.example/about", kind="web")


class _Query(BaseModel):
    query: str


class _Url(BaseModel):
    url: str


class StandinSearch:
    """web_search / sec_filings: one page per query plus Acme's about page (shared by every query)."""

    name: ClassVar[str] = "web_search"
    description: ClassVar[str] = "Search the web."
    parameters: ClassVar[type[BaseModel]] = _Query
    timeout_seconds: ClassVar[float] = 5.0
    calls: ClassVar[list[str]] = []

    def allowed(self, context: ToolContext) -> bool:
        return True

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        query = str(getattr(arguments, "query", ""))
        type(self).calls.append(f"{self.name}:{query[:40]}")
        page = Source(title=f"Result for {query[:30]}", url=f"https://news.example/{abs(hash(query)) % 10_000}")
        return ToolOutput(text=f"Acme Corp makes anvils. ({query[:30]})", sources=(SHARED, page))


class StandinFilings(StandinSearch):
    name: ClassVar[str] = "sec_filings"
    description: ClassVar[str] = "Search SEC filings."


class StandinRead:
    name: ClassVar[str] = "read_url"
    description: ClassVar[str] = "Read a web page."
    parameters: ClassVar[type[BaseModel]] = _Url
    timeout_seconds: ClassVar[float] = 5.0

    def allowed(self, context: ToolContext) -> bool:
        return True

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        url = str(getattr(arguments, "url", ""))
        return ToolOutput(text=f"The page {url} says Acme Corp was founded in 1949.",
                          sources=(Source(title="Page", url=url),))


class StandinKnowledge(StandinSearch):
    """knowledge_search: what the context's audience-bound ``retrieve`` finds."""

    name: ClassVar[str] = "knowledge_search"
    description: ClassVar[str] = "Search the company's documents."

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        passages = context.retrieve(str(getattr(arguments, "query", "")))
        type(self).calls.append(f"{self.name}:{len(passages)}")
        return ToolOutput(text="; ".join(p.text for p in passages) or "nothing",
                          sources=tuple(Source(title=p.title, url=f"https://drive.example/{p.document_id}",
                                               kind="knowledge") for p in passages))


STANDIN_TOOLS = {"web_search": StandinSearch(), "sec_filings": StandinFilings(), "read_url": StandinRead(),
                 "knowledge_search": StandinKnowledge()}


@dataclass
class RecordingBoard:
    events: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def show_plan(self, tasks: Sequence[PlanTask]) -> None:
        with self.lock:
            self.events.append(("plan", [task.id for task in tasks]))

    def update(self, task_id: str, status: TaskStatus, detail: str = "") -> None:
        with self.lock:
            self.events.append(("update", (task_id, status)))

    def close(self, text: str) -> None:
        with self.lock:
            self.events.append(("close", text))

    def updates(self, status: str) -> set[str]:
        return {task for kind, value in self.events if kind == "update" for task, got in [value] if got == status}

    @property
    def closed(self) -> list[str]:
        return [value for kind, value in self.events if kind == "close"]


@dataclass
class Harness:
    board: RecordingBoard = field(default_factory=RecordingBoard)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    deliver_error: Exception | None = None

    def deliver(self, *, channel_id: str, thread_ts: str, document: ReportDocument, filename: str,
                summary: str) -> str:
        if self.deliver_error is not None:
            raise self.deliver_error
        self.delivered.append({"channel_id": channel_id, "thread_ts": thread_ts, "document": document,
                               "filename": filename, "summary": summary})
        return f"F{len(self.delivered)}"

    def notify(self, run: runs.ResearchRun, key: str, text: str) -> None:
        self.notices.append((key, text))

    searched_for: list[Audience] = field(default_factory=list)

    def retrieve(self, question: str, audience: Audience) -> list[Passage]:
        self.searched_for.append(audience)
        return [Passage(document_id="doc-1", title="Acme account plan", url=None, text="Acme renews in May.",
                        score=1.0, chunk_index=0)]

    def deps(self, llm: Any, **settings: int) -> workflow.WorkflowDeps:
        values = ResearchSettings(**settings)  # type: ignore[arg-type]
        return workflow.WorkflowDeps(
            llm=lambda: llm, board_for=lambda _run: self.board, deliver_report=self.deliver, notify=self.notify,
            tools_for=lambda names: [STANDIN_TOOLS[name] for name in names if name in STANDIN_TOOLS],
            settings=lambda: values, retrieve=self.retrieve)


def run_workflow(deps: workflow.WorkflowDeps, run_id: str) -> tuple[Any, dict[str, Any]]:
    @durable_execution
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return workflow.run_research(event, context, deps=deps)

    with DurableFunctionTestRunner(handler=handler) as runner:
        result = runner.run(input=json.dumps({"run_id": run_id}), execution_timeout=120, execution_name=run_id)
    return result, json.loads(result.result) if result.result else {}


def new_run(token_cap: int = 500_000, subject: str = "Acme Corp", **kwargs: Any) -> str:
    return runs.create_run(kind="profile", user_id="U1", subject=subject, question=f"profile {subject}",
                           token_cap=token_cap, **THREAD, **kwargs).run_id


def stored(run_id: str) -> runs.ResearchRun:
    run = runs.get_run(run_id)
    assert run is not None
    return run


@pytest.fixture
def harness(tables: dict[str, str]) -> Iterator[Harness]:
    StandinSearch.calls.clear()
    yield Harness()


# -- pure pieces -----------------------------------------------------------------------------------


def test_a_plan_that_is_not_json_falls_back_to_the_default_six():
    assert [r["id"] for r in workflow.parse_plan("[offline LLM] sure!", "Acme")] == [
        "overview", "people", "financials", "news", "competitors", "technology"]
    plan = workflow.parse_plan('Here: {"researchers": [{"id": "Board Members", "title": "Board", "focus": "who"},'
                               ' {"id": "plan", "title": "x", "focus": "y"}, {"id": "filings", "title": "SEC",'
                               ' "focus": "10-K"}]}', "Acme")
    assert [(r["id"], r["tools"]) for r in plan] == [("board-members", ["web_search", "read_url"]),
                                                     ("filings", ["web_search", "read_url", "sec_filings"])]


def test_sources_are_merged_once_and_citations_renumbered():
    findings: list[workflow.Finding] = [
        {"id": "a", "title": "A", "text": "x [1] y [2]", "stopped": "answer", "tokens": 1,
         "sources": [{"title": "S", "url": "https://s/", "kind": "web", "snippet": ""},
                     {"title": "T", "url": "https://t/", "kind": "web", "snippet": ""}]},
        {"id": "b", "title": "B", "text": "z [1] w [2] bogus [9]", "stopped": "answer", "tokens": 1,
         "sources": [{"title": "U", "url": "https://u/", "kind": "web", "snippet": ""},
                     {"title": "T", "url": "https://t/", "kind": "web", "snippet": ""}]},
    ]
    sources, texts = workflow.merge_sources(findings)
    assert [s["url"] for s in sources] == ["https://s/", "https://t/", "https://u/"]
    assert texts == ["x [1] y [2]", "z [3] w [2] bogus "]
    assert workflow.citation_issues("a [1] b [4]", 3) == ["citations [4] point to no source (there are 3)"]
    assert workflow.parse_review('{"pass": false, "issues": ["uncited"]}') == (False, ["uncited"])
    assert workflow.parse_review("looks fine") == (True, [])


# -- whole runs ------------------------------------------------------------------------------------


def test_a_profile_run_with_the_offline_llm_plans_researches_reviews_and_delivers(harness):
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert outcome["status"] == "succeeded" and outcome["report_file_id"] == "F1"
    plans = [value for kind, value in harness.board.events if kind == "plan"]
    assert plans[-1] == ["plan", "overview", "people", "financials", "news", "competitors", "technology",
                         "synthesis", "review", "report"]
    assert {"overview", "people", "financials", "news", "competitors", "technology", "synthesis",
            "report"} <= harness.board.updates("complete")
    assert any(call.startswith("sec_filings:") for call in StandinSearch.calls), "financials search filings"
    [delivery] = harness.delivered
    document: ReportDocument = delivery["document"]
    urls = [source.url for source in document.sources]
    assert len(urls) == len(set(urls)) and urls.count(SHARED.url) == 1, "sources deduplicated across researchers"
    assert document.title == "Profile: Acme Corp" and document.sections and not document.note
    assert delivery["filename"] == "acme-corp-profile.pdf" and delivery["thread_ts"] == THREAD["thread_ts"]
    run = stored(run_id)
    assert run.status == "succeeded" and run.report_file_id == "F1" and run.summary
    assert run.llm_calls >= 6 + 3 and run.tokens_used > 0
    assert {step.name: step.status for step in run.steps} == dict.fromkeys(
        ["plan", "overview", "people", "financials", "news", "competitors", "technology", "synthesis", "review",
         "report"], "complete"), "every step recorded, the parallel researchers' included"
    assert harness.board.closed and harness.board.closed[-1].startswith("Done")


class CancellingLlm(OfflineClient):
    """The offline LLM; the person says "stop" while the plan is being made."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def complete(self, messages: Any, **kwargs: Any) -> Any:
        runs.request_cancel(self.run_id, "U7")
        return super().complete(messages, **kwargs)


def test_a_cancel_ends_the_run_at_the_next_step_boundary(harness):
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(CancellingLlm(run_id)), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "cancelled"
    assert harness.delivered == [] and StandinSearch.calls == [], "no researcher ran after the stop"
    [(key, text)] = harness.notices
    assert key == "cancelled" and "stopped by <@U7>" in text
    assert harness.board.closed == ["Stopped by <@U7>."]
    run = stored(run_id)
    assert run.status == "cancelled" and run.active_thread is None


class ExpensiveAnswers(OfflineClient):
    """The offline LLM whose researchers' answers cost 100,000 tokens each."""

    def complete_with_tools(self, turns: Any, **kwargs: Any) -> ToolCompletion:
        completion = super().complete_with_tools(turns, **kwargs)
        if completion.tool_calls:
            return completion
        return replace(completion, usage=Usage(completion.usage.prompt_tokens, 100_000))


def test_the_token_cap_ends_the_run_with_a_partial_report_that_says_so(harness):
    run_id = new_run(token_cap=150_000)
    result, outcome = run_workflow(harness.deps(ExpensiveAnswers(), RESEARCH_RESEARCHER_MAX_TOKENS=200_000), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "capped"
    [delivery] = harness.delivered
    document: ReportDocument = delivery["document"]
    assert document.note.startswith("Partial report: the run reached its token cap (150,000 tokens")
    assert "before the synthesis" in document.note and document.sections and document.sources
    assert delivery["summary"].count("Partial report") == 1
    run = stored(run_id)
    assert run.status == "capped" and run.tokens_used >= 150_000 and run.report_file_id == "F1"
    assert "synthesis" not in harness.board.updates("in_progress"), "no synthesis past the cap"


def test_a_failed_quality_check_is_revised_once_then_delivered(harness):
    standin, _url = start_openai()
    try:
        _scripted_revision(harness, standin)
    finally:
        standin.stop()


def _scripted_revision(harness: Harness, standin: OpenAIStandin) -> None:
    standin.script_replies(
        json.dumps({"researchers": [{"id": "overview", "title": "Overview", "focus": "what Acme makes"}]}),
        {"tool_calls": [{"name": "web_search", "arguments": {"query": "Acme Corp products"}}]},
        "Acme Corp makes anvils [1].",
        "Acme Corp is an anvil maker [1].\n\n## Overview\nAcme makes anvils [1] and rockets [7].",
        json.dumps({"pass": False, "issues": ["the rockets claim is in no finding"]}),
        "Acme Corp is an anvil maker [1].\n\n## Overview\nAcme makes anvils [1].",
        json.dumps({"pass": True, "issues": []}),
    )
    llm = OpenAICompatibleClient(base_url=standin.base_url, model="gpt-4o-mini", timeouts=Timeouts(2.0, 5.0))
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(llm, RESEARCH_MAX_CONCURRENCY=1), run_id)
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert outcome == {"run_id": run_id, "status": "succeeded", "report_file_id": "F1", "revisions": 1}
    requests = [request.json for request in standin.chat_requests()]
    assert len(requests) == 7
    revise = requests[5]["messages"][-1]["content"]
    assert "the rockets claim is in no finding" in revise and "[7] point to no source" in revise
    [delivery] = harness.delivered
    document: ReportDocument = delivery["document"]
    assert [section.heading for section in document.sections] == ["Summary", "Overview"]
    assert document.sections[1].body == "Acme makes anvils [1]." and not document.note
    assert document.sources[0].url == SHARED.url
    run = stored(run_id)
    assert run.llm_calls == 7 and run.status == "succeeded"
    counted = usage_for(agent_subject("profile"), period_of(None))
    assert counted is not None and counted.prompt_tokens + counted.completion_tokens == run.tokens_used
    assert {step.name for step in run.steps} >= {"plan", "overview", "synthesis", "review", "revision-1", "report"}


def test_a_report_run_delivers_the_stored_document(harness):
    document = ReportDocument(title="MEDDIC: Acme", sections=(ReportSection("Metrics", "Saves 20% [1]"),),
                              sources=(SHARED,))
    run_id = runs.create_run(kind="report", user_id="U1", document=document, **THREAD).run_id
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    [delivery] = harness.delivered
    assert delivery["document"] == document and delivery["filename"] == "meddic-acme.pdf"
    assert stored(run_id).status == "succeeded"


def test_a_failure_ends_the_run_failed_with_a_message_in_the_thread(harness):
    harness.deliver_error = RuntimeError("upload refused")
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "failed"
    assert "upload refused" in outcome["error"]
    [(key, text)] = harness.notices
    assert key == "failed" and "couldn't finish the research on Acme Corp" in text and run_id in text
    run = stored(run_id)
    assert run.status == "failed" and "upload refused" in (run.error or "") and run.active_thread is None


def test_researchers_use_only_the_enabled_tools_and_search_knowledge_for_the_readers(harness):
    readers = Audience((Viewer(email="ann@acme.example", groups=("sales",)), Viewer(email="bob@acme.example")),
                       "members")
    run_id = new_run(tools=["web_search", "knowledge_search"], audience=readers)
    assert runs.stored_audience(stored(run_id)) == readers
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    names = {call.split(":")[0] for call in StandinSearch.calls}
    assert names == {"web_search", "knowledge_search"}, "no read_url or sec_filings: not enabled here"
    assert harness.searched_for and all(audience == readers for audience in harness.searched_for)
    document: ReportDocument = harness.delivered[0]["document"]
    assert "https://drive.example/doc-1" in [source.url for source in document.sources]


def test_without_an_audience_the_knowledge_base_is_not_searched(harness):
    run_id = new_run(tools=["web_search", "knowledge_search"])
    result, _outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED
    assert {call.split(":")[0] for call in StandinSearch.calls} == {"web_search"} and harness.searched_for == []


class FlakyPeople(OfflineClient):
    """The offline LLM, unavailable once for the people researcher; counts the plan calls."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        self.plans = 0

    def complete(self, messages: Any, **kwargs: Any) -> Any:
        if kwargs.get("system") == workflow.PLAN_SYSTEM:
            self.plans += 1
        return super().complete(messages, **kwargs)

    def complete_with_tools(self, turns: Any, **kwargs: Any) -> ToolCompletion:
        if "Your part: People" in (kwargs.get("system") or "") and not self.failed:
            self.failed = True
            raise LlmUnavailableError("the provider is down", provider="offline")
        return super().complete_with_tools(turns, **kwargs)


def test_a_failed_researcher_is_retried_and_the_completed_steps_are_replayed_not_run_again(harness):
    llm = FlakyPeople()
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(llm), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    assert llm.failed and llm.plans == 1, "the retry replayed the plan from its checkpoint"
    searches = [call for call in StandinSearch.calls if call.startswith("web_search:")]
    assert len(searches) == 6 == len(set(searches)), "each researcher searched once: none ran twice"
    assert ("update", ("people", "error")) in harness.board.events
    assert "people" in harness.board.updates("complete")
    assert [value for kind, value in harness.board.events if kind == "plan"].count(
        ["plan", "overview", "people", "financials", "news", "competitors", "technology", "synthesis", "review",
         "report"]) == 1


class DownForTools(OfflineClient):
    """The offline LLM, unavailable for every researcher (the plan still works)."""

    def complete_with_tools(self, turns: Any, **kwargs: Any) -> ToolCompletion:
        raise LlmUnavailableError("the provider is down", provider="offline")


def test_when_every_researcher_fails_the_run_fails_and_says_so(harness):
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(DownForTools()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome == {
        "run_id": run_id, "status": "failed", "error": "every researcher failed"}
    assert harness.delivered == []
    [(key, text)] = harness.notices
    assert key == "failed" and run_id in text
    run = stored(run_id)
    assert run.status == "failed" and {step.name: step.status for step in run.steps}["people"] == "error"
    assert harness.board.closed == ["Failed."]


# -- budgets (insightmesh.budgets.check, asked before every step that calls the LLM) -----------------


@pytest.fixture
def priced(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Budgets read on every check (no cache) and every output token priced $0.001, input free:
    a completion's cost is its reply's length (the stand-in counts len // 4 tokens)."""
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", "0")
    monkeypatch.setenv("LLM_DEFAULT_OUTPUT_USD_PER_MILLION", "1000")
    monkeypatch.delenv("LLM_FALLBACK_MODEL", raising=False)
    _forget_budgets()
    yield
    _forget_budgets()


def _forget_budgets() -> None:
    budget_settings.cache_clear()
    pricing_settings.cache_clear()
    forget_prices()
    budgets.reset_cache()


def _scripted_llm(standin: OpenAIStandin, model: str = "gpt-4o-mini") -> OpenAICompatibleClient:
    return OpenAICompatibleClient(base_url=standin.base_url, model=model, timeouts=Timeouts(2.0, 5.0))


@pytest.fixture
def standin() -> Iterator[OpenAIStandin]:
    server, _url = start_openai()
    yield server
    server.stop()


ONE_RESEARCHER = json.dumps({"researchers": [{"id": "overview", "title": "Overview", "focus": "what Acme makes"}]})
TWO_RESEARCHERS = json.dumps({"researchers": [{"id": "overview", "title": "Overview", "focus": "what Acme makes"},
                                              {"id": "people", "title": "People", "focus": "who runs Acme"}]})


def test_a_budget_used_up_by_the_plan_stops_the_run_naming_it_and_the_llm_gets_no_further_call(
        harness, priced, standin):
    set_budget("user", "U1", 0.5)  # $0.50 a month; the plan's ~560-token answer costs ~$0.56
    standin.script_replies(ONE_RESEARCHER + " " * 2000)
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(_scripted_llm(standin)), run_id)
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert outcome == {"run_id": run_id, "status": "capped", "report_file_id": None}
    assert len(standin.chat_requests()) == 1, "no researcher, synthesis or review call past the limit"
    used_up = budgets.check(workspace="T1", user_id="U1", agent="profile", alert=False).used_up
    assert used_up is not None and used_up.startswith("the user budget for U1 ($0.50 per month) is used up")
    assert "It resets on" in used_up
    [(key, text)] = harness.notices  # nothing was researched: no PDF, the thread is told why
    assert key == "capped" and used_up in text and "stopped before the research" in text
    assert harness.delivered == [] and StandinSearch.calls == []
    assert harness.board.closed == [f"Stopped: {used_up} Nothing to report yet."], "the board says why"
    run = stored(run_id)
    assert run.status == "capped" and used_up in (run.summary or "") and run.active_thread is None


def test_a_budget_used_up_by_a_researcher_ends_with_a_partial_report_that_names_it(harness, priced, standin):
    set_budget("user", "U1", 0.5)
    standin.script_replies(
        TWO_RESEARCHERS,  # ~$0.05
        {"tool_calls": [{"name": "web_search", "arguments": {"query": "Acme Corp products"}}]},
        "Acme Corp makes anvils [1]. " * 80,  # ~560 tokens: the budget is used up after this researcher
    )
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(_scripted_llm(standin), RESEARCH_MAX_CONCURRENCY=1), run_id)
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert outcome["status"] == "capped" and outcome["report_file_id"] == "F1"
    assert len(standin.chat_requests()) == 3, "the people researcher checked the budget and did not start"
    assert ("update", ("people", "error")) in harness.board.events
    [delivery] = harness.delivered
    document: ReportDocument = delivery["document"]
    assert document.note.startswith("Partial report: the user budget for U1 ($0.50 per month) is used up: $0.")
    assert document.note.endswith("UTC. The run stopped before the synthesis.")
    assert [section.heading for section in document.sections] == ["Overview"]
    assert harness.board.closed[-1].endswith("The partial report is in this thread.")
    run = stored(run_id)
    assert run.status == "capped" and run.summary == document.note and run.report_file_id == "F1"
    assert {step.name: step.detail for step in run.steps}["people"] == "not started: a budget is used up"


def test_a_run_under_its_budgets_is_unchanged(harness, priced):
    set_budget("user", "U1", 100)
    set_budget("workspace", "T1", 1000)
    set_budget("agent", "profile", 1000)
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    [delivery] = harness.delivered
    assert not delivery["document"].note and harness.board.closed[-1].startswith("Done")
    assert stored(run_id).status == "succeeded"


def test_past_warn_at_the_remaining_steps_use_the_budgets_fallback_model(harness, priced, standin):
    set_budget("user", "U1", 100, warn_at=0.0, fallback_model="gpt-4o-cheap")  # warned from the start
    standin.script_replies(ONE_RESEARCHER, "Acme Corp makes anvils.", "Acme Corp makes anvils.\n\n## Overview\nAnvils.",
                           json.dumps({"pass": True, "issues": []}))
    deps = replace(harness.deps(_scripted_llm(standin), RESEARCH_MAX_CONCURRENCY=1),
                   llm_for=lambda model: _scripted_llm(standin, model))
    result, outcome = run_workflow(deps, new_run())
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert outcome["status"] == "succeeded"
    models = [request.json["model"] for request in standin.chat_requests()]
    assert models == ["gpt-4o-cheap"] * 4, "plan, researcher, synthesis and review on the fallback model"


def test_unreadable_budgets_fail_open(harness, priced, monkeypatch):
    set_budget("user", "U1", 0.01)
    spend("user", "U1", 1.0)  # used up, if the check could read it
    monkeypatch.setenv("USAGE_TABLE", "no-such-table")
    run_id = new_run()
    result, outcome = run_workflow(harness.deps(OfflineClient()), run_id)
    assert result.status is InvocationStatus.SUCCEEDED and outcome["status"] == "succeeded"
    assert harness.delivered and stored(run_id).status == "succeeded"
