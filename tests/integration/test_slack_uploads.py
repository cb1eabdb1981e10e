"""Uploading a file into a thread (slack/uploads.py) through slack_sdk's files_upload_v2, against the
Slack sandbox over loopback: the three steps as Slack defines them, the file shared into the thread
as one message with ``files``, the bytes served back at ``url_private`` with the bot token, and
the errors Slack gives."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh.slack.uploads import UploadFailed, upload_file
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.slack_fixtures import pointed_sandbox

TOKEN = "xoxb-uploads-test"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with pointed_sandbox(monkeypatch, TOKEN) as stand_in:
        yield stand_in


def web(sandbox: SlackSandbox) -> WebClient:
    return WebClient(token=TOKEN, base_url=sandbox.url)


def test_a_file_is_shared_into_the_thread_and_its_bytes_come_back(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="C0REPORTS", user="U1", text="profile Acme Corp")
    file_id = upload_file(channel_id="C0REPORTS", thread_ts=parent["ts"], filename="acme-profile.pdf", content=PDF,
                          title="Acme Corp profile", initial_comment="Here is the full report.")
    thread = sandbox.messages("C0REPORTS", parent["ts"])
    shared = [m for m in thread if m.get("files")]
    assert len(shared) == 1
    message = shared[0]
    assert message["thread_ts"] == parent["ts"] and message["is_bot"]
    assert message["text"] == "Here is the full report."
    (file,) = message["files"]
    assert file["id"] == file_id
    assert (file["name"], file["title"], file["mimetype"], file["size"]) == (
        "acme-profile.pdf", "Acme Corp profile", "application/pdf", len(PDF))
    assert file["shares"]["public"]["C0REPORTS"][0]["thread_ts"] == parent["ts"]
    download = httpx.get(file["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert download.status_code == 200 and download.content == PDF
    assert httpx.get(file["url_private"]).status_code == 403  # no token, no file (as Slack's file host)
    # The three steps, in order, as files_upload_v2 makes them.
    methods = [c["method"] for c in sandbox.calls() if c["method"].startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.upload", "files.completeUploadExternal",
                       "files.download", "files.download"]
    complete = sandbox.calls("files.completeUploadExternal")[0]["args"]
    assert complete["channel_id"] == "C0REPORTS" and complete["thread_ts"] == parent["ts"]
    assert json.loads(complete["files"]) == [{"id": file_id, "title": "Acme Corp profile"}]
    # conversations.replies shows the share as Slack does, and files.info knows the file.
    replies = web(sandbox).conversations_replies(channel="C0REPORTS", ts=parent["ts"])["messages"]
    assert replies[-1]["files"][0]["id"] == file_id and replies[-1]["upload"] is False
    info = web(sandbox).files_info(file=file_id)
    assert info["file"]["size"] == len(PDF) and info["file"]["channels"] == ["C0REPORTS"]


def test_without_a_thread_the_file_is_a_top_level_message(sandbox: SlackSandbox):
    upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"%PDF-1", title="A")
    (message,) = sandbox.messages("C0REPORTS")
    assert message["thread_ts"] is None and message["files"][0]["name"] == "a.pdf" and message["text"] == ""


def test_a_long_initial_comment_is_bounded_to_slacks_message_limit(sandbox: SlackSandbox):
    upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"%PDF-1", title="A",
                initial_comment="x" * 50_000)
    assert len(sandbox.messages("C0REPORTS")[0]["text"]) == 40_000


def test_slacks_refusals_reach_the_caller(sandbox: SlackSandbox):
    with pytest.raises(SlackApiError) as unknown:
        upload_file(channel_id="X0NOPE", thread_ts=None, filename="a.pdf", content=b"1", title="A")
    assert unknown.value.response["error"] == "channel_not_found"
    sandbox.set_channel("C0PRIVATE", ["U1"], kind="private", bot_member=False)
    with pytest.raises(SlackApiError) as hidden:
        upload_file(channel_id="C0PRIVATE", thread_ts=None, filename="a.pdf", content=b"1", title="A")
    assert hidden.value.response["error"] == "channel_not_found"
    sandbox.set_channel("C0PUBLIC", ["U1"], kind="public", bot_member=False)
    with pytest.raises(SlackApiError) as outside:
        upload_file(channel_id="C0PUBLIC", thread_ts=None, filename="a.pdf", content=b"1", title="A")
    assert outside.value.response["error"] == "not_in_channel"
    sandbox.fail("files.getUploadURLExternal", "error", error="file_uploads_disabled")
    with pytest.raises(SlackApiError) as disabled:
        upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"1", title="A")
    assert disabled.value.response["error"] == "file_uploads_disabled"
    assert not any(m.get("files") for m in sandbox.messages())


def test_a_failed_post_of_the_bytes_is_an_upload_failure_not_a_share(sandbox: SlackSandbox):
    sandbox.fail("files.upload", "error", status=500)
    with pytest.raises(UploadFailed, match=r"a\.pdf"):
        upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"%PDF", title="A")
    assert sandbox.calls("files.completeUploadExternal") == []
    assert sandbox.messages("C0REPORTS") == []


def test_a_rate_limited_completion_is_retried_after_retry_after(sandbox: SlackSandbox):
    sandbox.fail("files.completeUploadExternal", "ratelimit", retry_after=0)
    file_id = upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"%PDF", title="A")
    assert [c["status"] for c in sandbox.calls("files.completeUploadExternal")] == [429, 200]
    assert sandbox.messages("C0REPORTS")[0]["files"][0]["id"] == file_id


def test_an_empty_file_is_refused_before_slack_is_asked(sandbox: SlackSandbox):
    with pytest.raises(ValueError, match="empty"):
        upload_file(channel_id="C0REPORTS", thread_ts=None, filename="a.pdf", content=b"", title="A")
    assert sandbox.calls() == []


# -- the sandbox's wire format, step by step ----------------------------------------------------------------
def post(url: str, data: bytes, content_type: str = "application/octet-stream") -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_upload_steps_answer_as_slack_does(sandbox: SlackSandbox):
    client = web(sandbox)
    with pytest.raises(SlackApiError) as zero:
        client.files_getUploadURLExternal(filename="a.pdf", length=0)
    assert zero.value.response["error"] == "missing_argument"
    with pytest.raises(SlackApiError) as missing:
        client.api_call("files.getUploadURLExternal", params={"filename": "a.pdf"})
    assert missing.value.response["error"] == "invalid_arguments"

    ticket = client.files_getUploadURLExternal(filename="a.pdf", length=4)
    assert ticket["upload_url"].startswith(sandbox.root + "upload/v1/")
    with pytest.raises(SlackApiError) as early:  # the bytes never arrived
        client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id="C0REPORTS")
    assert early.value.response["error"] == "file_not_found"
    assert post(ticket["upload_url"], b"12345")[0] == 400  # not the length announced
    assert post(sandbox.root + "upload/v1/unknown", b"1234")[0] == 404
    assert post(ticket["upload_url"], b"1234") == (200, "OK - 4")
    with pytest.raises(SlackApiError) as unknown:
        client.files_completeUploadExternal(files=[{"id": "F0NOTISSUED"}], channel_id="C0REPORTS")
    assert unknown.value.response["error"] == "file_not_found"
    with pytest.raises(SlackApiError) as malformed:
        client.api_call("files.completeUploadExternal", params={"files": "not json", "channel_id": "C0REPORTS"})
    assert malformed.value.response["error"] == "invalid_arguments"
    done = client.files_completeUploadExternal(files=[{"id": ticket["file_id"], "title": "Ay"}])
    assert done["files"][0]["title"] == "Ay"
    assert sandbox.messages() == []  # no channel: the file stays private
    with pytest.raises(SlackApiError) as twice:
        client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id="C0REPORTS")
    assert twice.value.response["error"] == "file_not_found"
    with pytest.raises(SlackApiError) as info:
        client.files_info(file="F0NOTISSUED")
    assert info.value.response["error"] == "file_not_found"


def test_the_upload_url_takes_a_multipart_form_too(sandbox: SlackSandbox):
    client = web(sandbox)
    ticket = client.files_getUploadURLExternal(filename="notes.txt", length=5)
    boundary = "----insightmesh"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n").encode()
    assert post(ticket["upload_url"], body, f"multipart/form-data; boundary={boundary}") == (200, "OK - 5")
    client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id="C0REPORTS")
    file = sandbox.messages("C0REPORTS")[0]["files"][0]
    assert httpx.get(file["url_private"], headers={"Authorization": f"Bearer {TOKEN}"}).content == b"hello"
