"""`insightmesh chat` shows a file the bot shared in the thread (a research report uploaded with
files_upload_v2): the comment, then the file's name, size and the sandbox URL that serves it."""

from __future__ import annotations

import httpx
import pytest

from insightmesh.slack.uploads import upload_file
from insightmesh_local.chat import SandboxClient, Watcher, file_line
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.slack_fixtures import pointed_sandbox

TOKEN = "xoxb-chat-files"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with pointed_sandbox(monkeypatch, TOKEN) as stand_in:
        yield stand_in


def watch(sandbox: SlackSandbox, thread_ts: str) -> list[str]:
    now = [0.0]
    printed: list[str] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds * 10

    watcher = Watcher(sandbox=SandboxClient(sandbox.url, secret=sandbox.secret), user="U1", print_fn=printed.append,
                      settle=1.5, timeout=60, poll_interval=0.5, clock=lambda: now[0], sleep=sleep)
    watcher.watch(channel="D0CHAT", thread_ts=thread_ts)
    return printed


def test_the_chat_shows_a_file_shared_in_the_thread(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="D0CHAT", user="U1", text="profile Acme Corp")
    content = b"%PDF-1.7 " + b"x" * 3063  # 3,072 bytes
    upload_file(channel_id="D0CHAT", thread_ts=parent["ts"], filename="acme-profile.pdf", content=content,
                title="Acme Corp profile", initial_comment="Here is the report.")
    printed = watch(sandbox, parent["ts"])
    assert printed[0] == "insightmesh> Here is the report."
    line = printed[1]
    assert line.startswith("  [file] acme-profile.pdf — Acme Corp profile (3.0 KB) " + sandbox.root + "files-pri/")
    url = line.rsplit(" ", 1)[-1]
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).content == content  # the URL serves it


def test_a_file_without_a_comment_is_shown_on_the_reply_line(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="D0CHAT", user="U1", text="report please")
    upload_file(channel_id="D0CHAT", thread_ts=parent["ts"], filename="r.pdf", content=b"%PDF", title="r.pdf")
    printed = watch(sandbox, parent["ts"])
    (line,) = printed
    assert line.startswith(f"insightmesh>   [file] r.pdf (4 B) {sandbox.root}files-pri/")
    assert "(a message without text)" not in line


@pytest.mark.parametrize(("size", "shown"), [(10, "10 B"), (2048, "2.0 KB"), (3 * 1024 * 1024, "3.0 MB")])
def test_file_sizes_are_readable(size: int, shown: str):
    assert file_line({"name": "a.pdf", "size": size, "url_private": "http://x/f"}) == f"[file] a.pdf ({shown}) http://x/f"
