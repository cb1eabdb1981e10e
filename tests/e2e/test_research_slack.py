"""Research in Slack end to end, beyond tests/e2e/test_research.py: the board's **Stop** button and
meddic's analysis as a PDF — `insightmesh dev` with the Slack sandbox, the offline LLM, the web
stand-in, and signed Slack payloads on /slack/events and /slack/interactions.

The Stop button (a signed ``block_actions`` built from the board the sandbox holds) is refused,
privately, to someone who did not ask for the research, and stops the run for whoever did: the
board says "Stopping…" and loses its button, and the run ends ``cancelled``. The run is held in its
researchers while the buttons are pressed by answering the first searches 429 with Retry-After
(the web_search tool waits and retries). meddic's final analysis arrives in the thread as a PDF too.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import DevServer, post_event, running
from tests.helpers import wait_for
from tests.standins.web_server import WebServer

SECRET = "e2e-research-slack-secret"
BOT_TOKEN = "xoxb-e2e-research-slack"
ADMIN_EMAIL = "research-slack-admin@corp.example"
ALICE, BOB = "U0ALICE2", "U0BOB2"
BOARD_EVENT = "insightmesh_research_progress"  # research.progress.EVENT_TYPE
STOP_ACTION = "research_stop"  # research.progress.STOP_ACTION
FINISHED = ("succeeded", "failed", "cancelled", "capped")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1798000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    server = WebServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dev(sandbox: Any, web: WebServer, dev_logs: Any) -> Iterator[DevServer]:
    sandbox.add_users({"id": ALICE, "real_name": "Alice Asker", "email": "alice2@corp.example"},
                      {"id": BOB, "real_name": "Bob Bystander", "email": "bob2@corp.example"})
    env = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": sandbox.url,
           "WEB_SEARCH_PROVIDER": "searxng", "WEB_SEARCH_URL": web.url, "SEC_EDGAR_URL": web.url,
           "SEC_USER_AGENT": "InsightMesh e2e research-slack@corp.example",
           "READ_URL_ALLOW_HOSTS": f"127.0.0.1:{web.port}"}
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def admin(dev: DevServer) -> Iterator[httpx.Client]:
    made = dev.cli("token", "create", "--email", ADMIN_EMAIL, "--admin")
    assert made.returncode == 0, made.stderr
    with dev.http(headers={"Authorization": f"Bearer {made.stdout.strip()}"}) as client:
        yield client


def mention(http: httpx.Client, text: str, *, channel: str, user: str = ALICE) -> str:
    ts = new_ts()
    response = post_event(http, SECRET, slack.app_mention_event(user, channel, text, ts))
    assert response.status_code == 200, response.text
    return ts


def say_in_thread(http: httpx.Client, text: str, thread_ts: str, *, channel: str, user: str = ALICE) -> None:
    response = post_event(http, SECRET, slack.message_event(user, channel, text, new_ts(), thread_ts,
                                                            channel_type="channel"))
    assert response.status_code == 200, response.text


def bot_messages(sandbox: Any, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(channel=channel, thread_ts=thread_ts)
            if m.get("is_bot") and not m.get("ephemeral") and not m.get("deleted")]


def final_reply(sandbox: Any, channel: str, thread_ts: str, words: str, timeout: float = 120.0) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for message in bot_messages(sandbox, channel, thread_ts):
            status = ((message.get("metadata") or {}).get("event_payload") or {}).get("status")
            if not message.get("streaming") and status == "answered" and words in message["text"]:
                return message
        return None
    return wait_for(found, timeout=timeout, interval=0.2, what=f"a reply with {words!r}")


def board(sandbox: Any, channel: str, thread_ts: str) -> dict[str, Any] | None:
    return next((m for m in bot_messages(sandbox, channel, thread_ts)
                 if (m.get("metadata") or {}).get("event_type") == BOARD_EVENT), None)


def stop_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [element for block in message.get("blocks") or [] if block.get("type") == "actions"
            for element in block.get("elements") or [] if element.get("action_id") == STOP_ACTION]


def press_stop(http: httpx.Client, sandbox: Any, shown: dict[str, Any], *, channel: str, thread_ts: str,
               user: str) -> None:
    [button] = stop_buttons(shown)
    body = slack.block_actions_body(user_id=user, channel_id=channel, message_ts=shown["ts"], thread_ts=thread_ts,
                                    action_id=STOP_ACTION, value=button["value"],
                                    response_url=sandbox.response_url(channel=channel, user=user),
                                    message_blocks=shown["blocks"], message_text=shown["text"])
    response = http.post("/slack/interactions", content=body,
                         headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
    assert response.status_code == 200, response.text


def ephemeral_to(sandbox: Any, channel: str, user: str, words: str) -> dict[str, Any]:
    return wait_for(lambda: next((m for m in sandbox.messages(channel=channel) if m.get("ephemeral")
                                  and m.get("ephemeral_for") == user and words in m["text"]), None),
                    timeout=90, interval=0.2, what=f"{words!r} to {user}")


def run_of_thread(admin: httpx.Client, thread_ts: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        response = admin.get("/api/research-runs", params={"limit": 100})
        assert response.status_code == 200, response.text
        return next((run for run in response.json()["items"] if run["thread_ts"] == thread_ts), None)
    return wait_for(found, timeout=90, interval=0.3, what="the thread's research run")


def test_the_stop_button_is_refused_to_others_and_stops_the_run_for_the_asker(
        dev: DevServer, sandbox: Any, web: WebServer, http: httpx.Client, admin: httpx.Client) -> None:
    channel = "C0RBUTTON"
    web.fail("/search", 429, count=4, retry_after="5")  # holds the researchers while the buttons are pressed
    try:
        thread = mention(http, "profile Initech", channel=channel)
        final_reply(sandbox, channel, thread, "Researching")
        shown = wait_for(lambda: (b := board(sandbox, channel, thread)) and stop_buttons(b) and b,
                         timeout=120, interval=0.2, what="the board with its Stop button")
        run_id = run_of_thread(admin, thread)["run_id"]
        assert stop_buttons(shown)[0]["value"] == run_id

        press_stop(http, sandbox, shown, channel=channel, thread_ts=thread, user=BOB)
        ephemeral_to(sandbox, channel, BOB, "Only the person who asked for this research, or an admin")
        assert admin.get(f"/api/research-runs/{run_id}").json()["cancel_requested"] is False

        press_stop(http, sandbox, shown, channel=channel, thread_ts=thread, user=ALICE)
        ephemeral_to(sandbox, channel, ALICE, "Stopping the research")
        run = wait_for(lambda: (r := admin.get(f"/api/research-runs/{run_id}").json())["status"] in FINISHED and r,
                       timeout=300, interval=0.5, what="the run to end")
    finally:
        web.reset()
    assert run["status"] == "cancelled" and run["cancel_requested"] is True, run
    ended = board(sandbox, channel, thread)
    assert ended is not None and stop_buttons(ended) == []
    assert any("Stopping" in str(edit.get("blocks")) for edit in ended["edits"])  # shown while it stopped


def test_meddic_delivers_its_final_analysis_as_a_pdf_too(
        dev: DevServer, sandbox: Any, http: httpx.Client) -> None:
    channel = "C0RMEDDIC"
    thread = mention(http, "meddic Umbrella Corp renewal. They want to save 20 hours a week. "
                           "The CFO signs off on the budget.", channel=channel)
    final_reply(sandbox, channel, thread, "MEDDPICC")
    say_in_thread(http, "analyze", thread, channel=channel)
    final_reply(sandbox, channel, thread, "MEDDPICC analysis")
    shared = wait_for(lambda: [m for m in bot_messages(sandbox, channel, thread) if m.get("files")],
                      timeout=300, interval=0.5, what="the analysis PDF in the thread")
    [file] = shared[0]["files"]
    response = httpx.get(file["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=20)
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "MEDDPICC analysis" in text and "Umbrella Corp renewal" in text
    assert "Economic buyer" in text and "Call notes" in text
