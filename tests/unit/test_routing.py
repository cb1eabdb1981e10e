"""Which agent answers a message — insightmesh.conversation.routing.

Agent records are built in memory (never saved), as list_agents would return them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from insightmesh.agents.catalog import AgentRecord
from insightmesh.agents.registry import DEFAULT_AGENT
from insightmesh.conversation.routing import route_message


def record(name: str, *aliases: str, deleted: bool = False) -> AgentRecord:
    return AgentRecord(name, display_name=name.title(), description=f"the {name} agent", aliases=list(aliases),
                       deleted_at=datetime(2024, 1, 1, tzinfo=UTC) if deleted else None)


@pytest.fixture
def agents() -> list[AgentRecord]:
    return [record("assistant", "ask", "ai"), record("help", "?", "agents"),
            record("meddic", "meddpicc", "coach"), record("profile")]


def test_default_agent_is_the_assistant() -> None:
    assert DEFAULT_AGENT == "assistant"


# -- by name --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["meddic", "-meddic", "MEDDIC", "-MEDDIC", "Meddic", "meddpicc", "-Coach", "COACH"])
def test_first_word_names_an_agent_by_name_or_alias_any_case_with_or_without_dash(
    agents: list[AgentRecord], word: str
) -> None:
    route = route_message(f"{word} here are my call notes", None, agents)

    assert route.agent_name == "meddic"
    assert route.text == "here are my call notes"
    assert route.by == "name"
    assert route.exit is False


def test_the_agent_word_alone_gives_the_agent_empty_text(agents: list[AgentRecord]) -> None:
    route = route_message("  -meddic  ", None, agents)

    assert route.agent_name == "meddic"
    assert route.text == ""


def test_the_rest_of_a_multiline_message_is_kept(agents: list[AgentRecord]) -> None:
    route = route_message("meddic notes:\n- CFO signs off\n- pilot in Q3", None, agents)

    assert route.agent_name == "meddic"
    assert route.text == "notes:\n- CFO signs off\n- pilot in Q3"


def test_a_deleted_agent_is_not_found(agents: list[AgentRecord]) -> None:
    agents.append(record("legacy", "old", deleted=True))

    route = route_message("legacy what do you do", None, agents)

    assert route.agent_name == DEFAULT_AGENT
    assert route.by == "default"


def test_agent_word_only_counts_as_the_first_word(agents: list[AgentRecord]) -> None:
    route = route_message("can the meddic agent help me?", None, agents)

    assert route.agent_name == DEFAULT_AGENT
    assert route.text == "can the meddic agent help me?"


# -- default ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["what is our PTO policy?", "-unknown do something", "  hello  "])
def test_unknown_first_word_goes_to_the_assistant_with_the_whole_text(agents: list[AgentRecord], text: str) -> None:
    route = route_message(text, None, agents)

    assert route.agent_name == DEFAULT_AGENT
    assert route.text == text.strip()
    assert route.by == "default"
    assert route.exit is False


def test_empty_text_goes_to_the_assistant(agents: list[AgentRecord]) -> None:
    route = route_message("   ", None, agents)

    assert route.agent_name == DEFAULT_AGENT
    assert route.exit is False


# -- sticky -------------------------------------------------------------------------------------------------
def test_sticky_agent_wins_over_another_agents_name(agents: list[AgentRecord]) -> None:
    route = route_message("help me with the champion question", "meddic", agents)

    assert route.agent_name == "meddic"
    assert route.text == "help me with the champion question"
    assert route.by == "sticky"


def test_sticky_agent_gets_the_whole_text_even_when_it_starts_with_its_own_name(agents: list[AgentRecord]) -> None:
    route = route_message("meddic is hard", "meddic", agents)

    assert route.agent_name == "meddic"
    assert route.text == "meddic is hard"


# -- exit ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["exit", "stop", "done", "end", "clear", "EXIT", "Stop.", "done!", "-exit", "end..."])
def test_an_exit_word_alone_leaves_agent_mode(agents: list[AgentRecord], word: str) -> None:
    route = route_message(word, "meddic", agents)

    assert route.exit is True
    assert route.agent_name == "meddic"
    assert route.text == ""


@pytest.mark.parametrize("word", ["exit", "stop!", "Done."])
def test_an_exit_word_alone_without_sticky_agent_is_an_exit(agents: list[AgentRecord], word: str) -> None:
    route = route_message(word, None, agents)

    assert route.exit is True
    assert route.agent_name == DEFAULT_AGENT


@pytest.mark.parametrize("text", ["exit please", "Stop. Thanks for the help", "done! great session"])
def test_exit_with_more_words_leaves_a_sticky_agent(agents: list[AgentRecord], text: str) -> None:
    route = route_message(text, "meddic", agents)

    assert route.exit is True
    assert route.agent_name == "meddic"


def test_a_question_starting_with_an_exit_word_goes_to_the_assistant_without_sticky(
    agents: list[AgentRecord],
) -> None:
    route = route_message("stop words in NLP?", None, agents)

    assert route.exit is False
    assert route.agent_name == DEFAULT_AGENT
    assert route.text == "stop words in NLP?"


def test_an_exit_word_inside_the_message_is_not_an_exit(agents: list[AgentRecord]) -> None:
    route = route_message("when does the pilot end", "meddic", agents)

    assert route.exit is False
    assert route.agent_name == "meddic"
    assert route.text == "when does the pilot end"
