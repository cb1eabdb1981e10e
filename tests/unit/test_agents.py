"""The built-in agents: meddic (multi-turn coach), help and assistant — insightmesh.agents.builtin."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from insightmesh.agents.base import AgentContext, AgentReply, AgentSummary, AgentThread, AgentUser
from insightmesh.agents.builtin.assistant import AssistantAgent
from insightmesh.agents.builtin.help import HelpAgent
from insightmesh.agents.builtin.meddic import ELEMENTS, MeddicAgent
from insightmesh.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    Completion,
    LlmClient,
    Usage,
)
from insightmesh.llm.offline import OFFLINE_PREFIX, OfflineClient

USER = AgentUser(id="U0USER0001", name="Ada Lovelace")
THREAD = AgentThread(key="T1#C1#1700000000.000100", team_id="T1", channel_id="C1", thread_ts="1700000000.000100")

FIRST_NOTES = "Met with Acme. Their pain is manual invoicing that takes days. They want to save 20 hours a week."


@dataclass
class Call:
    messages: list[ChatMessage]
    system: str | None


@dataclass
class RecordingLlm:
    reply: str = "1. Book a meeting with the CFO."
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
        self.calls.append(Call(list(messages), system))
        return Completion(text=self.reply, usage=Usage(3, 5), model="fake-model", provider=self.name)


def context(
    text: str,
    *,
    state: dict[str, Any] | None = None,
    llm: LlmClient | None = None,
    history: Sequence[ChatMessage] = (),
    summary: str | None = None,
    progress: list[str] | None = None,
    usable: list[AgentSummary] | None = None,
) -> AgentContext:
    updates = progress if progress is not None else []
    return AgentContext(
        user=USER,
        thread=THREAD,
        text=text,
        history=history,
        summary=summary,
        state=state or {},
        llm=llm or OfflineClient(),
        progress=updates.append,
        usable_agents=lambda: list(usable or []),
    )


def stored(state: dict[str, Any] | None) -> dict[str, Any]:
    """The agent state as the next turn sees it: it is kept as JSON in DynamoDB."""
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


def known(reply: AgentReply) -> dict[str, str]:
    assert reply.state is not None
    result: dict[str, str] = reply.state["known"]
    return result


# -- meddic ---------------------------------------------------------------------------------------------
def test_meddic_first_turn_without_notes_introduces_itself_and_stays() -> None:
    reply = MeddicAgent().handle(context(""))

    assert reply.stay is True
    assert "MEDDPICC coach" in reply.text
    assert "analyze" in reply.text
    assert reply.state is not None
    assert reply.state["notes"] == []
    assert reply.state["known"] == {}


def test_meddic_notes_covering_some_elements_ask_for_the_first_missing_one() -> None:
    reply = MeddicAgent().handle(context(FIRST_NOTES))

    assert reply.stay is True
    assert set(known(reply)) == {"metrics", "identify_pain"}
    assert "2/8" in reply.text
    economic_buyer = ELEMENTS[1]
    assert economic_buyer.key == "economic_buyer"
    assert economic_buyer.question in reply.text
    assert reply.state is not None and reply.state["asked"] == "economic_buyer"
    assert reply.state["notes"] == [FIRST_NOTES]
    for title in ("Economic buyer", "Decision criteria", "Decision process", "Paper process", "Champion",
                  "Competition"):
        assert title in reply.text


def test_meddic_an_answer_naming_another_element_is_credited_to_that_element() -> None:
    agent = MeddicAgent()
    first = agent.handle(context(FIRST_NOTES))

    second = agent.handle(context("Sam is our champion in ops.", state=stored(first.state)))

    assert "champion" in known(second)
    assert "economic_buyer" not in known(second)  # the question asked is still open
    assert "3/8" in second.text
    assert second.state is not None and second.state["asked"] == "economic_buyer"


def test_meddic_an_answer_without_keywords_is_credited_to_the_asked_element() -> None:
    agent = MeddicAgent()
    first = agent.handle(context(FIRST_NOTES))

    second = agent.handle(context("Jordan Smith, we met last Tuesday", state=stored(first.state)))

    assert known(second)["economic_buyer"] == "Jordan Smith, we met last Tuesday"
    assert "3/8" in second.text
    assert second.state is not None and second.state["asked"] == "decision_criteria"
    assert ELEMENTS[2].question in second.text


def test_meddic_state_round_trips_through_json_over_several_turns() -> None:
    agent = MeddicAgent()
    state: dict[str, Any] = {}
    answers = [FIRST_NOTES, "Dana is the CFO and signs off on the budget.", "They need SSO and a security review.",
               "A pilot in Q3, then a committee decision.", "Legal wants our MSA redlined.",
               "Sam is our champion in ops.", "We are up against the incumbent vendor."]

    for answer in answers[:-1]:
        reply = agent.handle(context(answer, state=state))
        assert reply.stay is True
        assert reply.state is not None
        state = stored(reply.state)
        assert state == reply.state

    assert set(state["known"]) == {element.key for element in ELEMENTS} - {"competition"}
    assert state["asked"] == "competition"
    assert state["notes"] == answers[:-1]

    final = agent.handle(context(answers[-1], state=state))  # the eighth element: analysis, done

    assert final.stay is False
    assert not final.state
    assert "❌" not in final.text
    assert "We are up against the incumbent vendor." in final.text


def test_meddic_analyze_gives_the_structured_analysis_and_leaves_agent_mode() -> None:
    agent = MeddicAgent()
    llm = RecordingLlm(reply="- Book the CFO meeting this week.")
    progress: list[str] = []
    first = agent.handle(context(FIRST_NOTES))

    reply = agent.handle(context("Analyze!", state=stored(first.state), llm=llm, progress=progress))

    assert reply.stay is False
    assert not reply.state
    assert "MEDDPICC analysis" in reply.text
    for element in ELEMENTS:
        assert element.title in reply.text
    assert "✅ They want to save 20 hours a week." in reply.text
    assert "❌ unknown" in reply.text
    assert "Coaching points" in reply.text
    assert "- Book the CFO meeting this week." in reply.text
    assert len(progress) == 1
    (call,) = llm.calls
    assert FIRST_NOTES in call.messages[0].content
    assert call.system is not None and "MEDDPICC" in call.system


def test_meddic_asks_until_all_eight_are_known_then_analyses_without_being_asked() -> None:
    agent = MeddicAgent()
    notes = ("Their pain is manual invoicing. They want to save 20 hours a week. The CFO signs off on the budget. "
             "They need a security review. A pilot in Q3 is the next step. Legal owns the contract. "
             "Sam is our champion. The incumbent is a spreadsheet")
    progress: list[str] = []

    reply = agent.handle(context(notes, progress=progress))

    assert reply.stay is False
    assert "MEDDPICC analysis" in reply.text
    assert "❌" not in reply.text
    assert progress


def test_meddic_with_the_offline_llm_completes_an_analysis() -> None:
    reply = MeddicAgent().handle(context("analyze", state=stored(MeddicAgent().handle(context(FIRST_NOTES)).state)))

    assert OFFLINE_PREFIX in reply.text
    assert reply.stay is False


# -- help -----------------------------------------------------------------------------------------------
def test_help_lists_only_the_usable_agents_with_their_aliases() -> None:
    usable = [
        AgentSummary("meddic", "MEDDPICC coach", "Coaches your deals.", ("meddpicc", "coach")),
        AgentSummary("assistant", "Assistant", "General questions.", ("ask",)),
        AgentSummary("profile", "Profile", "Your profile.", ()),
    ]

    reply = HelpAgent().handle(context("", usable=usable))

    assert "Ada Lovelace" in reply.text
    lines = reply.text.splitlines()
    listed = [line for line in lines if line.startswith("- ")]
    assert len(listed) == 3
    assert listed[0].startswith("- **Assistant** — `assistant` (also `ask`)")
    assert "`meddic` (also `meddpicc`, `coach`): Coaches your deals." in listed[1]
    assert listed[2] == "- **Profile** — `profile`: Your profile."
    assert "help" not in " ".join(listed)
    assert reply.stay is False
    assert not reply.state


def test_help_with_no_usable_agents_lists_none() -> None:
    reply = HelpAgent().handle(context("", usable=[]))

    assert [line for line in reply.text.splitlines() if line.startswith("- ")] == []
    assert "meddic" not in reply.text and "assistant" not in reply.text
    assert "ask an InsightMesh admin" in reply.text


def test_help_never_suggests_an_agent_the_user_may_not_use() -> None:
    usable = [AgentSummary("assistant", "Assistant", "General questions.", ("ask",)),
              AgentSummary("profile", "Profile", "Your profile.", ())]

    reply = HelpAgent().handle(context("", usable=usable))

    assert "meddic" not in reply.text.lower()
    assert "`profile ...` or `-profile ...`" in reply.text
    assert "Anything else goes to the assistant." in reply.text
    with_meddic = HelpAgent().handle(context("", usable=[*usable, AgentSummary("meddic", "Coach", "Deals.", ())]))
    assert "`meddic ...` or `-meddic ...`" in with_meddic.text


# -- assistant -------------------------------------------------------------------------------------------
def test_assistant_sends_name_summary_history_and_the_new_message() -> None:
    llm = RecordingLlm(reply="Our PTO is 25 days.")
    history = [ChatMessage.user("hi"), ChatMessage.assistant("Hello Ada!")]

    reply = AssistantAgent().handle(context("what is our PTO?", llm=llm, history=history,
                                            summary="Ada asked about benefits earlier."))

    assert reply.text == "Our PTO is 25 days."
    assert reply.details == {"model": "fake-model", "passages": 0}
    assert reply.stay is False
    (call,) = llm.calls
    assert call.system is not None
    assert "Ada Lovelace" in call.system
    assert "Ada asked about benefits earlier." in call.system
    assert call.messages == [*history, ChatMessage.user("what is our PTO?")]


def test_assistant_without_summary_does_not_mention_one() -> None:
    llm = RecordingLlm()

    AssistantAgent().handle(context("hi", llm=llm))

    (call,) = llm.calls
    assert call.system is not None
    assert "Summary" not in call.system
    assert call.messages == [ChatMessage.user("hi")]


def test_assistant_with_empty_text_still_sends_a_user_message() -> None:
    llm = RecordingLlm()

    AssistantAgent().handle(context("", llm=llm))

    (call,) = llm.calls
    assert call.messages[-1].role == "user"
    assert call.messages[-1].content.strip()


def test_assistant_with_the_offline_llm_echoes_the_message() -> None:
    reply = AssistantAgent().handle(context("what is our PTO?"))

    assert reply.text.startswith(OFFLINE_PREFIX)
    assert "what is our PTO?" in reply.text


# -- the assistant with knowledge and shared files --------------------------------------------------------
def _passages() -> list[Any]:
    from insightmesh.knowledge.base import Passage

    return [Passage(document_id="gdrive:1", title="Refund policy", url="https://docs.example.com/refunds",
                    text="Customers may ask for a refund within 45 days of purchase.", score=0.9, chunk_index=0),
            Passage(document_id="local:2", title="travel.txt", url=None,
                    text="The per diem in Paris is 95 euros.", score=0.4, chunk_index=0)]


def test_the_assistant_puts_passages_in_the_prompt_and_ends_with_sources() -> None:
    from dataclasses import replace

    llm = RecordingLlm(reply="You have 45 days [1].")
    asked: list[str] = []

    def retrieve(question: str) -> list[Any]:
        asked.append(question)
        return _passages()

    reply = AssistantAgent().handle(replace(context("refund window?", llm=llm), retrieve=retrieve))
    assert asked == ["refund window?"]
    assert "Refund policy" in (llm.calls[0].system or "") and "45 days" in (llm.calls[0].system or "")
    assert reply.text.startswith("You have 45 days [1].")
    assert "Sources" in reply.text and "[Refund policy](https://docs.example.com/refunds)" in reply.text
    assert "travel.txt" in reply.text and reply.details["passages"] == 2


def test_the_assistant_without_knowledge_answers_as_before() -> None:
    llm = RecordingLlm(reply="Hello!")
    reply = AssistantAgent().handle(context("hi", llm=llm))
    assert reply.text == "Hello!" and "Sources" not in reply.text


def test_with_the_offline_llm_the_answer_is_extractive_with_sources() -> None:
    from dataclasses import replace

    reply = AssistantAgent().handle(replace(context("refund window?"), retrieve=lambda _q: _passages()))
    assert "45 days" in reply.text and "> " in reply.text
    assert "Sources" in reply.text and "Refund policy" in reply.text


def test_shared_files_reach_the_prompt_and_the_extractive_answer() -> None:
    from dataclasses import replace

    from insightmesh.agents.base import SharedDocument

    plan = SharedDocument(name="plan.txt", text="Intro paragraph.\n\nThe launch date is 14 March.\n\nOther.")
    llm = RecordingLlm(reply="14 March.")
    AssistantAgent().handle(replace(context("launch date?", llm=llm), documents=(plan,)))
    assert "plan.txt" in (llm.calls[0].system or "") and "14 March" in (llm.calls[0].system or "")
    offline = AssistantAgent().handle(replace(context("when is the launch date?"), documents=(plan,)))
    assert "plan.txt" in offline.text and "> The launch date is 14 March." in offline.text


class SystemRecordingOffline(OfflineClient):
    """The offline model (its deterministic tool plan), noting each step's system prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.systems: list[str | None] = []

    def complete_with_tools(self, turns: Any, *, tools: Any, system: str | None = None, **kwargs: Any) -> Any:
        self.systems.append(system)
        return super().complete_with_tools(turns, tools=tools, system=system, **kwargs)


def test_assistant_keeps_its_web_results_in_the_threads_state_for_the_next_turn() -> None:
    from insightmesh.tools.base import ToolContext

    llm = SystemRecordingOffline()
    first = context("who makes anvils?", llm=llm)
    first.tools = ToolContext(user_id="U1", enabled=frozenset({"web_search"}))
    reply = AssistantAgent().handle(first)
    assert reply.state is not None
    [kept] = reply.state["tool_results"]
    assert kept["tool"] == "web_search" and "anvils" in kept["content"]
    assert not any("ran earlier in this thread" in (system or "") for system in llm.systems)

    second = context("and who leads it?", llm=llm, state=stored(reply.state))
    second.tools = ToolContext(user_id="U1", enabled=frozenset({"web_search"}))
    llm.systems.clear()
    again = AssistantAgent().handle(second)
    assert "ran earlier in this thread" in (llm.systems[0] or "") and kept["content"][:60] in (llm.systems[0] or "")
    assert again.state is not None and len(again.state["tool_results"]) == 2


def test_kept_tool_results_are_bounded_and_leave_out_the_knowledge_base_and_errors() -> None:
    from insightmesh.agents.builtin.assistant import KEPT_RESULT_CHARS, KEPT_RESULTS, kept_results
    from insightmesh.llm.tools import ToolResultTurn

    results = [ToolResultTurn(call_id=f"c{n}", name="read_url", content="x" * 5000) for n in range(10)]
    results += [ToolResultTurn(call_id="k", name="knowledge_search", content="private plan"),
                ToolResultTurn(call_id="e", name="web_search", content="timed out", is_error=True)]
    kept = kept_results([{"tool": "web_search", "content": "earlier"}], results)
    assert len(kept) == KEPT_RESULTS and all(len(item["content"]) == KEPT_RESULT_CHARS for item in kept)
    assert {item["tool"] for item in kept} == {"read_url"}
    assert kept_results("not a list", ()) == []
