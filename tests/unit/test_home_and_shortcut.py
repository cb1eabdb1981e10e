"""The Home tab's view and event, the message shortcut's payload and the question it asks."""

from __future__ import annotations

import pytest

from insightmesh.conversation import app_home, shortcut
from insightmesh.conversation.requests import RequestKind
from insightmesh.slack import home, shortcuts
from insightmesh.slack.events import MalformedPayload

AGENTS = [home.HomeAgent("assistant", "Assistant", "Answers from the knowledge base"),
          home.HomeAgent("meddic", "MEDDIC", "Qualifies deals", ("qualify",))]


def test_the_home_tab_lists_each_agent_with_how_to_call_it_and_the_console_only_for_admins():
    member = home.home_view(AGENTS, bot_user_id="UBOT", console_url=None)
    text = " ".join(b["text"]["text"] for b in member["blocks"] if b["type"] == "section")
    assert member["type"] == "home" and len(member["blocks"]) <= 100
    assert "`/insightmesh meddic …` or <@UBOT> meddic …" in text and "`qualify`" in text and "console" not in text
    admin = home.home_view(AGENTS, bot_user_id="UBOT", console_url="https://im.example/console")
    assert "<https://im.example/console|open the console>" in str(admin["blocks"])
    assert "No agents are available" in str(home.home_view([], bot_user_id="UBOT", console_url=None))


def test_only_the_home_tab_is_published():
    event = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home", "event_ts": "1.2"}
    opened = home.home_opened({"team_id": "T1", "event_id": "Ev1", "event": event})
    assert opened == home.HomeOpened("T1", "U1", "D1", "Ev1")
    assert home.home_opened({"team_id": "T1", "event": {**event, "tab": "messages"}}) is None
    with pytest.raises(MalformedPayload):
        home.home_opened({"event": event})
    request = app_home.home_request(opened, correlation_id="c")
    assert request.kind is RequestKind.HOME and request.request_id == "home:T1:U1:Ev1"


def test_the_shortcut_asks_about_the_message_in_its_thread():
    payload = {"type": "message_action", "callback_id": shortcuts.CALLBACK_ID, "action_ts": "9.9",
               "team": {"id": "T1"}, "user": {"id": "U1"}, "channel": {"id": "C1"},
               "message": {"user": "U2", "ts": "5.5", "thread_ts": "4.4", "text": "line one\nline two?"}}
    ask = shortcuts.message_ask(payload)
    assert ask is not None and (ask.message_ts, ask.thread_ts, ask.author) == ("5.5", "4.4", "U2")
    request = shortcut.shortcut_request(ask, correlation_id="c")
    assert request.kind is RequestKind.COMMAND and request.thread_ts == "4.4" and request.ts == "5.5"
    assert "> line one\n> line two?" in request.text and "<@U2>" in request.text
    top_level = shortcuts.message_ask({**payload, "message": {"ts": "5.5", "text": "hi"}})
    assert top_level is not None and top_level.thread_ts == "5.5"  # a new thread under the message
    assert shortcuts.message_ask({**payload, "callback_id": "someone_elses"}) is None
    with pytest.raises(MalformedPayload):
        shortcuts.message_ask({**payload, "channel": {}})
