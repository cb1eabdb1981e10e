"""The default assistant: a conversation with the LLM, grounded in the company's knowledge.

Each turn it searches the knowledge base with the user's access (``context.retrieve``: only the
documents they may see), puts the passages with their titles into the system prompt, and ends the
reply with a **Sources** section linking the documents. Files shared in the thread are in the
prompt too. With the ``offline`` LLM (no model at all) the answer is extractive: the best passages,
quoted, with their sources — so retrieval is useful, and testable, without any model.

With tools enabled where it answers (``context.tools``: the agent's tools ∩ the channel's) and a
model that can call them, it runs the agent loop (``insightmesh.tools.loop``) instead: the model
searches and reads with the tools, and the reply ends with the same **Sources** section, web
pages and filings numbered and cited like documents (``[n]``). When ``knowledge_search`` is not
among the tools, the passages are still retrieved up front and put in the prompt as sources
``1..k``; the tools' sources follow them. Without tools, nothing of this runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from insightmesh.agents.base import AgentContext, AgentReply, SharedDocument
from insightmesh.agents.catalog import AgentDefinition
from insightmesh.knowledge.answers import extractive_answer, knowledge_prompt, numbered_sources, sources_section
from insightmesh.knowledge.base import Passage
from insightmesh.llm.base import ChatMessage, stream_or_complete
from insightmesh.llm.tools import ToolCallingLlmClient, ToolResultTurn
from insightmesh.tools.base import Source, Tool
from insightmesh.tools.loop import run_tool_loop
from insightmesh.tools.registry import TOOLS, tools_named

SYSTEM_PROMPT: Final = (
    "You are InsightMesh, a helpful assistant in the company's Slack. You are talking with {name}. "
    "Answer concisely and accurately; use Markdown; say so when you do not know."
)
OFFLINE: Final = "offline"
FILE_PROMPT_CHARS: Final = 12_000  # per shared file, in the system prompt
FILE_QUOTES: Final = 2  # paragraphs quoted per shared file in an extractive answer
TOOL_STEPS: Final = 4  # model calls that may use tools, per answer
TOOL_TOKEN_CAP: Final = 40_000  # tokens all the calls of one answer may use
TOOLS_PROMPT: Final = (
    "\n\nYou can use tools to look things up. Use them when the question needs facts you do not have; "
    "then answer from what they returned and cite the sources by their number, like [1] or [2] (each "
    "tool result ends with its numbered sources). Do not list the sources yourself: they are appended "
    "to your reply.")


class AssistantAgent:
    definition = AgentDefinition(
        name="assistant",
        display_name="Assistant",
        description="General questions, answered from the company's knowledge: a conversation with the AI assistant.",
        aliases=("ask", "ai"),
        is_system=True,
        visibility="public",
    )

    def handle(self, context: AgentContext) -> AgentReply:
        question = context.text.strip()
        tools = _enabled_tools(context)
        if tools:
            return _answer_with_tools(context, question, tools)
        passages = list(context.retrieve(question)) if question else []
        documents = list(context.documents)
        if context.llm.name == OFFLINE and (passages or documents):
            return AgentReply(text=_extractive(question, passages, documents), details={"model": OFFLINE,
                                                                                       "passages": len(passages)})
        system = SYSTEM_PROMPT.format(name=context.user.name)
        if context.thread.context_channel_id:  # the AI app container: where the user is in Slack
            system += f" In Slack, they are looking at the channel <#{context.thread.context_channel_id}>."
        if context.summary:
            system += f"\n\nSummary of the earlier conversation in this thread:\n{context.summary}"
        if documents:
            system += "\n\nFiles shared in this thread (their text):\n" + "\n\n".join(
                f"### {document.name}\n{document.text[:FILE_PROMPT_CHARS]}" for document in documents)
        if passages:
            system += "\n\n" + knowledge_prompt(passages)
        messages = [*context.history, ChatMessage.user(question or "Hello")]
        completion = stream_or_complete(context.llm, messages, system=system, on_text=context.stream)
        text = completion.text
        if passages:
            text = f"{text.rstrip()}\n\n{sources_section(passages)}"
        return AgentReply(text=text, details={"model": completion.model, "passages": len(passages)})


def _enabled_tools(context: AgentContext) -> list[Tool]:
    """The tools to offer here: none without a tool context or a model that can call tools."""
    if context.tools is None or not isinstance(context.llm, ToolCallingLlmClient):
        return []
    enabled = context.tools.enabled
    return tools_named(TOOLS if enabled is None else enabled)


KEPT_RESULTS: Final = 6  # tool results the thread's state keeps for follow-up questions
KEPT_RESULT_CHARS: Final = 1_500  # of each
# Only public material is kept: a knowledge_search result was read with this turn's audience, and
# a thread's readers can change (someone joins the channel), so it is searched again each turn.
KEPT_TOOLS: Final = frozenset({"web_search", "read_url", "sec_filings"})
EARLIER_RESULTS_PROMPT: Final = (
    "\n\nResults of tools you ran earlier in this thread (for follow-up questions; the [n] in them are "
    "from those turns: to cite one now, run the tool again):\n")


def kept_results(previous: object, results: Sequence[ToolResultTurn]) -> list[dict[str, str]]:
    """The thread's tool results after this turn: the earlier ones plus this turn's successful web
    and filing results, each cut to ``KEPT_RESULT_CHARS``, the last ``KEPT_RESULTS`` only."""
    earlier = [item for item in previous if isinstance(item, dict)] if isinstance(previous, list) else []
    fresh = [{"tool": result.name, "content": result.content[:KEPT_RESULT_CHARS]}
             for result in results if result.name in KEPT_TOOLS and not result.is_error]
    return [{"tool": str(item.get("tool", "")), "content": str(item.get("content", ""))[:KEPT_RESULT_CHARS]}
            for item in [*earlier, *fresh]][-KEPT_RESULTS:]


def _answer_with_tools(context: AgentContext, question: str, tools: list[Tool]) -> AgentReply:
    assert context.tools is not None and isinstance(context.llm, ToolCallingLlmClient)
    names = {tool.name for tool in tools}
    passages = list(context.retrieve(question)) if question and "knowledge_search" not in names else []
    system = SYSTEM_PROMPT.format(name=context.user.name)
    if context.thread.context_channel_id:
        system += f" In Slack, they are looking at the channel <#{context.thread.context_channel_id}>."
    if context.summary:
        system += f"\n\nSummary of the earlier conversation in this thread:\n{context.summary}"
    if context.documents:
        system += "\n\nFiles shared in this thread (their text):\n" + "\n\n".join(
            f"### {document.name}\n{document.text[:FILE_PROMPT_CHARS]}" for document in context.documents)
    known: dict[str, Source] = {}
    for passage in passages:  # numbered as knowledge_prompt numbers them: by document, in rank order
        known.setdefault(passage.document_id, Source(title=passage.title, url=passage.url or "", kind="knowledge"))
    if passages:
        system += "\n\n" + knowledge_prompt(passages)
    earlier = kept_results(context.state.get("tool_results"), ())
    if earlier:
        system += EARLIER_RESULTS_PROMPT + "\n\n".join(f"### {item['tool']}\n{item['content']}" for item in earlier)
    system += TOOLS_PROMPT
    result = run_tool_loop(context.llm, [*context.history, ChatMessage.user(question or "Hello")], tools=tools,
                           context=context.tools, system=system, max_steps=TOOL_STEPS, max_tokens=TOOL_TOKEN_CAP,
                           on_text=context.stream, sources=list(known.values()))
    text = result.text.rstrip()
    if result.sources:
        text += "\n\n" + numbered_sources([(source.title, source.url or None) for source in result.sources])
    kept = kept_results(context.state.get("tool_results"), result.results)
    return AgentReply(text=text, state={"tool_results": kept} if kept else None,
                      details={"model": context.llm.name, "passages": len(passages), "tools": sorted(names),
                                          "steps": result.steps, "stopped": result.stopped,
                                          "sources": len(result.sources)})


def _terms(text: str) -> set[str]:
    return {word for word in re.findall(r"\w+", text.lower()) if len(word) > 2}


def _best_paragraphs(question: str, document: SharedDocument) -> list[str]:
    """The paragraphs of a shared file that share the most words with the question."""
    wanted = _terms(question)
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", document.text) if part.strip()]
    ranked = sorted(paragraphs, key=lambda part: -len(wanted & _terms(part)))
    return [part[:600] for part in ranked[:FILE_QUOTES]]


def _extractive(question: str, passages: Sequence[Passage], documents: Sequence[SharedDocument]) -> str:
    parts = []
    for document in documents:
        quoted = "\n>\n".join("\n".join("> " + line for line in paragraph.splitlines())
                               for paragraph in _best_paragraphs(question, document))
        parts.append(f"From *{document.name}* (shared in this thread):\n{quoted}")
    if passages or not documents:
        parts.append(extractive_answer(question, passages))
    return "[offline LLM — extractive answer]\n\n" + "\n\n".join(parts)
