"""The research function's durable workflow: ``run_research(event, context)``.

The event is ``{"run_id": ...}`` (``research.launcher``); everything else is read from the run's
item (``research.runs``). A run is many Lambda invocations: each ``context.step`` is checkpointed,
and a replay (after a wait, a retry or a crash) returns the recorded result instead of running the
step again. So everything that reads a clock, the table, the LLM or the web happens **inside** a
step, and the orchestration between steps only branches on step results (deterministic replay).

Kind ``profile``:

1. **plan** — the LLM chooses the researchers (at most :data:`MAX_RESEARCHERS`) and what each looks
   for, as JSON; a plan that is not valid JSON (the offline LLM's, for one) falls back to the
   default six: overview, people, financials and filings, news, competitors, technology. The board
   (``research.progress.board_for``) shows it.
2. **researchers** — ``context.map`` over the plan: each researcher is one step running the tool
   loop (``insightmesh.tools.loop.run_tool_loop``) with web_search and read_url (sec_filings for
   financials), with its own token budget. A researcher that fails is shown failed on the board;
   the others go on (``CompletionConfig.all_completed``).
3. **synthesis** — one report with numbered citations over every researcher's sources,
   deduplicated by URL and renumbered once for the whole report.
4. **review** — the LLM checks the draft against a rubric (covers the subject, every claim cited,
   no invented facts, sections present) and answers JSON ``{"pass": bool, "issues": [...]}``;
   citations that point past the source list fail it too. Up to ``RESEARCH_MAX_REVISIONS`` (2)
   revisions.
5. **report** — a ``ReportDocument`` delivered as a PDF in the thread
   (``research.delivery.deliver_report``) with the summary as its message.

At every step boundary a **check** step reads the run: ``cancel_requested`` ends the run
``cancelled`` (the board says so, and a short message in the thread); ``tokens_used`` at or past
``token_cap`` (``RESEARCH_MAX_TOKENS``) ends it ``capped`` with a partial report that says so.
The check also asks the budgets (:func:`insightmesh.budgets.check.check`, cached a few seconds,
on the run's user, the ``profile`` agent, the user's groups and the workspace) before every step
that calls the LLM: the plan, each researcher (in its own step, as it starts), the synthesis,
each review and revision. A used-up budget ends the run ``capped`` too, the partial report's note
and the board naming the budget in the worker's refusal words (``BudgetDecision.used_up``); past
a budget's ``warn_at`` the next step uses its fallback model (``WorkflowDeps.llm_for``). Budgets
that cannot be read do not stop the run (fail open, a warning logged). The decision is a step's
result, so a replay does not decide again.
Every LLM call adds its tokens to the run (an atomic ``ADD``), and every step is recorded on it.

Kind ``report``: render and deliver the agent's stored ``ReportDocument``.

A failure anywhere (a step that still fails after its retries) ends the run ``failed`` with a clear
message in the thread: never silent.

With tracing on, each invocation is a ``research run`` span and each step it runs a ``research
{step}`` span under it (plan, researcher, synthesis, review, revise, report; with the run id): a
step replayed from its checkpoint does not run its body, so it has no span in that invocation.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Final, NotRequired, ParamSpec, Protocol, TypedDict, TypeVar

from aws_durable_execution_sdk_python.concurrency.models import BatchResult
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, StepConfig
from aws_durable_execution_sdk_python.context import DurableContext
from aws_durable_execution_sdk_python.exceptions import DurableOperationError
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.types import StepContext

from insightmesh import tracing, tracing_messaging
from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.knowledge.base import Audience, Passage
from insightmesh.llm.base import ChatMessage, LlmClient, Usage
from insightmesh.observability import get_logger
from insightmesh.research import runs
from insightmesh.research.base import PlanTask, ProgressBoard, RunStatus
from insightmesh.research.settings import ResearchSettings, get_research_settings
from insightmesh.tools.base import Source, Tool, ToolContext

logger = get_logger("research")

MAX_RESEARCHERS: Final = 8
PLAN_TOKENS: Final = 800
SYNTHESIS_TOKENS: Final = 3000
REVIEW_TOKENS: Final = 800
MIN_RESEARCHER_TOKENS: Final = 500
MAX_FINDING_CHARS: Final = 6000  # what one researcher hands to the synthesis
MAX_SUMMARY_CHARS: Final = 1500
WEB_TOOLS: Final[tuple[str, ...]] = ("web_search", "read_url")
RESERVED_IDS: Final = frozenset({"plan", "synthesis", "review", "report"})
NOTICE_EVENT: Final = "insightmesh_research_notice"
AGENT: Final = "profile"  # the agent a run's usage and budgets count under

# LLM and Slack steps are retried once after 5 s (then the run fails, visibly); bookkeeping steps
# (reading the run, recording) three times.
_LLM_STEP: Final = StepConfig(retry_strategy=create_retry_strategy(
    RetryStrategyConfig(max_attempts=2, initial_delay=Duration.from_seconds(5))))
_IO_STEP: Final = StepConfig(retry_strategy=create_retry_strategy(
    RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(2))))

DEFAULT_PLAN: Final[tuple[tuple[str, str, str], ...]] = (
    ("overview", "Overview", "what {subject} is and does: business, products, history, size, headquarters"),
    ("people", "People", "the leadership and key people of {subject}: names, roles, backgrounds"),
    ("financials", "Financials and filings", "the finances of {subject}: revenue, funding, filings, results"),
    ("news", "News", "recent news about {subject}: announcements, deals, events of the last year"),
    ("competitors", "Competitors", "the competitors and market position of {subject}"),
    ("technology", "Technology", "the technology, products and platforms {subject} builds or uses"),
)


# -- what the workflow depends on (injected: tests record) -----------------------------------------


class ReportDeliverer(Protocol):
    def __call__(self, *, channel_id: str, thread_ts: str, document: ReportDocument, filename: str,
                 summary: str) -> str: ...


class ToolLoop(Protocol):
    def __call__(self, llm: Any, turns: Sequence[Any], *, tools: Sequence[Tool], context: ToolContext,
                 system: str | None, max_steps: int, max_tokens: int) -> Any: ...


def _default_llm() -> LlmClient:
    from insightmesh.llm import get_llm_client

    return get_llm_client()


def _default_llm_for(model: str) -> LlmClient:
    from insightmesh.llm import get_llm_client

    return get_llm_client(model=model)


def _default_board(run: runs.ResearchRun) -> ProgressBoard:
    from insightmesh.research.progress import board_for  # Slack: imported where used

    return board_for(run)


def _default_deliver(*, channel_id: str, thread_ts: str, document: ReportDocument, filename: str,
                     summary: str) -> str:
    # fpdf2 lives in the research layer only: imported where used, by name (engineer P's module).
    delivery = importlib.import_module("insightmesh.research.delivery")
    return str(delivery.deliver_report(channel_id=channel_id, thread_ts=thread_ts, document=document,
                                       filename=filename, summary=summary))


def _default_tools(names: Sequence[str]) -> Sequence[Tool]:
    from insightmesh.tools.registry import tools_named

    return tools_named(names)


def _default_loop(llm: Any, turns: Sequence[Any], *, tools: Sequence[Tool], context: ToolContext,
                  system: str | None, max_steps: int, max_tokens: int) -> Any:
    from insightmesh.tools.loop import run_tool_loop

    return run_tool_loop(llm, turns, tools=tools, context=context, system=system, max_steps=max_steps,
                         max_tokens=max_tokens)


def _default_retrieve(question: str, audience: Audience) -> Sequence[Passage]:
    from insightmesh.knowledge.retrieval import retrieve  # the store and embedder: loaded where used

    return retrieve(question, audience)


def _default_notify(run: runs.ResearchRun, key: str, text: str) -> None:
    """Post ``text`` in the run's thread once per ``key``: the message carries metadata naming the
    run and the key, and a step that runs again (after a crash) finds it and does not post twice."""
    from insightmesh.slack.client import call_slack

    metadata = {"event_type": NOTICE_EVENT, "event_payload": {"run_id": run.run_id, "key": key}}
    replies = call_slack(lambda client: client.conversations_replies(
        channel=run.channel_id, ts=run.thread_ts, include_all_metadata=True, limit=200))
    for message in replies.get("messages") or []:
        found = message.get("metadata") or {}
        if found.get("event_type") == NOTICE_EVENT and found.get("event_payload") == metadata["event_payload"]:
            return
    call_slack(lambda client: client.chat_postMessage(channel=run.channel_id, thread_ts=run.thread_ts, text=text,
                                                      metadata=metadata))


@dataclass(frozen=True)
class WorkflowDeps:
    """The workflow's collaborators; :func:`run_research` uses the real ones unless given these."""

    llm: Callable[[], LlmClient] = _default_llm
    llm_for: Callable[[str], LlmClient] = _default_llm_for  # a budget's fallback model, by name
    board_for: Callable[[runs.ResearchRun], ProgressBoard] = _default_board
    deliver_report: ReportDeliverer = _default_deliver
    notify: Callable[[runs.ResearchRun, str, str], None] = _default_notify
    tools_for: Callable[[Sequence[str]], Sequence[Tool]] = _default_tools
    retrieve: Callable[[str, Audience], Sequence[Passage]] = _default_retrieve
    tool_loop: ToolLoop = _default_loop
    settings: Callable[[], ResearchSettings] = get_research_settings


class RunFailedError(RuntimeError):
    """A step found the run unusable (missing, not readable): the run fails with this message."""


# -- checkpointed values (JSON) ------------------------------------------------------------------


class SourceDict(TypedDict):
    title: str
    url: str
    kind: str
    snippet: str


class Researcher(TypedDict):
    id: str
    title: str
    focus: str
    tools: list[str]


class Finding(TypedDict):
    id: str
    title: str
    text: str
    sources: list[SourceDict]
    stopped: str
    tokens: int


class Check(TypedDict):
    cancel: bool
    tokens: int
    cap: int
    # A check recorded before budgets were checked has neither (a replay reads them with .get).
    budget: NotRequired[str]  # a used-up budget in the refusal's words (BudgetDecision.used_up); "" if none
    model: NotRequired[str]  # the budgets' fallback model past warn_at; "": the configured model


def _source_dict(source: Source) -> SourceDict:
    return {"title": source.title[:300], "url": source.url[:2000], "kind": source.kind, "snippet": source.snippet[:500]}


def _source(data: Mapping[str, Any]) -> Source:
    kind = data.get("kind", "web")
    return Source(title=str(data.get("title", "")), url=str(data.get("url", "")),
                  kind=kind if kind in ("web", "knowledge", "filing") else "web", snippet=str(data.get("snippet", "")))


# -- pure helpers (tested directly) --------------------------------------------------------------


_SLUG = re.compile(r"[^a-z0-9]+")
_CITATION = re.compile(r"\[(\d{1,3})\]")


def slug(text: str, *, limit: int = 32) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-")


def default_plan(subject: str) -> list[Researcher]:
    return [{"id": key, "title": title, "focus": focus.format(subject=subject), "tools": _tools_for_id(key)}
            for key, title, focus in DEFAULT_PLAN]


def _tools_for_id(researcher_id: str) -> list[str]:
    filings = any(word in researcher_id for word in ("financ", "filing", "sec"))
    return [*WEB_TOOLS, "sec_filings"] if filings else list(WEB_TOOLS)


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (a model may wrap it in prose or a code fence), else None."""
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_plan(text: str, subject: str) -> list[Researcher]:
    """The model's plan (``{"researchers": [{"id", "title", "focus"}...]}``), sanitised; the default
    six when it is not a usable plan."""
    data = _json_object(text)
    entries = data.get("researchers") if data else None
    if not isinstance(entries, list):
        return default_plan(subject)
    plan: list[Researcher] = []
    seen: set[str] = set()
    for entry in entries[:MAX_RESEARCHERS]:
        if not isinstance(entry, dict):
            continue
        title = str(entry.get("title") or "").strip()[:80]
        focus = str(entry.get("focus") or "").strip()[:500]
        key = slug(str(entry.get("id") or title))
        if not key or not title or not focus or key in seen or key in RESERVED_IDS:
            continue
        seen.add(key)
        plan.append({"id": key, "title": title, "focus": focus, "tools": _tools_for_id(key)})
    return plan or default_plan(subject)


def merge_sources(findings: Sequence[Finding]) -> tuple[list[SourceDict], list[str]]:
    """Every finding's sources once (by URL, in plan order) and each finding's text with its own
    ``[n]`` renumbered to the merged list (a marker past its sources is dropped)."""
    merged: list[SourceDict] = []
    number: dict[str, int] = {}
    texts: list[str] = []
    for finding in findings:
        local: dict[int, int] = {}
        for index, source in enumerate(finding["sources"], start=1):
            url = source["url"]
            if url not in number:
                merged.append(source)
                number[url] = len(merged)
            local[index] = number[url]

        def renumber(match: re.Match[str], local: dict[int, int] = local) -> str:
            found = local.get(int(match.group(1)))
            return f"[{found}]" if found else ""

        texts.append(_CITATION.sub(renumber, finding["text"]))
    return merged, texts


def source_lines(sources: Sequence[SourceDict]) -> str:
    return "\n".join(f"[{n}] {source['title']} — {source['url']}" for n, source in enumerate(sources, start=1))


_HEADING = re.compile(r"^#{1,3}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def parse_sections(markdown: str) -> list[ReportSection]:
    """``## Heading`` sections of a Markdown draft (text before the first heading: "Summary")."""
    sections: list[ReportSection] = []
    matches = list(_HEADING.finditer(markdown))
    lead = markdown[: matches[0].start()].strip() if matches else markdown.strip()
    if lead:
        sections.append(ReportSection(heading="Summary", body=lead))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(markdown)
        body = markdown[match.end():end].strip()
        if body:
            sections.append(ReportSection(heading=match.group(1).strip()[:120], body=body))
    return sections


def citation_issues(markdown: str, source_count: int) -> list[str]:
    """What a reader could check without the model: citations that point to no source."""
    issues: list[str] = []
    bad = sorted({int(n) for n in _CITATION.findall(markdown) if not 1 <= int(n) <= source_count})
    if bad:
        issues.append(f"citations {', '.join(f'[{n}]' for n in bad)} point to no source (there are {source_count})")
    if source_count and not _CITATION.search(markdown):
        issues.append("no claim is cited")
    return issues


def parse_review(text: str) -> tuple[bool, list[str]]:
    """The reviewer's ``{"pass": bool, "issues": [...]}``; an answer that is not that JSON passes
    (the reviewer could not say what to fix, so a revision would be blind) with a note."""
    data = _json_object(text)
    if data is None or not isinstance(data.get("pass"), bool):
        return True, []
    issues = data.get("issues")
    listed = [str(issue)[:300] for issue in issues[:10]] if isinstance(issues, list) else []
    return bool(data["pass"]), listed


def summary_of(sections: Sequence[ReportSection]) -> str:
    body = next((section.body for section in sections if section.heading.lower() == "summary"),
                sections[0].body if sections else "")
    return body if len(body) <= MAX_SUMMARY_CHARS else body[: MAX_SUMMARY_CHARS - 1] + "…"


# -- prompts -------------------------------------------------------------------------------------


PLAN_SYSTEM: Final = (
    "You plan research for a company or person profile. Answer with JSON only: "
    '{"researchers": [{"id": "overview", "title": "Overview", "focus": "what to find"}]}. '
    f"At most {MAX_RESEARCHERS} researchers; usual ones are overview, people, financials (filings), news, "
    "competitors and technology. Each focus says precisely what that researcher looks for."
)
RESEARCHER_SYSTEM: Final = (
    "You are one researcher of a team writing a profile of {subject}. Your part: {title} — {focus}. "
    "Use the tools to find facts; read the most useful pages. Then write your findings as short Markdown "
    "paragraphs or bullets. Cite every fact with the [n] number of the source it came from. Never invent facts: "
    "say what you could not find."
)
SYNTHESIS_SYSTEM: Final = (
    "You write a research profile from researchers' findings. Write Markdown: a short summary first, then one "
    "'## ' section per topic. Cite every claim with [n] from the numbered source list (use only those numbers). "
    "Use only facts from the findings; say what is unknown."
)
REVIEW_SYSTEM: Final = (
    "You review a research profile against this rubric: (1) it covers the subject asked about; (2) every claim "
    "is cited with [n] from the source list; (3) no fact is invented (each is in the findings); (4) a summary and "
    'the topic sections are present. Answer with JSON only: {"pass": true|false, "issues": ["..."]}.'
)
REVISE_SYSTEM: Final = (
    "You revise a research profile to fix the reviewer's issues. Keep its Markdown form (a summary, then '## ' "
    "sections), cite every claim with [n] from the source list, and use only facts from the findings."
)


# -- the workflow --------------------------------------------------------------------------------


def run_research(event: Mapping[str, Any], context: DurableContext, *,
                 deps: WorkflowDeps | None = None) -> dict[str, Any]:
    """Run the research run named by ``event["run_id"]`` to its end; its outcome."""
    deps = deps or WorkflowDeps()
    run_id = str(event.get("run_id") or "")
    # Each invocation (the first, and each resumption replaying the checkpoints) is one span in the
    # trace of whoever started the run: the launcher put its trace context in the payload.
    with tracing.span("research run", kind="consumer", parent=tracing_messaging.carrier_from_event(event) or None,
                      attributes={"insightmesh.research.run_id": run_id}):
        try:
            kind = context.step(lambda _: _start(run_id), name="start", config=_IO_STEP)
            if kind == "report":
                return _deliver_stored(context, deps, run_id)
            return _profile(context, deps, run_id)
        except DurableOperationError as error:
            reason = error.message or error.error_type
            logger.warning("research run %s failed: %s", run_id, reason)
            context.step(lambda _: _fail(deps, run_id, reason), name="fail", config=_IO_STEP)
            return {"run_id": run_id, "status": "failed", "error": reason}


def _load(run_id: str) -> runs.ResearchRun:
    run = runs.get_run(run_id)
    if run is None:
        raise RunFailedError(f"research run {run_id!r} does not exist")
    return run


def _start(run_id: str) -> str:
    run = _load(run_id)
    runs.mark_running(run_id)
    return str(run.kind)


def _record(deps: WorkflowDeps, run: runs.ResearchRun, task_id: str, status: Any, detail: str = "") -> None:
    runs.record_step(run.run_id, task_id, status, detail)
    deps.board_for(run).update(task_id, status, detail)


def _usage(run_id: str, usage: Usage, calls: int, *, run: runs.ResearchRun, model: str | None = None) -> None:
    """Count the tokens on the run (its cap) and in the usage counters (``/api/usage``: the
    ``profile`` agent's, the asker's, their groups', the channel's, the workspace's and the model's
    periods, with the cost). ``model``: the completion's; the configured model for a tool loop."""
    runs.add_usage(run_id, tokens=usage.total, llm_calls=calls)
    if run.user_id:
        from insightmesh.directory.permissions import groups_for_usage
        from insightmesh.llm.factory import load_llm_settings
        from insightmesh.llm.usage import record_usage  # never raises for a storage failure

        groups = groups_for_usage(str(run.user_id))
        record_usage(agent=AGENT, user_id=str(run.user_id), usage=usage,
                     model=model or load_llm_settings().model, channel=run.channel_id or None, groups=sorted(groups),
                     workspace=run.team_id or None, request_id=run_id)


def _check(run_id: str) -> Check:
    return _check_of(_load(run_id))


def _check_of(run: runs.ResearchRun) -> Check:
    """Whether the run goes on (cancel, token cap, budgets) and with which model; taken inside a
    step only, so a replay reads the recorded decision rather than deciding again."""
    from insightmesh.budgets.check import check as check_budgets  # fails open: a warning, no decision

    budget = check_budgets(workspace=str(run.team_id or ""), user_id=str(run.user_id or ""), agent=AGENT,
                           alert=False)
    return {"cancel": bool(run.cancel_requested), "tokens": int(run.tokens_used or 0), "cap": int(run.token_cap or 0),
            "budget": budget.used_up or "", "model": budget.fallback_model or ""}


def _llm(deps: WorkflowDeps, model: str) -> LlmClient:
    """The step's LLM: the budgets' fallback ``model`` (past a budget's warn_at), else the configured one."""
    return deps.llm_for(model) if model else deps.llm()


def _limits(deps: WorkflowDeps) -> dict[str, int]:
    settings = deps.settings()
    return {"max_concurrency": settings.RESEARCH_MAX_CONCURRENCY, "max_revisions": settings.RESEARCH_MAX_REVISIONS}


def _stop_reason(check: Check) -> RunStatus | None:
    if check["cancel"]:
        return "cancelled"
    if check.get("budget") or (check["cap"] and check["tokens"] >= check["cap"]):
        return "capped"  # the note says which: the token cap or the budget (_capped)
    return None


def _profile(context: DurableContext, deps: WorkflowDeps, run_id: str) -> dict[str, Any]:
    findings: list[Finding] = []
    check = context.step(lambda _: _check(run_id), name="check-start", config=_IO_STEP)
    if (stop := _stop_reason(check)) is not None:
        return _end_early(context, deps, run_id, stop, findings, None, "the plan", check)
    model = check.get("model", "")
    plan = context.step(lambda _: _plan(deps, run_id, model), name="plan", config=_LLM_STEP)
    stage = "the research"
    check = context.step(lambda _: _check(run_id), name="check-plan", config=_IO_STEP)
    if (stop := _stop_reason(check)) is not None:
        return _end_early(context, deps, run_id, stop, findings, None, stage, check)

    parent = tracing.inject() if tracing.enabled() else None  # the researchers run in the SDK's threads

    def research(child: DurableContext, researcher: Researcher, index: int,
                 _all: Sequence[Researcher]) -> Finding | None:
        return child.step(lambda _: _in_step_span("researcher", run_id, parent,
                                                  lambda: _research(deps, run_id, researcher, len(plan))),
                          name=f"research-{researcher['id']}", config=_LLM_STEP)

    # The settings a run goes by, checkpointed once: a replay uses the same even if the env changed.
    limits = context.step(lambda _: _limits(deps), name="limits", config=_IO_STEP)
    batch: BatchResult[Finding | None] = context.map(
        plan, research, name="researchers",
        config=MapConfig(max_concurrency=limits["max_concurrency"],
                         completion_config=CompletionConfig.all_completed()))  # type: ignore[no-untyped-call]
    findings = [item.result for item in batch.all if item.result is not None]
    context.step(lambda _: _researched(deps, run_id, plan, findings), name="researched", config=_IO_STEP)
    stage = "the synthesis"
    check = context.step(lambda _: _check(run_id), name="check-research", config=_IO_STEP)
    if (stop := _stop_reason(check)) is not None:
        return _end_early(context, deps, run_id, stop, findings, None, stage, check)
    if not findings:
        reason = "every researcher failed"
        context.step(lambda _: _fail(deps, run_id, reason), name="fail", config=_IO_STEP)
        return {"run_id": run_id, "status": "failed", "error": reason}

    model = check.get("model", "")
    draft = context.step(lambda _: _synthesise(deps, run_id, findings, model), name="synthesis", config=_LLM_STEP)
    max_revisions = limits["max_revisions"]
    revision = 0
    while True:
        stage = "the review"
        check = context.step(lambda _: _check(run_id), name=f"check-review-{revision}", config=_IO_STEP)
        if (stop := _stop_reason(check)) is not None:
            return _end_early(context, deps, run_id, stop, findings, draft, stage, check)
        review = context.step(functools.partial(_review_step, deps, run_id, findings, draft, revision, max_revisions,
                                                check.get("model", "")),
                              name=f"review-{revision}", config=_LLM_STEP)
        if review["pass"] or revision >= max_revisions:
            break
        check = context.step(lambda _: _check(run_id), name=f"check-revise-{revision + 1}", config=_IO_STEP)
        if (stop := _stop_reason(check)) is not None:
            return _end_early(context, deps, run_id, stop, findings, draft, "a revision", check)
        draft = context.step(functools.partial(_revise_step, deps, run_id, findings, draft, review["issues"],
                                               revision + 1, check.get("model", "")),
                             name=f"revise-{revision + 1}", config=_LLM_STEP)
        revision += 1
    return context.step(lambda _: _report(deps, run_id, findings, draft, review, revision),
                                             name="report", config=_LLM_STEP)


# -- the steps -----------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")
StepBody = Callable[Concatenate[WorkflowDeps, str, P], R]


def _step_span(step: str) -> Callable[[StepBody[P, R]], StepBody[P, R]]:
    """A span ``research {step}`` (with the run id) around a step's body, in the run's trace. It
    exists only where the workflow runs the step: a replayed step returns its checkpointed result
    and its body — with this span — does not run again, so a resumed run's trace shows only the
    steps that invocation ran. A step that raises (then retried by the SDK) ends its span ERROR."""

    def decorate(body: StepBody[P, R]) -> StepBody[P, R]:
        @functools.wraps(body)
        def traced(deps: WorkflowDeps, run_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return _in_step_span(step, run_id, None, lambda: body(deps, run_id, *args, **kwargs))

        return traced

    return decorate


def _in_step_span(step: str, run_id: str, parent: tracing.Carrier | None, body: Callable[[], R]) -> R:
    """``body()`` in the span of :func:`_step_span`; ``parent``: the run's trace context, for a step
    the SDK runs in another thread (a ``context.map`` branch: the researchers)."""
    if not tracing.enabled():
        return body()
    with tracing.span(f"research {step}", parent=parent or None,
                      attributes={"insightmesh.research.run_id": run_id, "insightmesh.research.step": step}):
        return body()



@_step_span("plan")
def _plan(deps: WorkflowDeps, run_id: str, model: str) -> list[Researcher]:
    run = _load(run_id)
    board = deps.board_for(run)
    board.show_plan([PlanTask("plan", "Plan the research", "in_progress")])
    runs.record_step(run_id, "plan", "in_progress")
    completion = _llm(deps, model).complete(
        [ChatMessage.user(f"Plan the research for: {run.question or run.subject}\nSubject: {run.subject}")],
        system=PLAN_SYSTEM, max_tokens=PLAN_TOKENS, temperature=0.0)
    _usage(run_id, completion.usage, 1, run=run, model=completion.model)
    plan = parse_plan(completion.text, run.subject or run.question)
    detail = f"{len(plan)} researchers"
    board.show_plan([PlanTask("plan", "Plan the research", "complete", detail),
                     *(PlanTask(r["id"], r["title"], "pending", r["focus"][:120]) for r in plan),
                     PlanTask("synthesis", "Write the report"), PlanTask("review", "Check the report"),
                     PlanTask("report", "Deliver the PDF")])
    runs.record_step(run_id, "plan", "complete", detail)
    for researcher in plan:
        runs.record_step(run_id, researcher["id"], "pending")
    return plan


def _research(deps: WorkflowDeps, run_id: str, researcher: Researcher, team_size: int) -> Finding | None:
    run = _load(run_id)
    check = _check_of(run)  # this researcher's own check, as it starts (checkpointed with its step)
    if _stop_reason(check) is not None:
        why = "a budget is used up" if check.get("budget") else "the run is stopping"
        _record(deps, run, researcher["id"], "error", f"not started: {why}")
        return None
    _record(deps, run, researcher["id"], "in_progress", researcher["focus"][:120])
    tracing.current_span().set_attribute("insightmesh.research.researcher", researcher["id"])
    settings = deps.settings()
    left = int(run.token_cap or settings.RESEARCH_MAX_TOKENS) - int(run.tokens_used or 0)
    budget = max(MIN_RESEARCHER_TOKENS, min(settings.RESEARCH_RESEARCHER_MAX_TOKENS, left // max(1, team_size)))
    tools, tool_context = _tools_of(deps, run, researcher)
    system = RESEARCHER_SYSTEM.format(subject=run.subject, title=researcher["title"], focus=researcher["focus"])
    try:
        result = deps.tool_loop(_llm(deps, check.get("model", "")),
                                [ChatMessage.user(f"{researcher['focus']}\n\nSubject: {run.subject}")],
                                tools=tools, context=tool_context, system=system,
                                max_steps=settings.RESEARCH_RESEARCHER_MAX_STEPS, max_tokens=budget)
    except Exception as error:  # shown on the board, then re-raised for the step's retry
        _record(deps, run, researcher["id"], "error", f"failed: {type(error).__name__}")
        raise
    _usage(run_id, result.usage, int(result.steps), run=run, model=check.get("model") or None)
    text = str(result.text)
    finding: Finding = {
        "id": researcher["id"], "title": researcher["title"],
        "text": text if len(text) <= MAX_FINDING_CHARS else text[: MAX_FINDING_CHARS - 1] + "…",
        "sources": [_source_dict(source) for source in result.sources],
        "stopped": str(result.stopped), "tokens": int(result.usage.total),
    }
    detail = f"{len(finding['sources'])} sources" + (" (its budget ran out)" if result.stopped == "token_cap" else "")
    _record(deps, run, researcher["id"], "complete", detail)
    return finding


def _tools_of(deps: WorkflowDeps, run: runs.ResearchRun, researcher: Researcher) -> tuple[list[Tool], ToolContext]:
    """The researcher's tools: its own (web; filings for financials), the knowledge base when the
    run knows who will read the report (searched for exactly them), all narrowed to the tools
    admins enabled where it is read."""
    names = list(researcher["tools"])
    audience = runs.stored_audience(run)
    if audience is not None:
        names.append("knowledge_search")
    enabled = frozenset(run.tools) if run.tools is not None else None
    if enabled is not None:
        names = [name for name in names if name in enabled]

    def retrieve(question: str) -> Sequence[Passage]:
        return deps.retrieve(question, audience) if audience is not None else ()

    context = ToolContext(user_id=run.user_id, retrieve=retrieve, enabled=enabled)
    return list(deps.tools_for(names)), context


def _researched(deps: WorkflowDeps, run_id: str, plan: Sequence[Researcher], findings: Sequence[Finding]) -> None:
    """Mark researchers that returned nothing (failed after their retries) failed on the board."""
    run = _load(run_id)
    done = {finding["id"] for finding in findings}
    for researcher in plan:
        if researcher["id"] not in done:
            step = next((s for s in run.steps or [] if s.name == researcher["id"]), None)
            if step is None or step.status != "error":
                _record(deps, run, researcher["id"], "error", "failed")


def _findings_prompt(findings: Sequence[Finding]) -> tuple[list[SourceDict], str]:
    sources, texts = merge_sources(findings)
    parts = [f"### {finding['title']}\n{text}" for finding, text in zip(findings, texts, strict=True)]
    return sources, "Sources:\n" + source_lines(sources) + "\n\nFindings:\n" + "\n\n".join(parts)


@_step_span("synthesis")
def _synthesise(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], model: str) -> str:
    run = _load(run_id)
    _record(deps, run, "synthesis", "in_progress")
    _sources, prompt = _findings_prompt(findings)
    completion = _llm(deps, model).complete(
        [ChatMessage.user(f"Write the profile of {run.subject} ({run.question}).\n\n{prompt}")],
        system=SYNTHESIS_SYSTEM, max_tokens=SYNTHESIS_TOKENS)
    _usage(run_id, completion.usage, 1, run=run, model=completion.model)
    _record(deps, run, "synthesis", "complete")
    return completion.text


@_step_span("review")
def _review(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str, revision: int,
            max_revisions: int, model: str) -> dict[str, Any]:
    run = _load(run_id)
    _record(deps, run, "review", "in_progress", f"revision {revision}" if revision else "")
    sources, prompt = _findings_prompt(findings)
    completion = _llm(deps, model).complete(
        [ChatMessage.user(f"Subject: {run.subject}\n\n{prompt}\n\nThe profile to review:\n{draft}")],
        system=REVIEW_SYSTEM, max_tokens=REVIEW_TOKENS, temperature=0.0)
    _usage(run_id, completion.usage, 1, run=run, model=completion.model)
    passed, issues = parse_review(completion.text)
    mechanical = citation_issues(draft, len(sources))
    passed = passed and not mechanical
    issues = [*issues, *mechanical]
    final = passed or revision >= max_revisions
    detail = "passed" if passed else (f"{len(issues)} issues" + ("" if final else ": revising"))
    _record(deps, run, "review", "complete" if final else "in_progress", detail)
    return {"pass": passed, "issues": issues}


def _review_step(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str, revision: int,
                 max_revisions: int, model: str, _step: StepContext) -> dict[str, Any]:
    return _review(deps, run_id, findings, draft, revision, max_revisions, model)


def _revise_step(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str, issues: Sequence[str],
                 revision: int, model: str, _step: StepContext) -> str:
    return _revise(deps, run_id, findings, draft, issues, revision, model)


@_step_span("revise")
def _revise(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str, issues: Sequence[str],
            revision: int, model: str) -> str:
    run = _load(run_id)
    _sources, prompt = _findings_prompt(findings)
    listed = "\n".join(f"- {issue}" for issue in issues) or "- (none listed)"
    completion = _llm(deps, model).complete(
        [ChatMessage.user(f"{prompt}\n\nThe profile:\n{draft}\n\nThe reviewer's issues:\n{listed}")],
        system=REVISE_SYSTEM, max_tokens=SYNTHESIS_TOKENS)
    _usage(run_id, completion.usage, 1, run=run, model=completion.model)
    runs.record_step(run_id, f"revision-{revision}", "complete", f"{len(issues)} issues addressed")
    return completion.text


def _document(run: runs.ResearchRun, findings: Sequence[Finding], draft: str | None, note: str = "") -> ReportDocument:
    sources, texts = merge_sources(findings)
    sections = parse_sections(draft) if draft else []
    if not sections:  # no draft yet (a partial report): the researchers' own findings
        sections = [ReportSection(heading=finding["title"], body=text)
                    for finding, text in zip(findings, texts, strict=True) if text.strip()]
    return ReportDocument(title=f"Profile: {run.subject}"[:200], sections=tuple(sections),
                          sources=tuple(_source(source) for source in sources),
                          subtitle=run.question[:300] if run.question else "", note=note)


def _filename(subject: str) -> str:
    return f"{slug(subject, limit=60) or 'research'}-profile.pdf"


@_step_span("report")
def _report(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str, review: Mapping[str, Any],
            revisions: int) -> dict[str, Any]:
    run = _load(run_id)
    note = "" if review["pass"] else ("The quality check still found issues after revision: "
                                      + "; ".join(review["issues"])[:600])
    document = _document(run, findings, draft, note)
    _record(deps, run, "report", "in_progress")
    summary = summary_of(document.sections)
    file_id = deps.deliver_report(channel_id=run.channel_id, thread_ts=run.thread_ts, document=document,
                                  filename=_filename(run.subject), summary=f"*{document.title}*\n{summary}")
    _record(deps, run, "report", "complete", f"{len(document.sources)} sources, {revisions} revisions")
    runs.finish(run_id, "succeeded", summary=summary, report_file_id=file_id)
    deps.board_for(run).close(f"Done: the report is in this thread ({len(document.sources)} sources).")
    return {"run_id": run_id, "status": "succeeded", "report_file_id": file_id, "revisions": revisions}


def _end_early(context: DurableContext, deps: WorkflowDeps, run_id: str, status: RunStatus,
               findings: list[Finding], draft: str | None, stage: str, check: Check) -> dict[str, Any]:
    if status == "cancelled":
        return context.step(lambda _: _cancelled(deps, run_id, stage), name="cancelled",
                                                 config=_IO_STEP)
    return context.step(lambda _: _capped(deps, run_id, findings, draft, stage, check),
                                             name="capped", config=_IO_STEP)


_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def _cancelled(deps: WorkflowDeps, run_id: str, stage: str) -> dict[str, Any]:
    run = _load(run_id)
    # Who asked, as a Slack mention only when a Slack user id was recorded: the worker records the
    # InsightMesh user id (a UUID), which Slack would show as a broken mention.
    by = run.cancel_requested_by or ""
    who = f" by <@{by}>" if _SLACK_USER_ID.fullmatch(by) else ""
    text = f"Research on {run.subject} was stopped{who} before {stage}. No report was made."
    runs.finish(run_id, "cancelled", summary=text)
    deps.board_for(run).close(f"Stopped{who}.")
    deps.notify(run, "cancelled", text)
    return {"run_id": run_id, "status": "cancelled"}


def _capped(deps: WorkflowDeps, run_id: str, findings: Sequence[Finding], draft: str | None, stage: str,
            check: Check) -> dict[str, Any]:
    run = _load(run_id)
    budget = check.get("budget", "")
    if budget:  # a used-up budget, in the worker's refusal words
        note = f"Partial report: {budget} The run stopped before {stage}."
        nothing = f"Research on {run.subject} stopped before {stage}, with nothing to report yet: {budget}"
    else:
        note = (f"Partial report: the run reached its token cap ({check['cap']:,} tokens; it used "
                f"{check['tokens']:,}) before {stage}, so it stopped there.")
        nothing = (f"Research on {run.subject} stopped: it reached its token cap ({check['cap']:,} tokens) "
                   "before it found anything to report.")
    document = _document(run, findings, draft, note)
    file_id: str | None = None
    if document.sections:
        summary = f"{note}\n{summary_of(document.sections)}"
        file_id = deps.deliver_report(channel_id=run.channel_id, thread_ts=run.thread_ts, document=document,
                                      filename=_filename(run.subject), summary=f"*{document.title}*\n{summary}")
    else:
        deps.notify(run, "capped", nothing)
    runs.finish(run_id, "capped", summary=note if file_id or not budget else nothing, report_file_id=file_id)
    if budget:  # the board says why it stopped
        deps.board_for(run).close(f"Stopped: {budget} " + ("The partial report is in this thread."
                                                           if file_id else "Nothing to report yet."))
    else:
        deps.board_for(run).close("Stopped at the token cap: " + ("the partial report is in this thread."
                                                                  if file_id else "nothing to report."))
    return {"run_id": run_id, "status": "capped", "report_file_id": file_id}


def _deliver_stored(context: DurableContext, deps: WorkflowDeps, run_id: str) -> dict[str, Any]:
    def deliver(_: StepContext) -> dict[str, Any]:
        run = _load(run_id)
        document = runs.stored_document(run)
        if document is None:
            raise RunFailedError("the report run has no document")
        file_id = deps.deliver_report(channel_id=run.channel_id, thread_ts=run.thread_ts, document=document,
                                      filename=f"{slug(document.title, limit=60) or 'report'}.pdf",
                                      summary=f"*{document.title}*")
        runs.finish(run_id, "succeeded", summary=document.title, report_file_id=file_id)
        return {"run_id": run_id, "status": "succeeded", "report_file_id": file_id}

    return context.step(deliver, name="deliver", config=_LLM_STEP)


def _fail(deps: WorkflowDeps, run_id: str, reason: str) -> None:
    run = runs.get_run(run_id)
    if run is None:
        logger.error("research run %s failed and does not exist: %s", run_id, reason)
        return
    runs.finish(run_id, "failed", error=reason)
    current = runs.get_run(run_id)
    if current is None or current.status != "failed":
        return  # it had ended otherwise before this failure (its outcome stands)
    subject = run.subject or "this request"
    what = "the report" if run.kind == "report" else f"the research on {subject}"
    deps.board_for(run).close("Failed.")
    deps.notify(run, "failed", f"Sorry, I couldn't finish {what}: something went wrong ({reason[:200]}). "
                               f"Reference: `{run_id}`.")


__all__ = [
    "DEFAULT_PLAN", "Finding", "Researcher", "WorkflowDeps", "citation_issues", "default_plan", "merge_sources",
    "parse_plan", "parse_review", "parse_sections", "run_research", "summary_of",
]
