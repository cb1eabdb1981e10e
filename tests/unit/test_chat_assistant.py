"""`insightmesh chat --assistant` against the Slack sandbox and a small bot on loopback that answers
as the worker does in Slack's AI app container (greeting, suggested prompts, statuses, title)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from insightmesh_local import local_auth
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.slack_sandbox import assistant as sandbox_assistant
from tests.unit.test_chat_cli import SECRET, chat_args, converse

ANSWERED = {"event_type": "insightmesh_reply", "event_payload": {"status": "answered"}}


class AssistantBot:
    """/slack/events, answering the container's events and its thread's messages."""

    def __init__(self, sandbox: SlackSandbox) -> None:
        self.events: list[dict[str, Any]] = []
        client = WebClient(base_url=sandbox.url, token="xoxb-fake-bot", timeout=5)
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = SignatureVerifier(SECRET).is_valid_request(body, dict(self.headers.items()))
                if ok:  # recorded before the ack, so the chat's return sees every event it sent
                    bot.events.append(event := json.loads(body)["event"])
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if ok:
                    bot.answer(client, event)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def answer(self, client: WebClient, event: dict[str, Any]) -> None:
        if event["type"] == "assistant_thread_started":
            thread = event["assistant_thread"]
            channel, ts = thread["channel_id"], thread["thread_ts"]
            client.chat_postMessage(channel=channel, thread_ts=ts, text="Hi! Ask me anything.", metadata=ANSWERED)
            client.assistant_threads_setSuggestedPrompts(channel_id=channel, thread_ts=ts, title="Try asking",
                                                         prompts=[{"title": "What can you do?", "message": "help"}])
        elif event["type"] == "message":
            channel, ts = event["channel"], event["thread_ts"]
            client.assistant_threads_setTitle(channel_id=channel, thread_ts=ts, title=event["text"])
            for status in ("is thinking…", "Searching the knowledge base…"):
                client.assistant_threads_setStatus(channel_id=channel, thread_ts=ts, status=status)
            client.chat_postMessage(channel=channel, thread_ts=ts, text=f"About {event['text']}", metadata=ANSWERED)
            client.assistant_threads_setStatus(channel_id=channel, thread_ts=ts, status="")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    server = SlackSandbox(port=0).start()
    monkeypatch.setenv(local_auth.ENVIRONMENT_VARIABLE, server.secret)
    yield server
    server.stop()


@pytest.fixture
def bot(sandbox: SlackSandbox) -> Iterator[AssistantBot]:
    fake = AssistantBot(sandbox)
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_the_assistant_mode_opens_a_thread_lists_prompts_and_shows_statuses_and_the_title(
        bot: AssistantBot, sandbox: SlackSandbox) -> None:
    args = chat_args("--assistant", "--assistant-context", "C0SALES", port=bot.port, sandbox_url=sandbox.url)

    status, output = converse(args, ["/prompt 1", "/context C0ROADMAP", "/prompt 9"])

    assert status == 0
    assert "insightmesh> Hi! Ask me anything." in output
    assert "Try asking:" in output and "1. What can you do?  → help" in output
    assert "insightmesh> About help" in output
    assert "(status: is thinking… → Searching the knowledge base…)" in output and "(title: help)" in output
    assert "(now looking at C0ROADMAP)" in output and "usage: /prompt <1..1>" in output
    started, asked, changed = bot.events
    ts = started["assistant_thread"]["thread_ts"]
    assert started["type"] == "assistant_thread_started"
    assert started["assistant_thread"]["context"]["channel_id"] == "C0SALES"
    assert asked["type"] == "message" and asked["thread_ts"] == ts and asked["channel_type"] == "im"
    assert changed["type"] == "assistant_thread_context_changed"
    assert changed["assistant_thread"]["context"]["channel_id"] == "C0ROADMAP"
    [thread] = sandbox_assistant.describe(sandbox.state, "DU0TESTER", ts)
    assert thread["context_channel_id"] == "C0ROADMAP"


def test_without_assistant_the_container_commands_are_unknown(bot: AssistantBot, sandbox: SlackSandbox) -> None:
    status, output = converse(chat_args(port=bot.port, sandbox_url=sandbox.url), ["/prompt 1"])
    assert status == 0 and "unknown command /prompt" in output and bot.events == []
