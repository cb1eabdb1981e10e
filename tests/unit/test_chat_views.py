"""`insightmesh chat`: the 👎 modal (/reason), the Home tab (/home) and the message shortcut
(/shortcut), against a stand-in of the dev server that opens and publishes views as InsightMesh does,
through the Slack sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient

from insightmesh.slack import modals
from tests.unit.test_chat_cli import FakeBot, chat_args, converse, sandbox  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(60)


class ViewsBot(FakeBot):
    """Opens the reason modal on 👎 (views.open), publishes the Home tab (views.publish)."""

    def handle(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, Any]:
        client = WebClient(base_url=self.sandbox.url, token="xoxb-fake-bot", timeout=5)
        if path == "/slack/events" and json.loads(body)["event"]["type"] == "app_home_opened":
            event = json.loads(body)["event"]
            self.received.append(("home", event))
            home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                            "text": "*Assistant* — ask away"}}]}
            return 200, b"", lambda: client.views_publish(user_id=event["user"], view=home)
        if path == "/slack/interactions":
            payload = json.loads(dict(parse_qsl(body.decode()))["payload"])
            if payload["type"] == "block_actions" and payload["actions"][0]["action_id"] == "feedback_down":
                self.received.append(("interaction", payload))
                reply = modals.ReplyRef(payload["channel"]["id"], payload["message"]["ts"],
                                        payload["message"].get("thread_ts"), payload["actions"][0]["value"])
                client.views_open(trigger_id=payload["trigger_id"], view=modals.feedback_view(reply))
                return 200, b"", None
            if payload["type"] in ("view_submission", "message_action"):
                self.received.append((payload["type"], payload))
                return 200, b"", None
        return super().handle(path, body, content_type)


@pytest.fixture
def bot(sandbox) -> Iterator[ViewsBot]:  # noqa: F811 - the fixture
    fake = ViewsBot(sandbox)
    fake.thread.start()
    yield fake
    fake.stop()


def test_thumbs_down_shows_the_modal_and_reason_submits_it(bot, sandbox):  # noqa: F811
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["hello", "/click feedback_down", "/reason outdated the May policy"])
    assert status == 0 and "[modal: What went wrong?" in output and "(sent: outdated — the May policy)" in output
    submitted = modals.parse_submission(next(p for kind, p in bot.received if kind == "view_submission"))
    assert submitted is not None and (submitted.reason, submitted.comment, submitted.user_id) == \
        ("outdated", "the May policy", "U0TESTER")
    assert submitted.reply.request_id == "down"  # the button's value: the reply's request


def test_reason_without_a_modal_or_with_an_unknown_reason_says_so(bot, sandbox):  # noqa: F811
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    _, output = converse(args, ["/reason wrong", "hello", "/click feedback_down", "/reason meh"])
    assert "no modal is open" in output and "usage: /reason wrong|outdated" in output


def test_home_prints_the_published_tab_and_shortcut_asks_about_your_message(bot, sandbox):  # noqa: F811
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    _, output = converse(args, ["/home", "is the launch on?", "/shortcut"])
    assert "home| *Assistant* — ask away" in output
    action = next(p for kind, p in bot.received if kind == "message_action")
    assert action["callback_id"] == "ask_about_message" and action["message"]["text"] == "is the launch on?"
