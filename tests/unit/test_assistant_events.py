"""The AI app container's events as the ingress parses and queues them (insightmesh.slack.assistant,
insightmesh.conversation.intake), and the suggested prompts built from the agents a user may use.

Payloads are built with insightmesh_local.slack_signing, shaped as Slack's event reference shows."""

from __future__ import annotations

import pytest

from insightmesh.agents.catalog import AgentRecord
from insightmesh.conversation.assistant import Reporter, searching, status_of, suggested_prompts
from insightmesh.conversation.intake import assistant_request, classify_event
from insightmesh.conversation.requests import RequestKind
from insightmesh.slack import assistant
from insightmesh.slack.events import Decision
from insightmesh_local.slack_signing import DEFAULT_APP_ID, assistant_thread_event, event_callback, message_event

TEAM, USER, DM, THREAD = "T0TEAM0001", "U0USER0001", "DU0USER0001", "1729999327.187299"


def payload(kind: str, *, context: str | None = "C0SALES01", event_id: str = "Ev0001") -> dict[str, object]:
    return event_callback(TEAM, DEFAULT_APP_ID, assistant_thread_event(kind, USER, DM, THREAD,
                                                                       context_channel_id=context, team=TEAM),
                          event_id=event_id)


def test_thread_started_is_parsed_with_its_context_and_queued_in_the_threads_group() -> None:
    event = assistant.assistant_event(payload(assistant.THREAD_STARTED))
    assert event == assistant.AssistantThreadEvent(kind=assistant.THREAD_STARTED, event_id="Ev0001", team_id=TEAM,
                                                   user_id=USER, channel_id=DM, thread_ts=THREAD,
                                                   context_channel_id="C0SALES01")

    request = assistant_request(event, correlation_id="c-1")
    question = classify_event(event_callback(TEAM, DEFAULT_APP_ID, message_event(
        USER, DM, "hi", "1729999400.000100", THREAD, channel_type="im", team=TEAM)), correlation_id="c-2")

    assert request.kind is RequestKind.ASSISTANT_THREAD and request.action_id == assistant.THREAD_STARTED
    assert request.context_channel_id == "C0SALES01" and request.thread_ts == THREAD
    assert question.decision is Decision.ANSWER and question.request is not None
    assert request.message_group_id == question.request.message_group_id  # greeted before it is answered


def test_one_greeting_per_thread_but_every_context_change_is_its_own_request() -> None:
    started = [assistant_request(assistant.assistant_event(payload(assistant.THREAD_STARTED, event_id=e)),  # type: ignore[arg-type]
                                 correlation_id=e) for e in ("Ev1", "Ev2")]
    changed = [assistant_request(assistant.assistant_event(payload(assistant.CONTEXT_CHANGED, context=c, event_id=e)),  # type: ignore[arg-type]
                                 correlation_id=e) for c, e in (("C0ONE", "Ev3"), ("C0TWO", "Ev4"))]

    assert started[0].deduplication_id == started[1].deduplication_id
    assert changed[0].deduplication_id != changed[1].deduplication_id
    assert [r.context_channel_id for r in changed] == ["C0ONE", "C0TWO"]


def test_no_context_channel_and_other_events() -> None:
    event = assistant.assistant_event(payload(assistant.CONTEXT_CHANGED, context=None))
    assert event is not None and event.context_channel_id is None
    assert assistant.assistant_event({"event": {"type": "app_mention"}}) is None
    assert assistant.assistant_event({}) is None


@pytest.mark.parametrize("thread", [None, {"user_id": USER, "channel_id": DM}, {"channel_id": DM, "thread_ts": THREAD}])
def test_an_assistant_event_without_its_thread_is_malformed(thread: object) -> None:
    body = payload(assistant.THREAD_STARTED)
    body["event"] = {"type": assistant.THREAD_STARTED, "assistant_thread": thread}
    with pytest.raises(assistant.MalformedAssistantEvent):
        assistant.assistant_event(body)


def agent(name: str, display: str = "", description: str = "") -> AgentRecord:
    return AgentRecord(name, display_name=display, description=description)


def test_suggested_prompts_follow_the_agents_given_keep_help_last_and_stop_at_four() -> None:
    usable = [agent("assistant"), agent("meddic", "MEDDIC coach", "Qualify a deal"), agent("help"),
              agent("profile", "Profiles", "Research a company"), agent("legal", "Legal", "Contract questions"),
              agent("hr", "HR", "Policies")]

    prompts = suggested_prompts(usable)

    assert len(prompts) == assistant.MAX_PROMPTS
    assert prompts[0].title == "Ask the knowledge base"
    assert prompts[1] == assistant.Prompt("Ask MEDDIC coach", "meddic Qualify a deal")  # routes by its name
    assert prompts[-1] == assistant.Prompt("What can you do?", "help")
    assert suggested_prompts([agent("help")]) == [assistant.Prompt("What can you do?", "help")]
    assert suggested_prompts([]) == []


def test_one_reporter_tells_every_sink_and_only_the_status_hears_the_search() -> None:
    placeholder: list[str] = []
    status: list[str] = []
    progress = Reporter(placeholder.append, None, status=status.append)

    progress("Reading report.pdf…")
    found = searching(lambda q: [q], status_of(progress))("refunds")

    assert placeholder == ["Reading report.pdf…"]
    assert status == ["Reading report.pdf…", "Searching the knowledge base…"] and found == ["refunds"]
    assert status_of(Reporter(placeholder.append)) is None
