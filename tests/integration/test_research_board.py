"""The research progress board (research.progress) against the Slack sandbox: the plan as a task
list with a Stop button, edits as steps move (at most one per interval, the latest state shown
after it), the same message across replays and processes (its ts stored on the run, its state in
the message's metadata), the button gone once the run is closed, and no Slack failure raised."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from insightmesh.research import progress
from insightmesh.research.base import PlanTask
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.research_fixtures import Run

CHANNEL, USER = "C0RESEARCH", "U0ASKER"
PLAN = [PlanTask("plan", "Plan the research", "complete"), PlanTask("overview", "Company overview"),
        PlanTask("people", "People"), PlanTask("report", "Write the report")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scheduled:
    """The board's trailing edits, run when the test says (no real timers)."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, action: Callable[[], None]) -> Callable[[], None]:
        entry = (delay, action)
        self.pending.append(entry)
        return lambda: self.pending.remove(entry) if entry in self.pending else None

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for _delay, action in pending:
            action()


@pytest.fixture(autouse=True)
def fresh_boards() -> Iterator[None]:
    progress.reset_for_tests()
    yield
    progress.reset_for_tests()


@pytest.fixture
def thread(slack: SlackSandbox) -> str:
    slack.set_channel(CHANNEL, [USER])
    return str(slack.add_user_message(channel=CHANNEL, user=USER, text="profile Acme Corp")["ts"])


def boards(slack: SlackSandbox, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL, thread_ts) if m["is_bot"] and not m["deleted"]]


def texts(message: dict[str, Any]) -> list[str]:
    return [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]


def stop_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [element for block in message["blocks"] if block["type"] == "actions"
            for element in block["elements"] if element["action_id"] == progress.STOP_ACTION]


def make(run: Run, saved: dict[str, str], clock: Clock, scheduled: Scheduled) -> progress.SlackProgressBoard:
    return progress.board_for(run, save_ts=lambda run_id, ts: saved.__setitem__(run_id, ts), clock=clock,
                              schedule=scheduled)


def test_the_plan_is_posted_as_a_task_list_with_a_stop_button_and_its_ts_is_stored(
        slack: SlackSandbox, thread: str) -> None:
    saved: dict[str, str] = {}
    board = make(Run("run-1", CHANNEL, thread), saved, Clock(), Scheduled())
    board.show_plan(PLAN)
    [message] = boards(slack, thread)
    assert saved == {"run-1": message["ts"]} and message["thread_ts"] == thread
    assert texts(message) == ["Researching *Acme Corp*", "✅ *Plan the research*", "⬜ *Company overview*",
                              "⬜ *People*", "⬜ *Write the report*"]
    [button] = stop_buttons(message)
    assert button["value"] == "run-1" and button["text"]["text"] == "Stop"
    assert message["metadata"]["event_type"] == progress.EVENT_TYPE
    assert message["text"] == "Researching Acme Corp: 1/4 steps done"


def test_updates_edit_the_same_message_at_most_once_an_interval_and_the_latest_state_follows(
        slack: SlackSandbox, thread: str) -> None:
    clock, scheduled = Clock(), Scheduled()
    board = make(Run("run-2", CHANNEL, thread), {}, clock, scheduled)
    board.show_plan(PLAN)
    clock.now += 2
    board.update("overview", "in_progress", "searching the web")
    assert len(slack.calls("chat.update")) == 1
    clock.now += 0.2
    board.update("people", "in_progress")
    clock.now += 0.2
    board.update("overview", "complete", "5 sources")
    assert len(slack.calls("chat.update")) == 1  # both within the interval: held back
    assert len(scheduled.pending) == 1  # one trailing edit, not one per change
    scheduled.run()  # the interval is over
    [message] = boards(slack, thread)
    assert len(slack.calls("chat.update")) == 2 and len(slack.calls("chat.postMessage")) == 1
    assert texts(message)[2:4] == ["✅ *Company overview* — 5 sources", "⏳ *People*"]
    clock.now += 2
    board.update("people", "error", "no results")
    assert texts(boards(slack, thread)[0])[3] == "⚠️ *People* — no results"


def test_a_second_plan_replaces_the_first_and_keeps_the_status_it_gives(slack: SlackSandbox, thread: str) -> None:
    board = make(Run("run-8", CHANNEL, thread), {}, Clock(), Scheduled())
    board.show_plan([PlanTask("plan", "Plan the research", "in_progress")])  # while planning
    board.show_plan(PLAN)  # the plan is made: its own task complete, the researchers to do
    [message] = boards(slack, thread)
    assert texts(message)[1:3] == ["✅ *Plan the research*", "⬜ *Company overview*"]
    assert len(slack.calls("chat.postMessage")) == 1


def test_close_shows_how_the_run_ended_and_takes_the_stop_button_away(slack: SlackSandbox, thread: str) -> None:
    clock, scheduled = Clock(), Scheduled()
    board = make(Run("run-3", CHANNEL, thread), {}, clock, scheduled)
    board.show_plan(PLAN)
    clock.now += 0.1
    board.update("overview", "complete")  # held back by the interval: close shows it anyway
    board.close("Done: the report is in the thread.")
    [message] = boards(slack, thread)
    assert stop_buttons(message) == []
    assert "✅ *Company overview*" in texts(message)
    assert message["blocks"][-1] == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "Done: the report is in the thread."}]}
    scheduled.run()  # a trailing edit after close changes nothing
    assert stop_buttons(boards(slack, thread)[0]) == []
    # A step replayed in another process after the close: the board stays as the run ended it.
    progress.reset_for_tests()
    again = make(Run("run-3", CHANNEL, thread, progress_ts=message["ts"]), {}, Clock(), Scheduled())
    again.update("people", "in_progress")
    again.stopping("U0ASKER")
    [message] = boards(slack, thread)
    assert stop_buttons(message) == [] and "⬜ *People*" in texts(message)
    assert message["blocks"][-1]["elements"][0]["text"] == "Done: the report is in the thread."


def test_a_replay_in_another_process_edits_the_stored_message_with_the_state_it_reads_back(
        slack: SlackSandbox, thread: str) -> None:
    saved: dict[str, str] = {}
    first = make(Run("run-4", CHANNEL, thread), saved, Clock(), Scheduled())
    first.show_plan(PLAN)
    first.update("overview", "complete", "done")  # within the interval: pending in the first process
    progress.reset_for_tests()  # the process died; the plan step will not run again (checkpointed)
    again = make(Run("run-4", CHANNEL, thread, progress_ts=saved["run-4"]), saved, Clock(), Scheduled())
    again.update("people", "in_progress", "reading pages")
    [message] = boards(slack, thread)
    assert len(slack.calls("chat.postMessage")) == 1 and message["ts"] == saved["run-4"]
    assert texts(message)[1:] == ["✅ *Plan the research*", "⬜ *Company overview*",
                                  "⏳ *People* — reading pages", "⬜ *Write the report*"]
    progress.reset_for_tests()
    replayed = make(Run("run-4", CHANNEL, thread, progress_ts=saved["run-4"]), saved, Clock(), Scheduled())
    replayed.show_plan(PLAN)  # the plan step replayed: the same message, progress kept
    [message] = boards(slack, thread)
    assert len(slack.calls("chat.postMessage")) == 1
    assert "⏳ *People* — reading pages" in texts(message)


def test_a_board_posted_before_a_crash_whose_ts_was_not_stored_is_found_not_posted_twice(
        slack: SlackSandbox, thread: str) -> None:
    lost: dict[str, str] = {}
    make(Run("run-5", CHANNEL, thread), lost, Clock(), Scheduled()).show_plan(PLAN)
    progress.reset_for_tests()
    saved: dict[str, str] = {}
    make(Run("run-5", CHANNEL, thread), saved, Clock(), Scheduled()).show_plan(PLAN)
    [message] = boards(slack, thread)
    assert saved == {"run-5": message["ts"]} and len(slack.calls("chat.postMessage")) == 1


def test_stopping_says_so_and_removes_the_button(slack: SlackSandbox, thread: str) -> None:
    board = make(Run("run-6", CHANNEL, thread), {}, Clock(), Scheduled())
    board.show_plan(PLAN)
    progress.board_for(Run("run-6", CHANNEL, thread)).stopping("U0ASKER")
    [message] = boards(slack, thread)
    assert stop_buttons(message) == []
    assert "Stopping" in message["blocks"][-1]["elements"][0]["text"] and "(stopping…)" in message["text"]


def test_slack_failures_are_logged_never_raised(slack: SlackSandbox, thread: str) -> None:
    clock = Clock()
    board = make(Run("run-7", CHANNEL, thread), {}, clock, Scheduled())
    slack.fail("chat.postMessage", "error", error="channel_not_found")
    board.show_plan(PLAN)  # nothing posted, nothing raised
    assert boards(slack, thread) == []
    slack.fail("*", "error", count=5, error="internal_error")
    clock.now += 5
    board.update("overview", "in_progress")
    board.close("Done.")


def test_a_held_back_change_is_shown_by_the_boards_own_timer(slack: SlackSandbox, thread: str) -> None:
    board = progress.board_for(Run("run-9", CHANNEL, thread), save_ts=lambda _run, _ts: None, interval=0.2)
    board.show_plan(PLAN)
    board.update("overview", "complete", "held back")  # within the interval of the plan's post
    deadline = time.monotonic() + 10
    while "✅ *Company overview* — held back" not in texts(boards(slack, thread)[0]):
        assert time.monotonic() < deadline, "the held-back change was never shown"
        time.sleep(0.05)
    assert len(slack.calls("chat.update")) == 1
