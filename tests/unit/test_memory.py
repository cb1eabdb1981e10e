"""Thread memory: a bounded window, older turns folded into an LLM summary — insightmesh.conversation.memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from insightmesh.conversation.memory import MAX_MESSAGE_CHARS, SUMMARY_PROMPT, WINDOW_MESSAGES, as_messages, remember
from insightmesh.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    ChatMessageDict,
    Completion,
    LlmClient,
    LlmUnavailableError,
    Usage,
)
from insightmesh.llm.offline import OFFLINE_PREFIX, OfflineClient


@dataclass
class Call:
    messages: list[ChatMessage]
    system: str | None
    max_tokens: int


@dataclass
class RecordingLlm:
    """An LlmClient that records every call and answers ``reply`` (or raises ``error``)."""

    reply: str = "SUMMARY"
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    name: str = "recording"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        self.calls.append(Call(list(messages), system, max_tokens))
        if self.error is not None:
            raise self.error
        return Completion(text=self.reply, usage=Usage(1, 1, estimated=True), model="fake", provider=self.name)


def turns(count: int, start: int = 0) -> list[ChatMessageDict]:
    """``count`` turns (two messages each): "question i" / "answer i"."""
    history: list[ChatMessageDict] = []
    for i in range(start, start + count):
        history.append({"role": "user", "content": f"question {i}"})
        history.append({"role": "assistant", "content": f"answer {i}"})
    return history


def test_the_fake_is_an_llm_client() -> None:
    assert isinstance(RecordingLlm(), LlmClient)
    assert isinstance(OfflineClient(), LlmClient)


def test_a_turn_is_appended_while_the_window_has_room() -> None:
    llm = RecordingLlm()

    window, summary = remember(turns(1), None, "question 1", "answer 1", llm)

    assert window == turns(2)
    assert summary is None
    assert llm.calls == []


def test_the_window_may_fill_up_to_its_limit_without_a_summary() -> None:
    llm = RecordingLlm()
    full = WINDOW_MESSAGES // 2

    window, summary = remember(turns(full - 1), "earlier", f"question {full - 1}", f"answer {full - 1}", llm)

    assert len(window) == WINDOW_MESSAGES
    assert summary == "earlier"
    assert llm.calls == []


def test_overflow_is_summarised_and_the_window_keeps_the_latest_messages() -> None:
    llm = RecordingLlm(reply="They discussed questions 0.")
    full = WINDOW_MESSAGES // 2

    window, summary = remember(turns(full), None, "new question", "new answer", llm)

    assert len(window) == WINDOW_MESSAGES
    assert window[-2:] == [{"role": "user", "content": "new question"}, {"role": "assistant", "content": "new answer"}]
    assert window[0] == {"role": "user", "content": "question 1"}
    assert summary == "They discussed questions 0."
    (call,) = llm.calls
    assert call.system == SUMMARY_PROMPT
    assert len(call.messages) == 1 and call.messages[0].role == "user"
    transcript = call.messages[0].content
    assert "user: question 0" in transcript
    assert "assistant: answer 0" in transcript
    assert "question 1" not in transcript  # still in the window: not summarised
    assert "Previous summary" not in transcript


def test_the_previous_summary_is_fed_into_the_next_one() -> None:
    llm = RecordingLlm(reply="new summary")

    _, summary = remember(turns(WINDOW_MESSAGES // 2), "they met the CFO", "q", "a", llm)

    assert summary == "new summary"
    transcript = llm.calls[0].messages[0].content
    assert transcript.startswith("Previous summary: they met the CFO")
    assert "user: question 0" in transcript


def test_many_turns_stay_bounded_and_each_overflow_is_summarised() -> None:
    llm = OfflineClient()
    history: list[ChatMessageDict] = []
    summary: str | None = None

    for i in range(20):
        history, summary = remember(history, summary, f"question {i}", f"answer {i}", llm)
        assert len(history) <= WINDOW_MESSAGES

    assert history == turns(WINDOW_MESSAGES // 2, start=20 - WINDOW_MESSAGES // 2)
    assert summary is not None
    assert summary.startswith(f"{OFFLINE_PREFIX} Summary of")


def test_every_turn_past_the_window_summarises_the_two_messages_that_leave_it() -> None:
    llm = RecordingLlm()
    history: list[ChatMessageDict] = []
    summary: str | None = None
    full = WINDOW_MESSAGES // 2

    for i in range(full + 3):
        llm.reply = f"summary after turn {i}"
        history, summary = remember(history, summary, f"question {i}", f"answer {i}", llm)

    assert len(llm.calls) == 3
    for n, call in enumerate(llm.calls):
        transcript = call.messages[0].content
        assert f"user: question {n}\nassistant: answer {n}" in transcript
        assert f"question {n + 1}" not in transcript
    assert llm.calls[1].messages[0].content.startswith(f"Previous summary: summary after turn {full}")
    assert summary == f"summary after turn {full + 2}"


def test_an_oversized_history_is_cut_back_to_the_window_in_one_turn() -> None:
    llm = RecordingLlm()

    window, _ = remember(turns(20), None, "q", "a", llm)

    assert len(window) == WINDOW_MESSAGES
    assert len(llm.calls) == 1
    assert "question 0" in llm.calls[0].messages[0].content
    assert "question 14" in llm.calls[0].messages[0].content


@pytest.mark.parametrize("previous", [None, "the old summary"])
def test_a_failed_summary_keeps_the_old_one_and_still_bounds_the_window(previous: str | None) -> None:
    llm = RecordingLlm(error=LlmUnavailableError("provider down", provider="recording"))

    window, summary = remember(turns(WINDOW_MESSAGES // 2), previous, "q", "a", llm)

    assert len(llm.calls) == 1
    assert summary == previous
    assert len(window) == WINDOW_MESSAGES
    assert window[-1] == {"role": "assistant", "content": "a"}


def test_long_messages_are_cut_before_they_are_stored() -> None:
    window, _ = remember([], None, "u" * (MAX_MESSAGE_CHARS + 10), "r" * (MAX_MESSAGE_CHARS + 10), RecordingLlm())

    assert [len(m["content"]) for m in window] == [MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS]


def test_as_messages_keeps_only_user_and_assistant_turns_in_order() -> None:
    history: list[ChatMessageDict] = [
        {"role": "system", "content": "ignore me"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]

    assert as_messages(history) == [ChatMessage.user("hi"), ChatMessage.assistant("hello")]
