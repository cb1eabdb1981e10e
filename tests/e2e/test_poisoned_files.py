"""A poisoned file cannot take the bot down, end to end through `insightmesh dev`.

A zip bomb (a DOCX of ~60 KB whose hidden part inflates to 64 MB) is shared in one thread while
a normal question is asked in another. The normal question is answered; the poisoned file's
thread gets one reply that says, in plain words, why the file was not read. One dev server.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from insightmesh_local import slack_signing as slack
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.e2e.dev_server import DevServer, post_event, running
from tests.e2e.test_slack_conversations import bot_messages, is_final
from tests.helpers import wait_for
from tests.knowledge_fixtures import docx_bytes

SECRET = "e2e-poisoned-files-secret"
CHANNEL = "C0POISON"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def zip_bomb_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes([("p", "Quarterly report")]))) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("word/media/image1.bin", b"\0" * (64 * 1024 * 1024))
    return out.getvalue()


def post(http: httpx.Client, event: dict) -> None:
    response = post_event(http, SECRET, event)
    assert response.status_code == 200, response.text


def final_reply(sandbox: SlackSandbox, thread: str, what: str, expect: str = "") -> str:
    """The thread's last final reply (containing ``expect``): a streamed answer is stopped, then
    edited once more with its final formatting and notes, so the first final state may be short."""
    def reply() -> str | None:
        texts = [m["text"] for m in bot_messages(sandbox, thread, CHANNEL) if is_final(m)]  # not still streaming
        return texts[-1] if texts and expect in texts[-1] else None
    return wait_for(reply, timeout=90, what=what)


@pytest.fixture(scope="module")
def dev(sandbox: SlackSandbox, dev_logs: Path) -> Iterator[DevServer]:
    with running(env={"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-e2e-poison",
                      "SLACK_API_URL": sandbox.url, "LLM_PROVIDER": "offline"}, log_dir=dev_logs) as server:
        yield server


def test_a_zip_bomb_in_one_thread_is_refused_while_another_thread_is_answered(dev, sandbox, http):
    bomb = zip_bomb_docx()
    assert len(bomb) < 200_000
    shared = sandbox.add_file("report.docx", bomb, DOCX_TYPE)
    poisoned_ts, normal_ts = slack.new_ts(), slack.new_ts()
    poisoned = slack.app_mention_event("U0ALICE", CHANNEL, "summarise this please", poisoned_ts)
    poisoned["files"], poisoned["subtype"] = [shared], "file_share"
    normal = slack.app_mention_event("U0BOB", CHANNEL, "hello, are you there?", normal_ts)
    post(http, poisoned)
    post(http, normal)
    answered = final_reply(sandbox, normal_ts, "an answer in the normal thread")
    refused = final_reply(sandbox, poisoned_ts, "a reply in the poisoned thread", expect="I couldn't read")
    assert answered.strip() and "couldn't read" not in answered
    assert "I couldn't read report.docx: it expands to more than 50 MB" in refused
    assert any(call["args"].get("file") == shared["id"] for call in sandbox.calls("files.download"))
    bot_replies = [m for m in bot_messages(sandbox, poisoned_ts, CHANNEL) if is_final(m)]
    assert len(bot_replies) == 1  # one reply, not a retry's second one
