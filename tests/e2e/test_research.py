"""The `profile` research agent end to end (issue 15): `insightmesh dev` with the Slack sandbox, the
offline LLM (its deterministic tool plan) and the web stand-in (tests/standins/web_server.py: a
SearXNG-shaped search API, pages, a PDF and EDGAR, counting every call) on loopback.

"profile Acme Corp" in a thread is answered at once by the worker; the durable research function
(run by the local runtime with its checkpoint log) posts the plan as a board and edits it as steps
go, and delivers a PDF with the summary in the thread. The run is listed by the admin API and
shown to the asker. Killing the research function's worker mid-run resumes it from its log
without running the completed researchers again (the web stand-in's call counts stay put);
"stop" in the thread, or the board's Stop button pressed by the asker, cancels a run; the token
cap (``RESEARCH_MAX_TOKENS``) ends one with a partial report that says so.

Where a test needs the run to be at a given point when it acts, it holds the run there through a
stand-in rather than racing it: a Slack upload call answered late (the sandbox's ``delay``), or
the researchers' searches and page reads held at a gate of the web stand-in (:class:`GatedWeb`)
until the test has acted. Every wait is bounded; nothing here asserts a duration.
"""

from __future__ import annotations

import io
import itertools
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import DevServer, post_event, running
from tests.helpers import wait_for
from tests.standins.web_server import WebServer

SECRET = "e2e-research-secret"
BOT_TOKEN = "xoxb-e2e-research"
ADMIN_EMAIL = "research-admin@corp.example"
ALICE, ALICE_EMAIL = "U0ALICE", "alice@corp.example"
BOB, BOB_EMAIL = "U0BOB", "bob@corp.example"
BOARD_EVENT = "insightmesh_research_progress"  # research.progress.EVENT_TYPE: the board's metadata
RESEARCHERS = ("overview", "people", "financials", "news", "competitors", "technology")  # the default plan
FINISHED = ("succeeded", "failed", "cancelled", "capped")
# The cap test's server: RESEARCH_MAX_TOKENS is read by the worker when it records a run, so one
# server cannot hold two caps. With the offline LLM a profile's plan takes ~120 tokens and its six
# researchers 2,000-3,500 each: the plan fits well under this cap, the researchers together pass it well
# (each still has a budget of ~1,000 tokens, enough to search and read), so the run ends capped
# with their findings and sources before the synthesis.
CAP_TOKENS = 6000
RUN_TIMEOUT = 300.0  # a bound for a whole run on a loaded machine (offline: seconds when quiet)
GATE_SECONDS = 8.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1797000000 + next(_ts)}.{next(_ts):06d}"


# -- the servers ---------------------------------------------------------------------------------------

class GatedWeb(WebServer):
    """The web stand-in with a gate a test may close: a search or a page then waits (each at most
    :data:`GATE_SECONDS`, under web_search's 10 s and read_url's 15 s timeouts) until the gate
    opens, so a run is held in its researchers while the test acts, without a race."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0  # requests that arrived while the gate was closed
        self._held_lock = threading.Lock()

    def count(self, path: str, request: dict[str, str] | None = None) -> None:
        if path.startswith(("/search", "/pages/")) and not self.gate.is_set():
            with self._held_lock:
                self.held += 1
            self.gate.wait(GATE_SECONDS)
        super().count(path, request)


@pytest.fixture(scope="module")
def web() -> Iterator[GatedWeb]:
    server = GatedWeb().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox(sandbox):
    sandbox.add_users({"id": ALICE, "real_name": "Alice Analyst", "email": ALICE_EMAIL},
                      {"id": BOB, "real_name": "Bob Bystander", "email": BOB_EMAIL})
    return sandbox


def research_env(sandbox: Any, web: WebServer, **extra: str) -> dict[str, str]:
    """What points the tools at the web stand-in (as its ``main`` prints) and Slack at the sandbox."""
    return {
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": sandbox.url,
        "WEB_SEARCH_PROVIDER": "searxng", "WEB_SEARCH_URL": web.url, "SEC_EDGAR_URL": web.url,
        "SEC_USER_AGENT": "InsightMesh e2e research-e2e@corp.example",
        "READ_URL_ALLOW_HOSTS": f"127.0.0.1:{web.port}",
        **extra,
    }


@pytest.fixture(scope="module")
def dev(sandbox, web, dev_logs):
    with running(env=research_env(sandbox, web), log_dir=dev_logs) as server:
        yield server


def _client(dev: DevServer, email: str, *, admin: bool = False) -> httpx.Client:
    made = dev.cli("token", "create", "--email", email, *(["--admin"] if admin else []))
    assert made.returncode == 0, made.stderr
    return dev.http(headers={"Authorization": f"Bearer {made.stdout.strip()}"})


@pytest.fixture(scope="module")
def admin(dev) -> Iterator[httpx.Client]:
    with _client(dev, ADMIN_EMAIL, admin=True) as client:
        yield client


# -- Slack and the API ----------------------------------------------------------------------------------

def mention(http: httpx.Client, text: str, *, channel: str, user: str = ALICE) -> str:
    """``@InsightMesh <text>`` at the top of ``channel``: the new thread's ts."""
    ts = new_ts()
    response = post_event(http, SECRET, slack.app_mention_event(user, channel, text, ts))
    assert response.status_code == 200, response.text
    return ts


def say_in_thread(http: httpx.Client, text: str, thread_ts: str, *, channel: str, user: str = ALICE) -> None:
    event = slack.message_event(user, channel, text, new_ts(), thread_ts, channel_type="channel")
    response = post_event(http, SECRET, event)
    assert response.status_code == 200, response.text


def bot_messages(sandbox: Any, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(channel=channel, thread_ts=thread_ts)
            if m.get("is_bot") and not m.get("ephemeral") and not m.get("deleted")]


def worker_reply(sandbox: Any, channel: str, thread_ts: str, words: str, timeout: float = 90.0) -> dict[str, Any]:
    """The worker's final reply containing ``words`` (not a placeholder, not a stream still growing)."""
    def found() -> dict[str, Any] | None:
        for message in bot_messages(sandbox, channel, thread_ts):
            status = ((message.get("metadata") or {}).get("event_payload") or {}).get("status")
            final = not message.get("streaming") and (status == "answered" if status else "Thinking" not in
                                                      message["text"])
            if final and words in message["text"]:
                return message
        return None
    return wait_for(found, timeout=timeout, interval=0.2, what=f"a reply with {words!r} in {thread_ts}")


def board(sandbox: Any, channel: str, thread_ts: str) -> dict[str, Any] | None:
    """The run's progress board: the bot message whose metadata is the board's."""
    for message in bot_messages(sandbox, channel, thread_ts):
        if (message.get("metadata") or {}).get("event_type") == BOARD_EVENT:
            return message
    return None


def board_task(sandbox: Any, channel: str, thread_ts: str, task_id: str) -> str:
    """The board's line for one task (✅ done, ⏳ running, ⬜ to do, ⚠️ failed), or ''."""
    shown = board(sandbox, channel, thread_ts)
    for block in (shown or {}).get("blocks") or []:
        if block.get("block_id") == f"task_{task_id}":
            return str(block["text"]["text"])
    return ""


def shared_files(sandbox: Any, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The file-share messages in the thread (files.completeUploadExternal)."""
    return [m for m in bot_messages(sandbox, channel, thread_ts) if m.get("files")]


def download(file: dict[str, Any]) -> bytes:
    """A shared file's bytes from its url_private, with the bot token, as Slack serves it."""
    response = httpx.get(file["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=20)
    assert response.status_code == 200, response.text
    return response.content


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


def run_of_thread(admin: httpx.Client, thread_ts: str, timeout: float = 90.0) -> dict[str, Any]:
    """The research run recorded for the thread (GET /api/research-runs, newest first)."""
    def found() -> dict[str, Any] | None:
        response = admin.get("/api/research-runs", params={"limit": 100})
        assert response.status_code == 200, response.text
        return next((run for run in response.json()["items"] if run["thread_ts"] == thread_ts), None)
    return wait_for(found, timeout=timeout, interval=0.3, what=f"the research run of thread {thread_ts}")


def get_run(admin: httpx.Client, run_id: str) -> dict[str, Any]:
    response = admin.get(f"/api/research-runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def finished(admin: httpx.Client, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = get_run(admin, run_id)
        return run if run["status"] in FINISHED else None
    return wait_for(done, timeout=timeout, interval=0.5, what=f"research run {run_id} to end")


def steps(run: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in run["steps"]}


def web_urls(text: str, web: WebServer) -> set[str]:
    """The stand-in's page and file URLs in ``text`` (the PDF's text may break a URL at a line end:
    whitespace is removed first, so a URL is matched whole)."""
    joined = re.sub(r"\s+", "", text)
    return set(re.findall(re.escape(web.url) + r"/(?:pages/[a-z0-9-]+|files/[a-z0-9.-]+\.pdf)", joined))


def local_control(dev: DevServer, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """The runtime's /_local/* control surface, with the run's secret."""
    with dev.http(headers={"X-InsightMesh-Local-Token": dev.secret}) as client:
        return client.request(method, f"/_local/{path}", json=body)


# -- the main path ----------------------------------------------------------------------------------------

def test_profile_acme_corp_posts_a_plan_progress_a_cited_summary_and_a_pdf(dev, sandbox, web, http, admin):
    channel = "C0RESEARCH"
    # The board edits at most once a second, and with the offline LLM a run can be over in about as
    # long: the researchers are held (the web gate) until the board shows them working, and the
    # report's upload is answered 2 s late, so the run's progress spans several edits on any machine.
    web.gate.clear()
    try:
        thread = mention(http, "profile Acme Corp", channel=channel)

        # The worker answers at once; the research goes on in the research function.
        reply = worker_reply(sandbox, channel, thread, "Researching")
        assert "Acme Corp" in reply["text"] and "stop" in reply["text"]
        run = run_of_thread(admin, thread)
        assert run["kind"] == "profile" and run["subject"] == "Acme Corp"
        wait_for(lambda: {"⏳", "✅"} & set(board_task(sandbox, channel, thread, RESEARCHERS[0])),
                 timeout=RUN_TIMEOUT, interval=0.1, what="the board showing the researchers at work")
        sandbox.fail("files.getUploadURLExternal", "delay", count=1, delay=2.0)
    finally:
        web.gate.set()
    run = finished(admin, run["run_id"])
    assert run["status"] == "succeeded", run

    # The board: the plan (the six researchers and the report's steps), then at least 3 updates.
    shown = board(sandbox, channel, thread)
    assert shown is not None, bot_messages(sandbox, channel, thread)
    versions = [shown["blocks"]] if not shown["edits"] else [edit["blocks"] for edit in shown["edits"]]
    planned = [i for i, blocks in enumerate(versions)
               if {f"task_{name}" for name in RESEARCHERS} <= {b.get("block_id") for b in blocks or []}]
    assert planned, "the plan was never shown on the board"
    assert len(versions) - planned[0] - 1 >= 3, f"{len(versions) - planned[0] - 1} updates after the plan"
    final_text = " ".join(str(b.get("text", {}).get("text", "")) for b in shown["blocks"])
    assert final_text.count("✅") >= len(RESEARCHERS) and "Done" in shown["text"] + final_text
    assert not any(b.get("type") == "actions" for b in shown["blocks"])  # no Stop button once closed

    # One PDF in the thread, shared with the summary, which cites the stand-in's pages.
    files = shared_files(sandbox, channel, thread)
    assert len(files) == 1 and len(files[0]["files"]) == 1, files
    share, file = files[0], files[0]["files"][0]
    assert reply["updated_seq"] < share["seq"]  # the answer was final before the report came
    assert file["name"].endswith(".pdf") and "acme" in file["name"].lower()
    assert re.search(r"\[\d+\]", share["text"]), share["text"]
    cited = web_urls(share["text"], web)
    assert cited, f"the summary cites no web source: {share['text']!r}"
    text = pdf_text(download(file))
    assert "Acme" in text and "Sources" in text
    in_pdf = web_urls(text, web)
    assert len(in_pdf) >= 2 and cited <= in_pdf, (cited, in_pdf)

    # The run as the admin API and the asker see it.
    assert run["report_file_id"] == file["id"]
    assert run["tokens_used"] > 0 and run["llm_calls"] >= len(RESEARCHERS) + 3  # plan, researchers, synthesis, review
    done = steps(run)
    assert all(done.get(name) == "complete" for name in ("plan", *RESEARCHERS, "synthesis", "review", "report")), done
    item = next(item for item in admin.get("/api/research-runs", params={"status": "succeeded"}).json()["items"]
                if item["run_id"] == run["run_id"])  # the listing shows what the run's own page shows
    assert (item["status"], item["report_file_id"], item["tokens_used"]) == ("succeeded", file["id"],
                                                                             run["tokens_used"])
    assert steps(item) == done
    with _client(dev, ALICE_EMAIL) as alice, _client(dev, BOB_EMAIL) as bob:
        mine = alice.get("/api/me/research-runs")
        assert mine.status_code == 200, mine.text
        assert run["run_id"] in {item["run_id"] for item in mine.json()["items"]}
        assert alice.get(f"/api/research-runs/{run['run_id']}").status_code == 200
        assert bob.get(f"/api/research-runs/{run['run_id']}").status_code == 404  # not his to see
        assert run["run_id"] not in {item["run_id"] for item in bob.get("/api/me/research-runs").json()["items"]}
        assert bob.get("/api/research-runs").status_code == 403  # admins only


# -- a crash mid-run ----------------------------------------------------------------------------------------

def test_a_killed_worker_resumes_the_run_without_running_completed_researchers_again(dev, sandbox, web, http, admin):
    channel = "C0RKILL"
    log_start = len(dev.output())
    uploads_before = len(sandbox.calls("files.getUploadURLExternal"))
    # Hold the run in its report step (after the researchers, the synthesis and the review): the
    # first upload URL is answered 8 s late (the call is recorded first), within the client's 10 s.
    sandbox.fail("files.getUploadURLExternal", "delay", count=1, delay=8.0)
    thread = mention(http, "profile Acme Corp", channel=channel)
    run_id = run_of_thread(admin, thread)["run_id"]
    wait_for(lambda: len(sandbox.calls("files.getUploadURLExternal")) > uploads_before, timeout=RUN_TIMEOUT,
             interval=0.1, what="the report step's upload")

    # The moment, from the run's steps: every researcher done, the report being delivered.
    before = get_run(admin, run_id)
    assert before["status"] == "running", before
    done = steps(before)
    assert all(done.get(name) == "complete" for name in RESEARCHERS), done
    assert done.get("report") == "in_progress", done
    web_before = web.calls_snapshot()
    assert web_before.get("/search", 0) >= len(RESEARCHERS)

    killed = local_control(dev, "POST", "durable/kill", {"function": "ResearchFunction"})
    assert killed.status_code == 200, killed.text
    assert killed.json()["killed"]["ResearchFunction"], killed.json()  # a worker was running it

    after = finished(admin, run_id)
    assert after["status"] == "succeeded", after
    # Replayed from the log: no search, page, PDF or EDGAR call and no LLM call was made again.
    assert web.calls_snapshot() == web_before
    assert (after["llm_calls"], after["tokens_used"]) == (before["llm_calls"], before["tokens_used"])
    # The run's item says succeeded in the report step; the execution ends when that step's result is
    # checkpointed, a moment later.
    wait_for(lambda: local_control(dev, "GET", f"durable/executions/{run_id}").json().get("status") == "SUCCEEDED",
             timeout=60, interval=0.5, what=f"durable execution {run_id} to succeed")
    # The runtime's log: the invocation that was running died with the worker, the next one finished.
    outcomes = re.findall(r"ResearchFunction trigger=durable execution .*?outcome=(\S+)", dev.output()[log_start:])
    assert "Runtime.ExitError" in outcomes and outcomes[-1] == "ok", outcomes
    files = shared_files(sandbox, channel, thread)
    assert len(files) == 1 and after["report_file_id"] == files[0]["files"][0]["id"], files
    assert "Acme" in pdf_text(download(files[0]["files"][0]))


# -- stop -----------------------------------------------------------------------------------------------------

def test_stop_in_the_thread_cancels_the_run(dev, sandbox, web, http, admin):
    channel = "C0RSTOP"
    # Hold the researchers in their searches (the gate) until the worker has taken the "stop".
    web.gate.clear()
    try:
        held = web.held
        thread = mention(http, "profile Globex Corporation", channel=channel)
        worker_reply(sandbox, channel, thread, "Researching")
        run_id = run_of_thread(admin, thread)["run_id"]
        wait_for(lambda: board(sandbox, channel, thread) and web.held > held, timeout=RUN_TIMEOUT, interval=0.1,
                 what="the plan on the board and the researchers searching")
        say_in_thread(http, "stop", thread, channel=channel)
        worker_reply(sandbox, channel, thread, "Stopping the research")
    finally:
        web.gate.set()
    run = finished(admin, run_id)
    assert run["status"] == "cancelled", run
    assert run["cancel_requested"] is True
    # It ended at its next step: after the researchers, before the synthesis.
    assert "synthesis" not in steps(run) or steps(run)["synthesis"] == "pending", steps(run)
    shown = board(sandbox, channel, thread)
    assert shown is not None
    assert "Stopped" in shown["text"] + " ".join(str(b) for b in shown["blocks"]), shown
    assert not any(b.get("type") == "actions" for b in shown["blocks"])  # the Stop button is gone
    wait_for(lambda: any("stopped" in m["text"] for m in bot_messages(sandbox, channel, thread)),
             timeout=30, what="the thread told the research stopped")
    assert shared_files(sandbox, channel, thread) == []
    assert not [c for c in sandbox.calls("files.completeUploadExternal") if c["args"].get("channel_id") == channel]
    assert broken_mentions(sandbox, channel, thread) == []
    assert run["report_file_id"] is None


def click_stop(http: httpx.Client, sandbox: Any, shown: dict[str, Any], thread_ts: str, *, channel: str,
               user: str) -> str:
    """``user`` presses the board's Stop button (a signed block_actions, as Slack sends it); its value."""
    button = next(element for block in shown["blocks"] if block.get("type") == "actions"
                  for element in block["elements"] if element.get("action_id") == "research_stop")
    body = slack.block_actions_body(user_id=user, channel_id=channel, message_ts=shown["ts"], thread_ts=thread_ts,
                                    action_id="research_stop", value=button["value"],
                                    response_url=sandbox.response_url(channel=channel, user=user),
                                    message_blocks=shown["blocks"])
    response = http.post("/slack/interactions", content=body,
                         headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
    assert response.status_code == 200, response.text
    return str(button["value"])


def broken_mentions(sandbox: Any, channel: str, thread_ts: str) -> list[str]:
    """Mentions in the bot's messages that are not Slack user ids (Slack would show them broken)."""
    found = [who for m in bot_messages(sandbox, channel, thread_ts) for who in re.findall(r"<@([^>|]*)", m["text"])]
    return [who for who in found if not re.fullmatch(r"[UW][A-Z0-9]+", who)]


def told_privately(sandbox: Any, channel: str, user: str, words: str) -> bool:
    return any(m.get("ephemeral_for") == user and words in m["text"] for m in sandbox.messages(channel=channel))


def test_the_stop_button_stops_the_run_for_its_asker_only(dev, sandbox, web, http, admin):
    channel = "C0RBUTTON"
    web.gate.clear()
    try:
        held = web.held
        thread = mention(http, "profile Acme Corp", channel=channel)
        run_id = run_of_thread(admin, thread)["run_id"]
        wait_for(lambda: board(sandbox, channel, thread) and web.held > held, timeout=RUN_TIMEOUT, interval=0.1,
                 what="the plan on the board and the researchers searching")
        shown = board(sandbox, channel, thread)
        assert click_stop(http, sandbox, shown, thread, channel=channel, user=BOB) == run_id
        wait_for(lambda: told_privately(sandbox, channel, BOB, "Only the person who asked"), timeout=60,
                 what="Bob told the run is not his to stop")
        assert get_run(admin, run_id)["cancel_requested"] is False
        click_stop(http, sandbox, shown, thread, channel=channel, user=ALICE)
        wait_for(lambda: told_privately(sandbox, channel, ALICE, "Stopping"), timeout=60, what="Alice told it stops")
    finally:
        web.gate.set()
    run = finished(admin, run_id)
    assert run["status"] == "cancelled" and run["report_file_id"] is None, run
    shown = board(sandbox, channel, thread)
    assert shown is not None and "Stopped" in shown["text"], shown
    assert not any(b.get("type") == "actions" for b in shown["blocks"])
    assert shared_files(sandbox, channel, thread) == []
    assert broken_mentions(sandbox, channel, thread) == []


# -- the token cap ------------------------------------------------------------------------------------------

def test_meddic_delivers_its_final_analysis_as_a_pdf_too(dev, sandbox, http):
    """An agent's report (AgentReply.document) goes to the research function, which renders it and
    shares the PDF in the thread; the text reply stays."""
    channel = "C0RMEDDIC"
    thread = mention(http, "meddic Umbrella Corp renewal. They want to save 20 hours a week. "
                           "The CFO signs off on the budget.", channel=channel)
    worker_reply(sandbox, channel, thread, "MEDDPICC")
    say_in_thread(http, "analyze", thread, channel=channel)
    worker_reply(sandbox, channel, thread, "MEDDPICC analysis")
    shared = wait_for(lambda: shared_files(sandbox, channel, thread), timeout=RUN_TIMEOUT, interval=0.5,
                      what="the analysis PDF in the thread")
    [file] = shared[0]["files"]
    text = pdf_text(download(file))
    assert "MEDDPICC analysis" in text and "Umbrella Corp renewal" in text
    assert "Economic buyer" in text and "Call notes" in text

@pytest.fixture(scope="module")
def capped_dev(sandbox, web, dev_logs):
    """A second server, with a small ``RESEARCH_MAX_TOKENS`` (the worker records the cap on a run
    when it starts it, from its environment: a cap cannot differ between two runs of one server).
    It shares the module's stand-ins; only the last test uses it."""
    with running(env=research_env(sandbox, web, RESEARCH_MAX_TOKENS=str(CAP_TOKENS)), log_dir=dev_logs) as server:
        yield server


def test_the_token_cap_ends_the_run_with_a_partial_report_that_says_so(capped_dev, sandbox, web):
    channel = "C0RCAP"
    with capped_dev.http() as http, _client(capped_dev, ADMIN_EMAIL, admin=True) as admin:
        thread = mention(http, "profile Acme Corp", channel=channel)
        worker_reply(sandbox, channel, thread, "Researching")
        run = finished(admin, run_of_thread(admin, thread)["run_id"])
    assert run["status"] == "capped", run
    assert run["token_cap"] == CAP_TOKENS and run["tokens_used"] >= CAP_TOKENS
    assert "token cap" in (run["summary"] or "")
    files = shared_files(sandbox, channel, thread)
    assert len(files) == 1, bot_messages(sandbox, channel, thread)
    assert "Partial report" in files[0]["text"] and "token cap" in files[0]["text"]
    assert run["report_file_id"] == files[0]["files"][0]["id"]
    text = " ".join(pdf_text(download(files[0]["files"][0])).split())
    assert "Partial report" in text and "token cap" in text and "Acme" in text
    assert web_urls(text, web), "the partial report lists no source"
    shown = board(sandbox, channel, thread)
    assert shown is not None and "token cap" in shown["text"]
