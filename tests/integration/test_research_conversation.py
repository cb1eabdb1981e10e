"""Research in the conversation (conversation.research and its wiring in the worker): the worker
in-process, its tables in moto (from the template), Slack as the local sandbox, the offline LLM,
and a recording launcher in place of Lambda's asynchronous invoke (research.launcher).

"profile Acme Corp" records a run for the thread, starts it and answers at once; a start that
fails is answered clearly; "stop" in the thread or the board's Stop button cancels the run (only
the asker or an admin: others are refused, privately for the button); meddic's final analysis
is handed over as a report run as well.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from insightmesh.agents.catalog import seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.conversation import research as conversation_research
from insightmesh.conversation import worker
from insightmesh.conversation.intake import assistant_request
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id
from insightmesh.directory.models import User
from insightmesh.research import launcher, progress, runs
from insightmesh.research.base import PlanTask
from insightmesh.slack import assistant as slack_assistant
from insightmesh.slack import client as slack_client
from insightmesh.slack import events
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.slack_sandbox import assistant as sandbox_assistant
from insightmesh_local.slack_signing import assistant_thread_event, event_callback
from tests.slack_fixtures import conversation_sandbox, message_request

pytestmark = pytest.mark.timeout(120)

TEAM, DM, CHANNEL = "TLOCAL0001", "D0ALICE01", "C0DEALS01"
ALICE, BOB = "U0ALICE01", "U0BOB0001"
_ts = itertools.count(1)


def new_ts() -> str:
    return f"17959{next(_ts):05d}.000100"


class Launcher:
    """Lambda's asynchronous invoke, recorded (or refused)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.refuse = False

    def __call__(self, run_id: str) -> None:
        if self.refuse:
            raise launcher.LaunchError("Lambda throttled the invoke")
        self.started.append(run_id)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    with conversation_sandbox(monkeypatch, "xoxb-research") as sandbox:
        progress.reset_for_tests()
        seed_agents(builtin_definitions())
        sandbox.set_channel(CHANNEL, [ALICE, BOB])
        try:
            yield sandbox
        finally:
            progress.reset_for_tests()


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> Launcher:
    recording = Launcher()
    monkeypatch.setattr(launcher, "start_execution", recording)
    return recording


def message(user: str, text: str, *, channel: str = CHANNEL, thread_ts: str | None = None) -> ConversationRequest:
    return message_request(TEAM, user, text, channel=channel, ts=new_ts(), thread_ts=thread_ts)


def stop_button(user: str, run_id: str, thread_ts: str, board_ts: str | None) -> ConversationRequest:
    return ConversationRequest(
        kind=RequestKind.ACTION, request_id=f"act:{TEAM}:{CHANNEL}:{board_ts}:{user}:research_stop:{new_ts()}",
        team_id=TEAM, channel_id=CHANNEL, user_id=user, ts=board_ts, thread_ts=thread_ts,
        action_id="research_stop", action_value=run_id)


def replies_in(sandbox: SlackSandbox, thread_ts: str, channel: str = CHANNEL) -> list[str]:
    """The final texts the bot shows in the thread (not ephemeral, not deleted)."""
    return [m["text"] for m in sandbox.messages(channel, thread_ts)
            if m["is_bot"] and not m["deleted"] and not m["ephemeral"] and not m["streaming"]]


def ephemerals(sandbox: SlackSandbox, user: str) -> list[str]:
    return [m["text"] for m in sandbox.messages(CHANNEL) if m["ephemeral"] and m["ephemeral_for"] == user]


def user_id_of(slack_user: str) -> str:
    from insightmesh.directory.models import Identity
    from insightmesh.directory.users import slack_identity_key

    return str(Identity.get(slack_identity_key(TEAM, slack_user)).user_id)


def started_run(env: SlackSandbox, launched: Launcher, *, user: str = ALICE) -> tuple[runs.ResearchRun, str]:
    ask = message(user, f"<@{slack_client.bot_identity().user_id}> profile Acme Corp")
    worker.process(ask)
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None
    return run, ask.thread_ts or ""


def test_profile_records_a_run_starts_it_and_answers_at_once(env: SlackSandbox, launched: Launcher) -> None:
    bot = slack_client.bot_identity().user_id
    ask = message(ALICE, f"<@{bot}> profile Acme Corp")
    worker.process(ask)
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None
    assert (run.kind, run.subject, run.status, run.team_id, run.channel_id, run.thread_ts) == \
        ("profile", "Acme Corp", "queued", TEAM, CHANNEL, ask.thread_ts)
    assert run.user_id == user_id_of(ALICE)
    assert any("Researching *Acme Corp*… I'll post the report here (say *stop* to cancel)" in text
               for text in replies_in(env, ask.thread_ts or ""))


def test_research_in_a_dm_by_its_alias(env: SlackSandbox, launched: Launcher) -> None:
    ask = message(ALICE, "research Jane Doe at Acme", channel=DM)
    worker.process(ask)
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None and run.subject == "Jane Doe at Acme" and run.channel_id == DM


def test_profile_in_the_assistant_pane(env: SlackSandbox, launched: Launcher) -> None:
    thread_ts = str(sandbox_assistant.start_thread(env.state, user=ALICE, context_channel_id=CHANNEL)["thread_ts"])
    payload = event_callback(TEAM, "ALOCAL0001", assistant_thread_event(
        slack_assistant.THREAD_STARTED, ALICE, DM, thread_ts, context_channel_id=CHANNEL, team=TEAM), event_id="Ev1")
    event = slack_assistant.assistant_event(payload)
    assert event is not None
    worker.process(assistant_request(event, correlation_id="test"))  # the pane opens: a greeting
    ts = str(env.add_user_message(channel=DM, user=ALICE, text="profile Acme Corp", thread_ts=thread_ts)["ts"])
    worker.process(ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, DM, ts),
                                       team_id=TEAM, channel_id=DM, channel_type="im", user_id=ALICE,
                                       text="profile Acme Corp", ts=ts, thread_ts=thread_ts))
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None and (run.subject, run.channel_id, run.thread_ts) == ("Acme Corp", DM, thread_ts)
    assert any(text.startswith("Researching *Acme Corp*") for text in replies_in(env, thread_ts, channel=DM))


def test_a_start_that_fails_is_answered_clearly(env: SlackSandbox, launched: Launcher) -> None:
    launched.refuse = True
    ask = message(ALICE, "profile Acme Corp")
    worker.process(ask)
    [text] = replies_in(env, ask.thread_ts or "")
    assert "couldn't start the research" in text and "try again" in text
    assert runs.active_run_in_thread(TEAM, CHANNEL, ask.thread_ts or "") is None  # marked failed


def test_stop_in_the_thread_cancels_the_run_and_the_board_says_stopping(
        env: SlackSandbox, launched: Launcher) -> None:
    run, thread_ts = started_run(env, launched)
    progress.board_for(run).show_plan([PlanTask("plan", "Plan the research", "in_progress")])
    worker.process(message(ALICE, "stop", thread_ts=thread_ts))
    again = runs.get_run(run.run_id)
    assert again is not None and again.cancel_requested
    assert replies_in(env, thread_ts)[-1] == conversation_research.STOPPING
    [board] = [m for m in env.messages(CHANNEL, thread_ts) if (m["metadata"] or {}).get("event_type")
               == progress.EVENT_TYPE]
    assert "Stopping" in board["blocks"][-1]["elements"][0]["text"]
    assert not any(block["type"] == "actions" for block in board["blocks"])  # no Stop button any more


def test_cancel_by_someone_else_is_refused_and_changes_nothing(env: SlackSandbox, launched: Launcher) -> None:
    run, thread_ts = started_run(env, launched)
    worker.process(message(BOB, "cancel", thread_ts=thread_ts))
    again = runs.get_run(run.run_id)
    assert again is not None and not again.cancel_requested
    assert replies_in(env, thread_ts)[-1] == conversation_research.NOT_YOURS


def test_stop_without_a_run_still_leaves_agent_mode(env: SlackSandbox, launched: Launcher) -> None:
    ask = message(ALICE, "hello there")
    worker.process(ask)
    worker.process(message(ALICE, "stop", thread_ts=ask.thread_ts))
    assert replies_in(env, ask.thread_ts or "")[-1] == "You are talking to the assistant."


def test_the_stop_button_cancels_for_the_asker_and_refuses_anyone_else_privately(
        env: SlackSandbox, launched: Launcher) -> None:
    run, thread_ts = started_run(env, launched)
    board = progress.board_for(run)
    board.show_plan([PlanTask("plan", "Plan the research", "in_progress")])
    worker.process(stop_button(BOB, run.run_id, thread_ts, board.ts))
    assert ephemerals(env, BOB)[-1] == conversation_research.NOT_YOURS
    assert not (runs.get_run(run.run_id) or run).cancel_requested
    worker.process(stop_button(ALICE, run.run_id, thread_ts, board.ts))
    assert ephemerals(env, ALICE)[-1] == conversation_research.STOPPING
    assert (runs.get_run(run.run_id) or run).cancel_requested


def test_an_admin_may_stop_anyones_run(env: SlackSandbox, launched: Launcher) -> None:
    run, thread_ts = started_run(env, launched)
    worker.process(message(BOB, "hello", thread_ts=thread_ts))  # Bob is known from now on
    User.get(user_id_of(BOB)).update(actions=[User.is_admin.set(True)])
    worker.process(stop_button(BOB, run.run_id, thread_ts, None))
    assert ephemerals(env, BOB)[-1] == conversation_research.STOPPING
    assert (runs.get_run(run.run_id) or run).cancel_requested


def test_the_ingress_accepts_the_stop_button() -> None:
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": ALICE}, "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": "2.2", "channel_id": CHANNEL},
        "message": {"ts": "2.2", "thread_ts": "1.1"}, "trigger_id": "t1",
        "actions": [{"action_id": "research_stop", "value": "run-1", "action_ts": "3.3"}]}
    [action] = events.parse_actions(payload)
    assert (action.action_id, action.action_value, action.thread_ts) == ("research_stop", "run-1", "1.1")


def test_meddic_final_analysis_is_handed_over_as_a_report_run(env: SlackSandbox, launched: Launcher) -> None:
    ask = message(ALICE, "meddic Acme Corp renewal. They want to save 20 hours a week. The CFO signs off.")
    worker.process(ask)
    assert launched.started == []  # still asking
    worker.process(message(ALICE, "analyze", thread_ts=ask.thread_ts))
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None and run.kind == "report" and run.thread_ts == ask.thread_ts
    assert run.subject == "MEDDPICC analysis — Acme Corp renewal"
    document = runs.document_from_json(run.document or "")
    assert document.sections[0].heading == "Metrics — covered"
    assert "MEDDPICC analysis" in replies_in(env, ask.thread_ts or "")[-1]  # the text reply stays


def test_a_run_knows_who_reads_the_thread_and_the_tools_the_channel_allows(env: SlackSandbox,
                                                                           launched: Launcher) -> None:
    """The research searches the knowledge base only for the thread's readers (here both channel
    members), and uses only the tools admins left enabled in the channel."""
    from insightmesh.conversation import channel_settings

    channel_settings.ChannelSettingsRecord(sk=CHANNEL, tools=["web_search", "read_url"]).save()
    channel_settings.forget(CHANNEL)
    run, _thread = started_run(env, launched)
    assert sorted(run.tools or []) == ["read_url", "web_search"]
    audience = runs.stored_audience(run)
    assert audience is not None and audience.scope == "members" and len(audience.viewers) == 2


def test_a_dm_run_searches_for_the_asker_alone_with_the_workflows_own_tools(env: SlackSandbox,
                                                                            launched: Launcher) -> None:
    worker.process(message(ALICE, "profile Acme Corp", channel=DM))
    [run_id] = launched.started
    run = runs.get_run(run_id)
    assert run is not None and run.tools is None
    audience = runs.stored_audience(run)
    assert audience is not None and len(audience.viewers) == 1
