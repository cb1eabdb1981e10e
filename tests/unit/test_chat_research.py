"""`insightmesh chat` and research runs (insightmesh_local.chat_research): the board's updates shown
as progress, then the report; /stop presses the board's Stop button (a signed block_actions).

The stand-in of the running system answers "profile ..." as the worker does ("Researching …") and
then keeps a research board with the layer's own ``research.progress`` against the Slack sandbox,
as the research function does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient

from insightmesh.research import progress
from insightmesh.research.base import PlanTask
from insightmesh_local.chat_research import board_lines
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.research_fixtures import Run
from tests.slack_fixtures import pointed_sandbox
from tests.unit.test_chat_cli import FakeBot, chat_args, converse

pytestmark = pytest.mark.timeout(60)


class ResearchBot(FakeBot):
    """Answers "profile X" at once, then runs a board: all the way ("profile"), or until stopped ("hold")."""

    def __init__(self, sandbox: SlackSandbox) -> None:
        super().__init__(sandbox)
        self.stopped = threading.Event()
        self.board: progress.SlackProgressBoard | None = None

    def handle(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, Any]:
        client = WebClient(base_url=self.sandbox.url, token="xoxb-fake-bot", timeout=5)
        if path != "/slack/events":
            payload = json.loads(dict(parse_qsl(body.decode()))["payload"])
            self.received.append(("interaction", payload))

            def stop() -> None:
                assert self.board is not None
                client.chat_postEphemeral(channel=payload["channel"]["id"], user=payload["user"]["id"],
                                          thread_ts=payload["message"].get("thread_ts"),
                                          text="Stopping the research — it ends at its next step.")
                self.board.stopping(payload["user"]["id"])
                self.stopped.set()

            return 200, b"", stop
        event = json.loads(body)["event"]
        self.received.append(("event", event))

        def work() -> None:
            thread_ts = event.get("thread_ts") or event["ts"]
            client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts,
                                    text="Researching *Acme Corp*… I'll post the report here (say *stop* to cancel).")
            time.sleep(1.0)  # the research function starts after the answer
            self.board = board = progress.board_for(Run("run-1", event["channel"], thread_ts),
                                                    save_ts=lambda _run, _ts: None, interval=0.0)
            board.show_plan([PlanTask("plan", "Plan the research", "complete"),
                             PlanTask("overview", "Company overview"), PlanTask("report", "Write the report")])
            if "hold" in event["text"]:
                self.stopped.wait(20)
                time.sleep(0.3)
                board.close("Stopped: a partial report follows.")
            else:
                for task, status, detail in [("overview", "in_progress", "searching the web"),
                                             ("overview", "complete", "3 sources"), ("report", "complete", "")]:
                    time.sleep(0.3)
                    board.update(task, status, detail)
                board.close("Done: the report is below.")
            client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, text="Acme Corp makes anvils [1].")

        return 200, b"", work


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    from insightmesh_local import local_auth

    with pointed_sandbox(monkeypatch, "xoxb-fake-bot") as server:  # the layer's board posts to it too
        monkeypatch.setenv(local_auth.ENVIRONMENT_VARIABLE, server.secret)
        progress.reset_for_tests()
        yield server
    progress.reset_for_tests()


@pytest.fixture
def bot(sandbox: SlackSandbox) -> Iterator[ResearchBot]:
    fake = ResearchBot(sandbox)
    fake.thread.start()
    yield fake
    fake.stop()


def test_the_chat_follows_the_board_then_shows_the_report(bot: ResearchBot, sandbox: SlackSandbox) -> None:
    status, output = converse(chat_args(port=bot.port, sandbox_url=sandbox.url), ["profile Acme Corp"])
    assert status == 0
    assert "insightmesh> Researching *Acme Corp*…" in output
    for line in ["… Researching Acme Corp", "… ⬜ Company overview", "… ⏳ Company overview — searching the web",
                 "… ✅ Company overview — 3 sources", "… ✅ Write the report", "… Done: the report is below."]:
        assert line in output
    assert output.index("⏳ Company overview") < output.index("✅ Company overview") < output.index("Done:")
    assert "insightmesh> Acme Corp makes anvils [1]." in output
    assert output.index("Done:") < output.index("anvils")


def test_slash_stop_presses_the_boards_stop_button(bot: ResearchBot, sandbox: SlackSandbox) -> None:
    args = chat_args("--follow-research", "2", port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["profile hold Acme Corp", "/stop", "/progress"])
    assert status == 0
    assert "the research was still running after 2s" in output
    [payload] = [payload for kind, payload in bot.received if kind == "interaction"]
    assert payload["type"] == "block_actions" and payload["actions"][0]["action_id"] == progress.STOP_ACTION
    assert payload["actions"][0]["value"] == "run-1" and payload["user"]["id"] == "U0TESTER"
    assert "insightmesh (only you)> Stopping the research — it ends at its next step." in output
    assert "… Stopped: a partial report follows." in output
    assert "insightmesh> Acme Corp makes anvils [1]." in output


def test_stop_without_a_board_says_so(bot: ResearchBot, sandbox: SlackSandbox) -> None:
    status, output = converse(chat_args(port=bot.port, sandbox_url=sandbox.url), ["/stop", "/progress"])
    assert status == 0
    assert "(no research with a Stop button in this thread)" in output and "(no research board" in output


def test_board_lines_read_as_slack_shows_them() -> None:
    board = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Researching *Acme*"}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": "⏳ *People* — reading"}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Stopping…"}]},
                        {"type": "actions", "elements": []}]}
    assert board_lines(board) == ["Researching Acme", "⏳ People — reading", "Stopping…"]
