"""The ``profile`` agent (agents.builtin.profile): the subject of a request, a research run started
through the context, an immediate answer; how the router reaches it; and meddic's final analysis
delivered as a report too."""

from __future__ import annotations

from typing import Any

import pytest

from insightmesh.agents.base import AgentContext, AgentThread, AgentUser, ReportDocument, ResearchRequest
from insightmesh.agents.builtin.meddic import ELEMENTS, MeddicAgent, deal_name
from insightmesh.agents.builtin.profile import ASK_SUBJECT, ProfileAgent, subject_of
from insightmesh.agents.catalog import AgentRecord
from insightmesh.agents.registry import builtin_definitions, implementation
from insightmesh.conversation.routing import route_message
from insightmesh.llm.offline import OfflineClient

USER = AgentUser(id="u-1", name="Ada")
THREAD = AgentThread(key="T1#C1#1.1", team_id="T1", channel_id="C1", thread_ts="1.1")


def context(text: str, start: Any = None, state: dict[str, Any] | None = None) -> AgentContext:
    ctx = AgentContext(user=USER, thread=THREAD, text=text, history=(), summary=None, state=dict(state or {}),
                       llm=OfflineClient())
    if start is not None:
        ctx.start_research = start
    return ctx


@pytest.mark.parametrize(("text", "subject"), [
    ("Acme Corp", "Acme Corp"),
    ("Jane Doe at Acme", "Jane Doe at Acme"),
    ("Jane Doe from Acme Corp.", "Jane Doe from Acme Corp"),
    ("of Acme Corp", "Acme Corp"),
    ("on *Acme Corp*", "Acme Corp"),
    ("<@U0BOT> profile Acme Corp", "Acme Corp"),
    ("profile \u201cAcme Corp\u201d", "Acme Corp"),
    ("research   Jane   Doe\nat Acme", "Jane Doe at Acme"),
    ("", ""),
    ("profile", ""),
    ("  ?! ", ""),
])
def test_the_subject_is_the_text_without_the_verb_mention_or_filler(text: str, subject: str) -> None:
    assert subject_of(text) == subject


def test_a_subject_starts_a_profile_run_and_the_answer_comes_at_once() -> None:
    started: list[ResearchRequest] = []

    def start(request: ResearchRequest) -> str:
        started.append(request)
        return "run-42"

    reply = ProfileAgent().handle(context("Jane Doe at Acme", start))
    assert started == [ResearchRequest(kind="profile", subject="Jane Doe at Acme", question="Jane Doe at Acme")]
    assert reply.text == "Researching **Jane Doe at Acme**… I'll post the report here (say **stop** to cancel)."
    assert reply.details == {"research_run_id": "run-42"} and not reply.stay and reply.document is None


def test_no_subject_asks_for_one_and_starts_nothing() -> None:
    def start(_request: ResearchRequest) -> str:
        raise AssertionError("nothing to research")

    assert ProfileAgent().handle(context("  ", start)).text == ASK_SUBJECT


def test_a_start_that_fails_is_answered_clearly() -> None:
    def start(_request: ResearchRequest) -> str:
        raise RuntimeError("the research service is not available right now")

    reply = ProfileAgent().handle(context("Acme Corp", start))
    assert "couldn't start the research on **Acme Corp**" in reply.text
    assert "not available right now" in reply.text
    # Without a worker behind it (the context's default), the same clear answer.
    assert "couldn't start" in ProfileAgent().handle(context("Acme Corp")).text


def test_profile_is_a_public_builtin_reached_by_its_name_or_alias_as_the_first_word() -> None:
    definition = next(d for d in builtin_definitions() if d.name == "profile")
    assert definition.visibility == "public" and "research" in definition.aliases
    assert isinstance(implementation("profile"), ProfileAgent)
    agents = [AgentRecord(d.name, aliases=list(d.aliases)) for d in builtin_definitions()]
    for text, rest in [("profile Acme Corp", "Acme Corp"), ("research Jane Doe at Acme", "Jane Doe at Acme"),
                       ("-profile Acme Corp", "Acme Corp"), ("Profile Acme", "Acme")]:
        route = route_message(text, None, agents)
        assert (route.agent_name, route.text, route.exit) == ("profile", rest, False)
    # "stop" alone is an exit word for the router: the worker asks about research runs first.
    assert route_message("stop", None, agents).exit


# -- meddic's report ------------------------------------------------------------------------------------
NOTES = ("Acme Corp renewal call. Their pain is manual invoicing; they want to save 20 hours a week. "
         "The CFO signs off on the budget.")


def test_meddic_final_analysis_is_also_a_report_with_a_section_per_element_and_the_notes() -> None:
    agent = MeddicAgent()
    first = agent.handle(context(NOTES))
    assert first.document is None  # still asking: no report yet
    reply = agent.handle(context("analyze", state=first.state))
    assert "MEDDPICC analysis" in reply.text  # the text reply stays
    document = reply.document
    assert isinstance(document, ReportDocument)
    assert document.title == "MEDDPICC analysis — Acme Corp renewal call"
    headings = [section.heading for section in document.sections]
    assert headings[:len(ELEMENTS)] == [
        f"{e.title} — {'covered' if e.key in first.state['known'] else 'unknown'}"  # type: ignore[index]
        for e in ELEMENTS]
    assert headings[len(ELEMENTS):] == ["Coaching points", "Next steps", "Call notes"]
    assert document.sections[-1].body == NOTES
    metrics = document.sections[0]
    assert metrics.heading == "Metrics — covered" and "20 hours" in metrics.body
    assert document.subtitle.endswith(f"/{len(ELEMENTS)} elements covered")


def test_the_deal_is_named_by_the_first_sentence_of_the_notes_bounded() -> None:
    assert deal_name(["Globex expansion. More text."]) == "Globex expansion"
    assert deal_name([]) == "this deal"
    long = deal_name(["word " * 40])
    assert long.endswith("…") and len(long) <= 61
