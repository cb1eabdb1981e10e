"""The knowledge base end to end through `insightmesh dev`: `insightmesh ingest` submits local
files to the running system (which holds the embedded Qdrant store), a question in Slack is
answered from them with a Sources section naming the file, re-ingestion reports unchanged,
changed and removed documents, and a file shared in a Slack thread is read and remembered."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running
from tests.e2e.test_slack_conversations import bot_messages, is_final
from tests.helpers import wait_for

SECRET = "e2e-knowledge-secret"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1797000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def dev(sandbox, tmp_path_factory, dev_logs):
    data = tmp_path_factory.mktemp("insightmesh-data")
    with running("--data-dir", str(data), env={
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-e2e-knowledge", "SLACK_API_URL": sandbox.url,
        "LLM_PROVIDER": "offline"}, log_dir=dev_logs) as server:
        yield server


def ingest(dev, *args: str) -> subprocess.CompletedProcess[str]:
    return dev.cli("ingest", *args, timeout=120)


def ask(http, sandbox, text, *, thread_ts=None, files=None, channel="C0KNOW"):
    ts = new_ts()
    event = slack.app_mention_event("U0ASKER", channel, text, ts, thread_ts)
    if files:
        event["files"], event["subtype"] = files, "file_share"
    response = post_event(http, SECRET, event)
    assert response.status_code == 200, response.text
    thread = thread_ts or ts

    def final():  # not a placeholder ("Thinking…", "Reading…"), nor an answer still streaming
        replies = [m for m in bot_messages(sandbox, thread, channel) if is_final(m)]
        return replies if len(replies) >= (1 if thread_ts is None else 2) else None
    return wait_for(final, timeout=60, what=f"an answer to {text!r}")[-1]["text"], thread


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("handbook")
    (folder / "refund-policy.md").write_text(
        "# Refund policy\n\nCustomers may ask for a refund within 45 days of purchase. Refunds are paid back "
        "to the original card within five business days.\n\n## Exceptions\n\nGift cards are never refunded.\n")
    (folder / "travel.txt").write_text(
        "Travel expenses\n\nEmployees book flights through Skyway Travel. Economy class is the rule for flights "
        "under six hours; the per diem in Paris is 95 euros.\n")
    return folder


def test_ingest_while_dev_runs_then_a_question_is_answered_with_sources(dev, http, sandbox, corpus):
    first = ingest(dev, str(corpus))
    assert first.returncode == 0, first.stderr
    assert "new: 2" in first.stderr or "new=2" in first.stderr, first.stderr
    answer, _ = ask(http, sandbox, "how many days do customers have to ask for a refund?")
    assert "45 days" in answer
    assert "Sources" in answer and "refund-policy.md" in answer

    again = ingest(dev, str(corpus))
    assert again.returncode == 0 and ("unchanged: 2" in again.stderr or "unchanged=2" in again.stderr), again.stderr

    (corpus / "travel.txt").write_text("Travel expenses\n\nThe per diem in Paris is now 110 euros.\n")
    (corpus / "refund-policy.md").unlink()
    changed = ingest(dev, str(corpus), "--sweep")
    assert changed.returncode == 0, changed.stderr
    assert "changed: 1" in changed.stderr or "changed=1" in changed.stderr, changed.stderr
    assert "removed: 1" in changed.stderr or "removed=1" in changed.stderr, changed.stderr
    answer, _ = ask(http, sandbox, "what is the per diem in Paris?")
    assert "110 euros" in answer and "travel.txt" in answer
    answer, _ = ask(http, sandbox, "how many days do customers have to ask for a refund?")
    assert "refund-policy.md" not in answer


def test_a_file_shared_in_a_thread_is_read_and_remembered(http, sandbox):
    shared = sandbox.add_file("launch-plan.txt", b"Project Falcon launch plan\n\nThe launch date is 14 March. "
                                                 b"The owner of the launch is Dana Whitfield.\n", "text/plain")
    answer, thread = ask(http, sandbox, "when is the launch?", files=[shared])
    assert "14 March" in answer and "launch-plan.txt" in answer
    assert any(call["args"].get("file") == shared["id"] for call in sandbox.calls("files.download"))
    follow_up, _ = ask(http, sandbox, "who owns the launch?", thread_ts=thread)
    assert "Dana Whitfield" in follow_up
    downloads = [call for call in sandbox.calls("files.download") if call["args"].get("file") == shared["id"]]
    assert len(downloads) == 1  # remembered, not downloaded again


def test_a_file_type_outside_the_allow_list_is_refused_with_a_reason(http, sandbox):
    image = sandbox.add_file("diagram.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")
    answer, _ = ask(http, sandbox, "what does this show?", files=[image])
    assert "not read" in answer
    assert not any(call["args"].get("file") == image["id"] for call in sandbox.calls("files.download"))
