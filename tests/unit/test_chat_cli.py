"""`insightmesh chat` against a loopback stand-in of the running system.

The stand-in plays the dev server's /slack/* routes: it refuses any request whose Slack
signature slack_sdk does not accept, acknowledges at once, and then answers as the worker
would, through the Slack Web API sandbox with slack_sdk's WebClient (a placeholder, a progress
edit, the final edit) or through the response_url. All servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from insightmesh_local import local_auth
from insightmesh_local.chat import add_parser, in_progress, run_chat, sandbox_url_for, unescape, user_for_email
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(60)

SECRET = "chat-test-signing-secret"
FEEDBACK = [{"type": "actions", "block_id": "feedback", "elements": [
    {"type": "button", "action_id": "feedback_up", "value": "up", "text": {"type": "plain_text", "text": "👍"}},
    {"type": "button", "action_id": "feedback_down", "value": "down", "text": {"type": "plain_text", "text": "👎"}},
]}]


class FakeBot:
    """/slack/events, /slack/commands and /slack/interactions, answering like InsightMesh."""

    def __init__(self, sandbox: SlackSandbox) -> None:
        self.sandbox = sandbox
        self.received: list[tuple[str, Any]] = []
        self.workers: list[threading.Thread] = []
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not SignatureVerifier(SECRET).is_valid_request(body, dict(self.headers.items())):
                    self._answer(401, b'{"error": "invalid signature"}')
                    return
                status, answer, work = bot.handle(self.path, body, self.headers.get("Content-Type", ""))
                self._answer(status, answer)
                if work is not None:  # acknowledge first, then work (as the queue decouples them)
                    thread = threading.Thread(target=work, daemon=True)
                    bot.workers.append(thread)
                    thread.start()

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def handle(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, Any]:
        client = WebClient(base_url=self.sandbox.url, token="xoxb-fake-bot", timeout=5)
        if path == "/slack/events":
            assert content_type == "application/json"
            payload = json.loads(body)
            event = payload["event"]
            self.received.append(("event", payload))
            if event["type"] == "message" and event["channel_type"] != "im":
                return 200, b"", None  # the message copy of a mention
            if "silent" in event["text"]:
                return 200, b"", None

            def work() -> None:
                thread_ts = event.get("thread_ts") or event["ts"]
                question = event["text"].replace("<@UBOTLOCAL>", "").strip()
                placeholder = client.chat_postMessage(
                    channel=event["channel"], thread_ts=thread_ts, text="Thinking…",
                    metadata={"event_type": "insightmesh_reply", "event_payload": {"status": "placeholder"}})
                time.sleep(1.5 if "slow" in question else 0.2)  # slow: longer than the chat's settle time
                client.chat_update(channel=event["channel"], ts=placeholder["ts"], text="Searching the wiki…")
                time.sleep(0.2)
                # Slack's text escapes &, < and > (as the worker's formatting does)
                shown = question.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                client.chat_update(channel=event["channel"], ts=placeholder["ts"], text=f"You asked: {shown}",
                                   blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                        "text": f"You asked: {shown}"}},
                                           *FEEDBACK],
                                   metadata={"event_type": "insightmesh_reply",
                                             "event_payload": {"status": "answered"}})

            return 200, b"", work
        form = dict(parse_qsl(body.decode()))
        if path == "/slack/commands":
            self.received.append(("command", form))

            def reply() -> None:
                WebhookClient(form["response_url"], timeout=5).send(text=f"Agents for {form['user_id']}: help, meddic")

            return 200, json.dumps({"response_type": "ephemeral", "text": "On it…"}).encode(), reply
        payload = json.loads(form["payload"])
        self.received.append(("interaction", payload))

        def thank() -> None:
            WebhookClient(payload["response_url"], timeout=5).send_dict(
                {"text": "Thanks for the feedback", "response_type": "ephemeral"})

        return 200, b"", thank

    def events(self) -> list[dict[str, Any]]:
        return [payload["event"] for kind, payload in self.received if kind == "event"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)
        for worker in self.workers:
            worker.join(timeout=5)


@pytest.fixture
def sandbox(monkeypatch) -> Iterator[SlackSandbox]:
    server = SlackSandbox(port=0).start()
    # The chat finds the run's secret as it does for `insightmesh dev`: $INSIGHTMESH_LOCAL_TOKEN.
    monkeypatch.setenv(local_auth.ENVIRONMENT_VARIABLE, server.secret)
    yield server
    server.stop()


@pytest.fixture
def bot(sandbox) -> Iterator[FakeBot]:
    fake = FakeBot(sandbox)
    fake.thread.start()
    yield fake
    fake.stop()


def chat_args(*extra: str, port: int, sandbox_url: str, secret: str = SECRET,
              timeout: float = 3) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="insightmesh")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["chat", "--port", str(port), "--sandbox-url", sandbox_url, "--signing-secret", secret,
                              "--user", "U0TESTER", "--settle", "0.6", "--timeout", str(timeout), *extra])


def converse(args: argparse.Namespace, lines: list[str]) -> tuple[int, str]:
    remaining = iter(lines)
    printed: list[str] = []

    def type_line(prompt: str) -> str:
        try:
            return next(remaining)
        except StopIteration:
            raise EOFError from None

    status = run_chat(args, input_fn=type_line, print_fn=printed.append)
    return status, "\n".join(printed)


def test_a_dm_conversation_shows_progress_and_the_final_reply_in_one_thread(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["what is our refund policy?", "and for enterprise?"])
    assert status == 0
    assert "insightmesh> You asked: what is our refund policy?" in output
    assert "insightmesh> You asked: and for enterprise?" in output
    # every progress update is shown once, in order, before the reply (even one between two polls)
    assert output.count("… Thinking…") == 2 and output.count("… Searching the wiki…") == 2
    assert output.index("… Thinking…") < output.index("… Searching the wiki…") < output.index("insightmesh> You")
    assert "/click feedback_up" in output
    first, second = bot.events()
    assert first["type"] == "message" and first["channel_type"] == "im" and first["channel"] == "DU0TESTER"
    assert "thread_ts" not in first and second["thread_ts"] == first["ts"]
    assert first["user"] == "U0TESTER"
    # the person's messages are in the sandbox too, so the thread reads as in Slack
    assert [m["text"] for m in sandbox.messages(channel="DU0TESTER") if not m["is_bot"]] == [
        "what is our refund policy?", "and for enterprise?"]


def test_a_placeholder_marked_in_progress_is_waited_for_beyond_the_settle_time(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["a slow question"])
    assert status == 0 and "insightmesh> You asked: a slow question" in output
    assert "insightmesh> Thinking…" not in output


def test_a_line_starting_with_the_mention_sends_an_app_mention(bot, sandbox):
    args = chat_args("--channel", "C0GENERAL", port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["@insightmesh who owns billing?"])
    assert status == 0 and "insightmesh> You asked: who owns billing?" in output
    kinds = [(event["type"], event.get("channel_type")) for event in bot.events()]
    assert ("app_mention", None) in kinds and ("message", "channel") in kinds  # Slack sends both
    mention = next(event for event in bot.events() if event["type"] == "app_mention")
    assert mention["text"] == "<@UBOTLOCAL> who owns billing?" and mention["channel"] == "C0GENERAL"


def test_new_thread_each_starts_every_line_in_its_own_thread(bot, sandbox):
    args = chat_args("--new-thread-each", port=bot.port, sandbox_url=sandbox.url)
    converse(args, ["one", "two"])
    assert all("thread_ts" not in event for event in bot.events())


def test_the_slash_command_prints_the_ack_and_the_response_url_reply(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["/insightmesh help"])
    assert status == 0
    assert "insightmesh (only you)> On it…" in output
    assert "insightmesh (only you)> Agents for U0TESTER: help, meddic" in output
    [(kind, form)] = bot.received
    assert kind == "command" and form["command"] == "/insightmesh" and form["text"] == "help"


def test_clicking_a_button_sends_block_actions(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["hello", "/click feedback_up"])
    assert status == 0 and "Thanks for the feedback" in output
    payload = next(payload for kind, payload in bot.received if kind == "interaction")
    assert payload["type"] == "block_actions" and payload["actions"][0]["action_id"] == "feedback_up"
    assert payload["actions"][0]["value"] == "up" and payload["user"]["id"] == "U0TESTER"
    assert payload["message"]["thread_ts"] == bot.events()[0]["ts"]


def test_a_wrong_signing_secret_is_reported(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url, secret="not-the-secret")
    status, output = converse(args, ["hello"])
    assert status == 0 and "answered 401" in output
    assert bot.received == []


def test_no_reply_ends_with_a_timeout_note(bot, sandbox):
    args = chat_args("--timeout", "1", port=bot.port, sandbox_url=sandbox.url)
    started = time.monotonic()
    status, output = converse(args, ["please stay silent"])
    assert status == 0 and "no reply from InsightMesh within 1s" in output
    assert time.monotonic() - started < 10


def test_a_missing_sandbox_or_dev_server_is_explained(sandbox):
    status, output = converse(chat_args(port=free_port(), sandbox_url=f"http://127.0.0.1:{free_port()}/api/"),
                              ["hi"])
    assert status == 1 and "no Slack sandbox" in output
    status, output = converse(chat_args(port=free_port(), sandbox_url=sandbox.url), ["hi"])
    assert status == 1 and "no InsightMesh dev server" in output


def test_in_progress_hints_come_from_message_metadata():
    assert in_progress({"metadata": {"event_type": "x", "event_payload": {"status": "placeholder"}}})
    assert in_progress({"metadata": {"event_type": "x", "event_payload": {"final": False}}})
    assert not in_progress({"metadata": {"event_type": "x", "event_payload": {"status": "answered"}}})
    assert not in_progress({"text": "plain"})


def test_defaults_follow_the_environment_and_the_dev_server_port(monkeypatch):
    monkeypatch.delenv("SLACK_API_URL", raising=False)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "from-the-environment")
    parser = argparse.ArgumentParser(prog="insightmesh")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["chat"])
    assert (args.port, args.signing_secret, args.sandbox_url, args.channel) == (3000, "from-the-environment", None,
                                                                              None)
    assert sandbox_url_for(3000) == "http://127.0.0.1:3001/api/"
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:4001/api/")
    parser = argparse.ArgumentParser(prog="insightmesh")
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["chat"]).sandbox_url == "http://127.0.0.1:4001/api/"


def test_without_the_runs_secret_the_chat_says_where_it_looked(bot, sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv(local_auth.ENVIRONMENT_VARIABLE)
    args = chat_args("--data-dir", str(tmp_path), port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["hello?"])
    assert status == 1
    assert "no valid secret" in output and local_auth.TOKEN_FILE in output
    assert sandbox.messages() == []  # nothing was posted in your name


def test_the_chat_reads_the_secret_from_the_data_dir(bot, sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv(local_auth.ENVIRONMENT_VARIABLE)
    local_auth.write_secret(tmp_path, sandbox.secret)
    args = chat_args("--data-dir", str(tmp_path), port=bot.port, sandbox_url=sandbox.url)
    status, _output = converse(args, ["what is our refund policy?"])
    assert status == 0
    assert any(m["text"] == "what is our refund policy?" for m in sandbox.messages())


def test_replies_show_slacks_escapes_as_the_characters(bot, sandbox):
    args = chat_args(port=bot.port, sandbox_url=sandbox.url)
    status, output = converse(args, ["is 2 < 3 && 5 > 4?"])
    assert status == 0
    assert "insightmesh> You asked: is 2 < 3 && 5 > 4?" in output
    assert "&lt;" not in output and "&gt;" not in output and "&amp;" not in output
    assert unescape("&amp;lt; stays &lt;") == "&lt; stays <"  # one level: &amp;lt; is the text "&lt;"


def test_the_chat_user_and_its_email_are_said_and_email_chooses_them(bot, sandbox):
    status, output = converse(chat_args(port=bot.port, sandbox_url=sandbox.url), ["hello"])
    assert status == 0 and "as U0TESTER <user-U0TESTER@example.com>" in output

    parser = argparse.ArgumentParser(prog="insightmesh")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["chat", "--port", str(bot.port), "--sandbox-url", sandbox.url, "--signing-secret",
                              SECRET, "--email", "Alice@Example.com", "--settle", "0.6", "--timeout", "10"])
    status, output = converse(args, ["who am I?"])
    user = user_for_email("alice@example.com")
    assert status == 0 and f"as {user} <alice@example.com>" in output
    event = bot.events()[-1]
    assert event["user"] == user and event["channel"] == f"D{user}"
    # the worker asks Slack who sent it: the sandbox's profile carries the address
    profile = WebClient(base_url=sandbox.url, token="xoxb-any", timeout=5).users_info(user=user)["user"]["profile"]
    assert profile["email"] == "alice@example.com"
    with pytest.raises(SystemExit):
        parser.parse_args(["chat", "--email", "not-an-email"])
