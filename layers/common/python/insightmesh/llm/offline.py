"""The offline LLM: no network, no key, the same answer for the same input.

It is the development default (``LLM_PROVIDER=offline``; production refuses it) and what tests
use to run a conversation end to end (``stream`` hands the same answer over in pieces of three
words). Every reply starts with ``[offline LLM]`` so nobody can take it for a model's answer:

* normally: ``[offline LLM] You said: "<first 200 characters of the last user message>"
  (<n> messages in the conversation)``;
  ``<n>`` counts every message passed, whatever its role;
* when the system prompt asks for a summary (it, or a ``system`` message, contains ``summar``, any case):
  ``[offline LLM] Summary of <n> messages (<w> words): <first 200 characters of the user
  messages, joined>``.
* when the system prompt asks to grade an answer as JSON (it contains ``grade`` and ``JSON``) and
  the last user message has ``## Question``, ``## Passages`` and ``## Answer`` sections (the
  answer-quality judge, :mod:`insightmesh.evaluation.scoring`): a JSON object of scores computed from
  the text, so that the judge works without a model — ``cites`` 1 when the answer cites a listed
  passage's number (``[n]``; also 1 with no passages, as there is nothing to cite), else 0;
  ``faithfulness`` the share of the answer's words (4+ letters) found in the passages or the
  question; ``answers_question`` the share of the question's words found in the answer (each
  rounded to 2 places), and a ``comment``.

Tool calling (``complete_with_tools``) follows a deterministic plan, so the tool loop runs end
to end without keys. Each call looks at the turns so far and:

1. asks, in one turn, for every offered tool among ``knowledge_search``, ``web_search`` and
   ``sec_filings`` (in that order) that it has not called yet, each with ``{"query": <the last
   user message>}``;
2. then asks ``read_url`` (when offered) for the first 2 web addresses found in the earlier
   results of the other tools (lines ``[n] title — url``), in one turn (2 in all, never again);
3. then answers: ``[offline LLM] From the tools:`` and, per successful result, its first ~300
   characters and its ``[n]`` markers (offered no tools, it answers so at once; with no
   results at all it answers as ``complete`` does).

Call ids are ``offline-<turn>-<i>``.

Usage is computed, not measured (``estimated`` is true): prompt tokens are the characters of the
system prompt and every message divided by four (each floored), completion tokens those of the
reply. A reply longer than ``max_tokens`` tokens is cut to ``max_tokens * 4`` characters and its
``finish_reason`` is ``length`` (otherwise ``stop``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from insightmesh.llm.base import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    Completion,
    TextSink,
    Usage,
    check_request,
    estimate_prompt_tokens,
    estimate_tokens,
    last_user_message,
)
from insightmesh.llm.telemetry import instrumented
from insightmesh.llm.tools import (
    ToolCall,
    ToolCallTurn,
    ToolCompletion,
    ToolResultTurn,
    ToolSpec,
    Turn,
    as_plain_messages,
    check_turns,
    estimate_turn_tokens,
    last_user_text,
)

OFFLINE_PREFIX: Final = "[offline LLM]"
SEARCH_TOOLS: Final = ("knowledge_search", "web_search", "sec_filings")
READ_TOOL: Final = "read_url"
READ_URLS: Final = 2
RESULT_CHARS: Final = 300
_SOURCE_LINE: Final = re.compile(r"^\[(\d+)\] .*?(?: — (\S+))?$", re.MULTILINE)
OFFLINE_MODEL: Final = "offline"
ECHO_CHARS: Final = 200
STREAM_WORDS: Final = 3  # words per streamed piece


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int = ECHO_CHARS) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@instrumented
class OfflineClient:
    """A deterministic ``LlmClient`` for development and tests (see the module docstring)."""

    name: Final = "offline"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        check_request(messages, max_tokens=max_tokens, temperature=temperature)
        instructions = " ".join(
            [system or ""] + [message.content for message in messages if message.role == "system"]
        )
        count = _plural(len(messages), "message")
        if _is_grading(instructions, messages):
            text = _grade(last_user_message(messages))
        elif "summar" in instructions.lower():
            said = " ".join(message.content for message in messages if message.role == "user")
            words = len(said.split())
            text = f"{OFFLINE_PREFIX} Summary of {count} ({_plural(words, 'word')}): {_clip(said)}"
        else:
            text = f'{OFFLINE_PREFIX} You said: "{_clip(last_user_message(messages))}" ({count} in the conversation)'
        finish_reason = "stop"
        if estimate_tokens(text) > max_tokens:
            text = text[: max_tokens * CHARS_PER_TOKEN]
            finish_reason = "length"
        usage = Usage(
            prompt_tokens=estimate_prompt_tokens(messages, system),
            completion_tokens=estimate_tokens(text),
            estimated=True,
        )
        return Completion(
            text=text, usage=usage, model=OFFLINE_MODEL, provider=self.name, finish_reason=finish_reason
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextSink,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        """The same answer as ``complete``, handed to ``on_text`` in pieces of a few words."""
        completion = self.complete(messages, system=system, max_tokens=max_tokens, temperature=temperature)
        for piece in stream_pieces(completion.text):
            on_text(piece)
        return completion


    def complete_with_tools(
        self,
        turns: Sequence[Turn],
        *,
        tools: Sequence[ToolSpec],
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> ToolCompletion:
        """The next step of the deterministic tool plan (see the module docstring)."""
        check_turns(turns, max_tokens=max_tokens, temperature=temperature)
        offered = {spec.name for spec in tools}
        called = [call for turn in turns if isinstance(turn, ToolCallTurn) for call in turn.calls]
        results = [turn for turn in turns if isinstance(turn, ToolResultTurn)]
        step = sum(1 for turn in turns if isinstance(turn, ToolCallTurn))
        query = last_user_text(turns)
        wanted: list[tuple[str, dict[str, Any]]] = [
            (name, {"query": query}) for name in SEARCH_TOOLS
            if name in offered and name not in {call.name for call in called}]
        if not wanted and READ_TOOL in offered:
            read = {str(call.arguments.get("url")) for call in called if call.name == READ_TOOL}
            urls = [url for url in _result_urls(results) if url not in read][:max(READ_URLS - len(read), 0)]
            wanted = [(READ_TOOL, {"url": url}) for url in urls]
        prompt = estimate_turn_tokens(turns, system, tools)
        if wanted:
            calls = tuple(ToolCall(id=f"offline-{step}-{index}", name=name, arguments=arguments)
                          for index, (name, arguments) in enumerate(wanted))
            written = sum(estimate_tokens(str(arguments)) for _, arguments in wanted)
            return ToolCompletion(text="", tool_calls=calls, usage=Usage(prompt, written, estimated=True),
                                  model=OFFLINE_MODEL, provider=self.name, finish_reason="tool_calls")
        answered = [result for result in results if not result.is_error]
        if not answered:
            completion = self.complete(as_plain_messages(turns) or [ChatMessage.user(query)], system=system,
                                       max_tokens=max_tokens, temperature=temperature)
            return ToolCompletion(text=completion.text, tool_calls=(), usage=completion.usage, model=OFFLINE_MODEL,
                                  provider=self.name, finish_reason=completion.finish_reason)
        text = f"{OFFLINE_PREFIX} From the tools:\n" + "\n".join(f"- {_digest(result.content)}" for result in answered)
        finish_reason = "stop"
        if estimate_tokens(text) > max_tokens:
            text, finish_reason = text[: max_tokens * CHARS_PER_TOKEN], "length"
        return ToolCompletion(text=text, tool_calls=(), usage=Usage(prompt, estimate_tokens(text), estimated=True),
                              model=OFFLINE_MODEL, provider=self.name, finish_reason=finish_reason)


_SECTION: Final = re.compile(r"^## (Question|Passages|Answer)\n", re.MULTILINE)
_CITATION: Final = re.compile(r"\[(\d+)\]")
_PASSAGE_NUMBER: Final = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


def _is_grading(instructions: str, messages: Sequence[ChatMessage]) -> bool:
    lowered = instructions.lower()
    return ("grade" in lowered and "json" in lowered
            and len(_SECTION.findall(last_user_message(messages))) == 3)


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"[^\W\d_]{4,}", text.lower())}


def _grade(message: str) -> str:
    """The offline judge's JSON scores of a ``## Question / ## Passages / ## Answer`` message."""
    parts = _SECTION.split(message)
    sections = {parts[index]: parts[index + 1].strip() for index in range(1, len(parts) - 1, 2)}
    question, passages, answer = sections.get("Question", ""), sections.get("Passages", ""), sections.get("Answer", "")
    numbers = set(_PASSAGE_NUMBER.findall(passages))
    cited = set(_CITATION.findall(answer)) & numbers
    cites = 1.0 if cited or not numbers else 0.0
    answer_words, question_words = _words(answer), _words(question)
    grounded = _words(passages) | question_words
    faithfulness = len(answer_words & grounded) / len(answer_words) if answer_words else 0.0
    answers = len(question_words & answer_words) / len(question_words) if question_words else 1.0
    comment = (f"offline judge: cites {len(cited)} of {len(numbers)} passages; "
               f"{len(answer_words & grounded)} of {len(answer_words)} words grounded")
    return json.dumps({"faithfulness": round(faithfulness, 2), "answers_question": round(answers, 2),
                       "cites": cites, "comment": comment})


def _result_urls(results: Sequence[ToolResultTurn]) -> list[str]:
    """The web addresses in the ``[n] title — url`` lines of results (not the knowledge base's)."""
    urls: list[str] = []
    for result in results:
        if result.is_error or result.name == "knowledge_search":
            continue
        for match in _SOURCE_LINE.finditer(result.content):
            url = match.group(2) or ""
            if url.startswith(("http://", "https://")) and url not in urls:
                urls.append(url)
    return urls


def _digest(content: str) -> str:
    """A result's first ~300 characters (before its source lines) and its ``[n]`` markers."""
    markers = [f"[{match.group(1)}]" for match in _SOURCE_LINE.finditer(content)]
    body = _SOURCE_LINE.sub("", content)
    return f"{_clip(body.replace('Sources:', ' '), RESULT_CHARS)} {' '.join(dict.fromkeys(markers))}".strip()


def stream_pieces(text: str, words: int = STREAM_WORDS) -> list[str]:
    """``text`` cut after every ``words`` words (whitespace kept), so the pieces join back to it."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return ["".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]
