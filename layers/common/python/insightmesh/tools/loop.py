"""The agent loop: offer tools to the model, run what it asks for, feed the results back, until it
answers — within a step limit and a token cap.

``run_tool_loop`` is the only way agents use tools. Each step is one ``complete_with_tools`` call:

* the model answers (no tool calls): that is the answer (``stopped="answer"``);
* it asks for tools: each call is checked and run, and one ``ToolResultTurn`` per call goes back:
  - an unknown tool name, arguments that are not a JSON object, arguments the tool's pydantic
    model refuses, or a tool this person may not use here (``ToolContext.enabled``, then
    ``Tool.allowed``, failing closed) become **error results** the model reads and may correct;
  - each tool runs in its own thread with its own deadline (``Tool.timeout_seconds``); the calls
    of one step run side by side. A tool past its deadline is an error result (its thread is left
    to finish on its own and its result dropped), and so is a ``ToolError`` (its message) or any
    other failure (logged; the model is told only that the tool failed);
  - every result is cut to ``RESULT_CHARS`` and all results together to ``TOTAL_RESULT_CHARS``,
    so the conversation (and what is kept of it) stays bounded;
  - the sources a tool read are numbered globally in the order they arrive, deduplicated by URL
    (``sources`` passed in, e.g. passages already in the prompt, come first), and the result the
    model reads ends with ``[n] title — url`` lines, so it can cite ``[n]``;
  - ``context.progress`` is told what is happening ("Searching the web for “…”…").
* after ``max_steps`` steps that asked for tools, the model is asked once more with no tools
  offered, for its answer from what it has (``stopped="step_limit"``);
* when the tokens used by all steps reach ``max_tokens``, no further call is made: the result is
  what the model wrote so far, or the gist of the tool results, saying the cap was reached
  (``stopped="token_cap"``).

With tracing on, each call is a GenAI ``execute_tool {name}`` span (``gen_ai.tool.name``,
``gen_ai.tool.call.id``, ``insightmesh.tool.outcome`` ok/refused/failed, the result's size; its
arguments only with message content capture, redacted), a child of the caller's span although the
tool runs in its own thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ValidationError

from insightmesh import tracing
from insightmesh.llm.base import DEFAULT_MAX_TOKENS, ChatMessage, Usage
from insightmesh.llm.tools import (
    INVALID_ARGUMENTS_KEY,
    ToolCall,
    ToolCallingLlmClient,
    ToolCallTurn,
    ToolResultTurn,
    ToolSpec,
    Turn,
)
from insightmesh.observability import get_logger
from insightmesh.tools.base import Source, Tool, ToolContext, ToolError, ToolOutput

RESULT_CHARS: Final = 6_000  # one tool result, as the model reads it
TOTAL_RESULT_CHARS: Final = 30_000  # all the results of one loop together
MIN_RESULT_CHARS: Final = 200  # what a result keeps once the total is spent (its error or gist)
DIGEST_CHARS: Final = 300
CUT_NOTE: Final = "\n[… cut: the result was longer]"
STEP_LIMIT_NOTE: Final = ("You have used all your tool steps. Answer now from the tool results above, citing "
                          "sources as [n]; say what you could not find.")
CAP_NOTE: Final = "_I reached this request's token budget before finishing; this is what I found so far._"

Stopped = Literal["answer", "step_limit", "token_cap"]


@dataclass(frozen=True)
class LoopResult:
    text: str
    sources: tuple[Source, ...]
    steps: int  # calls to the model
    usage: Usage  # all steps together
    stopped: Stopped
    results: tuple[ToolResultTurn, ...] = ()  # what the tools returned (bounded), in order
    turns: tuple[Turn, ...] = field(default=())  # the conversation as the loop left it


def tool_spec(tool: Tool) -> ToolSpec:
    """What the model is offered: the tool's name, description and its arguments' JSON Schema."""
    schema = tool.parameters.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=tool.name, description=tool.description, parameters=schema)


def describe(tool_name: str, arguments: Mapping[str, Any]) -> str:
    """The progress line for a call ("Searching the web for “acme”…")."""
    query = str(arguments.get("query") or "")[:80]
    url = str(arguments.get("url") or "")[:120]
    phrases = {
        "knowledge_search": f"Searching the knowledge base for “{query}”…",
        "web_search": f"Searching the web for “{query}”…",
        "sec_filings": f"Searching SEC filings for “{query}”…",
        "read_url": f"Reading {url}…",
    }
    return phrases.get(tool_name, f"Using {tool_name}…")


class _Sources:
    """Sources numbered globally in arrival order, deduplicated by URL (by title without one)."""

    def __init__(self, initial: Sequence[Source]) -> None:
        self.items: list[Source] = []
        self.numbers: dict[str, int] = {}
        for source in initial:
            self.number(source)

    def number(self, source: Source) -> int:
        key = source.url.strip() or f"title:{source.title.strip()}"
        if key not in self.numbers:
            self.items.append(source)
            self.numbers[key] = len(self.items)
        return self.numbers[key]


def _source_line(number: int, source: Source) -> str:
    title = " ".join(source.title.split()) or "Untitled"
    return f"[{number}] {title} — {source.url}" if source.url.strip() else f"[{number}] {title}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - len(CUT_NOTE), 0)] + CUT_NOTE


@dataclass
class _Budget:
    """The characters of tool results still allowed in this loop."""

    left: int = TOTAL_RESULT_CHARS

    def take(self, text: str) -> str:
        text = _cut(text, max(min(RESULT_CHARS, self.left), MIN_RESULT_CHARS))
        self.left = max(self.left - len(text), 0)
        return text


def _error(call: ToolCall, message: str) -> ToolResultTurn:
    return ToolResultTurn(call_id=call.id, name=call.name, content=f"Error: {message}", is_error=True)


def _check(call: ToolCall, tools: Mapping[str, Tool], context: ToolContext) -> tuple[Tool, BaseModel] | str:
    """The tool and its validated arguments, or why the call is refused (for the model)."""
    tool = tools.get(call.name)
    if tool is None:
        return f"there is no tool named {call.name!r}; the tools are: {', '.join(sorted(tools)) or 'none'}"
    if INVALID_ARGUMENTS_KEY in call.arguments:
        return f"the arguments of {call.name} were not a JSON object; call it again with valid JSON arguments"
    try:
        arguments = tool.parameters.model_validate(dict(call.arguments))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(part) for part in item['loc']) or 'arguments'}: {item['msg']}"
                             for item in error.errors()[:5])
        return f"invalid arguments for {call.name}: {problems}"
    if not context.enables(call.name):
        return f"{call.name} is not enabled here"
    if not tool.allowed(context):
        return f"{call.name} is not available to this person here"
    return tool, arguments


def _tool_span(call: ToolCall, arguments: Mapping[str, Any], parent: tracing.Carrier | None = None,
               ) -> AbstractContextManager[tracing.Span]:
    """The GenAI ``execute_tool`` span of one call; its arguments (redacted) only with content capture on."""
    if not tracing.enabled():
        return nullcontext(tracing.NOOP_SPAN)
    attributes: dict[str, tracing.AttributeValue] = {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.id}
    if tracing.capture_message_content():
        from insightmesh.observability import redact

        attributes["gen_ai.tool.call.arguments"] = json.dumps(redact(dict(arguments)), default=str)
    return tracing.span(f"execute_tool {call.name}", parent=parent, attributes=attributes)


def _end(span: tracing.Span, outcome: Literal["ok", "refused", "failed"], *, error: str = "",
         output: ToolOutput | None = None) -> None:
    """The outcome on a tool's span: ``ok`` with its result's size, ``refused`` (the check said no:
    the tool did not run) or ``failed`` (``error.type``, status ERROR)."""
    if not span.is_recording():
        return
    span.set_attribute("insightmesh.tool.outcome", outcome)
    if output is not None:
        span.set_attributes({"insightmesh.tool.result_chars": len(output.text),
                             "insightmesh.tool.sources": len(output.sources)})
    if outcome == "failed":
        span.set_attribute("error.type", error)
        span.set_error(error)


class _Run:
    """One tool call in its own thread; ``outcome`` once it finished. Its span is a child of the
    caller's (``parent``: the trace context, carried into the thread)."""

    def __init__(self, call: ToolCall, tool: Tool, arguments: BaseModel, context: ToolContext) -> None:
        self.call, self.tool, self.arguments, self.context = call, tool, arguments, context
        self.outcome: ToolOutput | str | None = None
        self.timed_out = False  # set by the caller that stopped waiting
        self.parent = tracing.inject() if tracing.enabled() else None
        self.thread = threading.Thread(target=self._run, name=f"tool-{tool.name}", daemon=True)

    def _run(self) -> None:
        with _tool_span(self.call, self.call.arguments, self.parent) as span:
            error = ""
            try:
                self.outcome = self.tool.run(self.arguments, self.context)
            except ToolError as failure:
                self.outcome, error = str(failure)[:500] or f"{self.tool.name} failed", "ToolError"
            except Exception as failure:  # noqa: BLE001 - logged; a tool's bug must not end the answer: the model is told it failed
                get_logger().exception("tool failed", extra={"tool": self.tool.name})
                self.outcome, error = f"{self.tool.name} failed unexpectedly", type(failure).__qualname__
            if self.timed_out:
                _end(span, "failed", error="timeout")
            elif isinstance(self.outcome, ToolOutput):
                _end(span, "ok", output=self.outcome)
            else:
                _end(span, "failed", error=error)


def run_tools(calls: Sequence[ToolCall], tools: Mapping[str, Tool], context: ToolContext,
              sources: _Sources, budget: _Budget) -> list[ToolResultTurn]:
    """Run one step's calls side by side, each within its own timeout; one result per call, in order."""
    prepared: list[ToolResultTurn | tuple[ToolCall, _Run, float]] = []
    for call in calls:
        checked = _check(call, tools, context)
        if isinstance(checked, str):
            with _tool_span(call, call.arguments) as span:
                _end(span, "refused")
            prepared.append(_error(call, checked))
            continue
        tool, arguments = checked
        context.progress(describe(call.name, arguments.model_dump()))
        run = _Run(call, tool, arguments, context)
        run.thread.start()
        prepared.append((call, run, time.monotonic() + float(tool.timeout_seconds)))
    results: list[ToolResultTurn] = []
    for item in prepared:
        if isinstance(item, ToolResultTurn):
            results.append(item)
            continue
        call, run, deadline = item
        run.thread.join(max(deadline - time.monotonic(), 0.0))
        outcome = run.outcome
        if run.thread.is_alive() or outcome is None:
            run.timed_out = True
            get_logger().warning("tool timed out", extra={"tool": call.name, "timeout": run.tool.timeout_seconds})
            results.append(_error(call, f"{call.name} did not answer within {run.tool.timeout_seconds:g} s"))
        elif isinstance(outcome, str):
            results.append(_error(call, outcome))
        else:
            lines = [_source_line(sources.number(source), source) for source in outcome.sources]
            text = outcome.text.strip() or "(no text)"
            body = budget.take(text)
            if lines:
                body += "\n\nSources:\n" + "\n".join(lines)
            results.append(ToolResultTurn(call_id=call.id, name=call.name, content=body))
    return results


def _add(total: Usage, usage: Usage) -> Usage:
    return Usage(total.prompt_tokens + usage.prompt_tokens, total.completion_tokens + usage.completion_tokens,
                 estimated=total.estimated or usage.estimated)


def digest(results: Sequence[ToolResultTurn]) -> str:
    """The gist of the results: each successful one's first ~300 characters (and its [n] lines)."""
    parts = []
    for result in results:
        if result.is_error:
            continue
        body, _, cited = result.content.partition("\n\nSources:\n")
        markers = " ".join(line.split(" ", 1)[0] for line in cited.splitlines() if line.startswith("["))
        text = " ".join(body.split())
        text = text if len(text) <= DIGEST_CHARS else text[: DIGEST_CHARS - 1].rstrip() + "…"
        parts.append(f"- {text} {markers}".rstrip())
    return "\n".join(parts)


def run_tool_loop(
    llm: ToolCallingLlmClient,
    turns: Sequence[Turn],
    *,
    tools: Sequence[Tool],
    context: ToolContext,
    system: str | None,
    max_steps: int,
    max_tokens: int,
    on_text: Callable[[str], None] | None = None,
    sources: Sequence[Source] = (),
    answer_tokens: int = DEFAULT_MAX_TOKENS,
) -> LoopResult:
    """Run the conversation ``turns`` with ``tools`` until the model answers (see the module docstring).

    ``max_steps``: calls that may use tools; ``max_tokens``: the tokens all calls together may use;
    ``answer_tokens``: the ``max_tokens`` of each call; ``on_text`` gets the final text, whole.
    LLM errors (``LlmUnavailableError``...) propagate, as from ``complete``.
    """
    if max_steps < 0 or max_tokens < 1:
        raise ValueError("max_steps must be at least 0 and max_tokens at least 1")
    by_name = {tool.name: tool for tool in tools}
    specs = [tool_spec(tool) for tool in tools]
    conversation: list[Turn] = list(turns)
    numbered = _Sources(sources)
    budget = _Budget()
    results: list[ToolResultTurn] = []
    usage = Usage(0, 0)
    steps = 0
    written = ""

    def finish(text: str, stopped: Stopped) -> LoopResult:
        if on_text is not None and text:
            on_text(text)
        get_logger().info("tool loop finished", extra={"steps": steps, "stopped": stopped, "results": len(results),
                                                       "sources": len(numbered.items)})
        return LoopResult(text=text, sources=tuple(numbered.items), steps=steps, usage=usage, stopped=stopped,
                          results=tuple(results), turns=tuple(conversation))

    def capped() -> LoopResult:
        found = digest(results)
        text = "\n\n".join(part for part in (written.strip(), found, CAP_NOTE) if part)
        return finish(text, "token_cap")

    for _ in range(max_steps):
        if usage.total >= max_tokens:
            return capped()
        completion = llm.complete_with_tools(conversation, tools=specs, system=system, max_tokens=answer_tokens)
        steps += 1
        usage = _add(usage, completion.usage)
        if not completion.tool_calls:
            return finish(completion.text, "answer")
        written = completion.text or written
        conversation.append(ToolCallTurn(calls=completion.tool_calls, text=completion.text))
        if usage.total >= max_tokens:
            return capped()
        step_results = run_tools(completion.tool_calls, by_name, context, numbered, budget)
        results.extend(step_results)
        conversation.extend(step_results)
    if usage.total >= max_tokens:
        return capped()
    conversation.append(ChatMessage.user(STEP_LIMIT_NOTE))
    completion = llm.complete_with_tools(conversation, tools=(), system=system, max_tokens=answer_tokens)
    steps += 1
    usage = _add(usage, completion.usage)
    return finish(completion.text or digest(results), "step_limit")
