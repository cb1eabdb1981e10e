"""Files shared in Slack: the message's file references reach the worker's request; the download
sends the bot token only to Slack's file host (or the configured sandbox), honours the type
allow-list and the size limit, and never takes a sign-in page for the file."""

from __future__ import annotations

import pytest

from insightmesh.conversation.intake import classify_event
from insightmesh.slack.events import Decision
from insightmesh.slack.files import SlackFileRef
from tests.slack_fixtures import pointed_sandbox

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with pointed_sandbox(monkeypatch, "xoxb-files-test") as stand_in:
        yield stand_in


def ref(file: dict, **overrides) -> SlackFileRef:
    return SlackFileRef(id=file["id"], name=file["name"], mimetype=file["mimetype"], size=file["size"],
                        url=file["url_private_download"]).model_copy(update=overrides)


def test_a_message_with_files_carries_their_references_and_no_content():
    event = {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.000001", "text": "<@UB> read this",
             "subtype": "file_share",
             "files": [{"id": "F1", "name": "plan.pdf", "mimetype": "application/pdf", "size": 1234,
                        "url_private_download": "https://files.slack.com/files-pri/T1-F1/download/plan.pdf",
                        "url_private": "https://files.slack.com/files-pri/T1-F1/plan.pdf"},
                       {"name": "no id"}, "junk"]}
    classified = classify_event({"team_id": "T1", "event": event, "authorizations": [{"user_id": "UB"}]},
                                correlation_id="c")
    assert classified.decision == Decision.ANSWER and classified.request is not None
    (only,) = classified.request.files
    assert only.id == "F1" and only.size == 1234 and only.url.endswith("/download/plan.pdf")


def test_download_with_the_bot_token(sandbox):
    from insightmesh.slack.files import download

    shared = sandbox.add_file("notes.md", b"# Notes\n\nhello", "text/plain")
    got = download(ref(shared))
    assert got.content == b"# Notes\n\nhello" and got.mime_type == "text/markdown" and got.name == "notes.md"
    assert sandbox.calls("files.download")[-1]["ok"] is True


def test_types_outside_the_allow_list_are_refused_before_any_download(sandbox):
    from insightmesh.slack.files import FileRefused, download

    image = sandbox.add_file("photo.png", b"\x89PNG....", "image/png")
    with pytest.raises(FileRefused, match="not read"):
        download(ref(image))
    assert sandbox.calls("files.download") == []
    assert download(ref(sandbox.add_file("spec.docx", b"PK..", DOCX))).mime_type == DOCX


def test_the_size_limit_is_enforced_declared_and_streamed(sandbox, monkeypatch: pytest.MonkeyPatch):
    from insightmesh.slack.files import FileRefused, download

    monkeypatch.setenv("SLACK_FILE_MAX_BYTES", "1000")
    big = sandbox.add_file("big.txt", b"x" * 5000, "text/plain")
    with pytest.raises(FileRefused, match="KB"):
        download(ref(big))
    assert sandbox.calls("files.download") == []  # the declared size was enough
    with pytest.raises(FileRefused, match="larger than"):
        download(ref(big, size=10))  # a size Slack under-reported: the stream stops at the limit


def test_the_token_only_goes_to_slack_file_hosts(sandbox):
    from insightmesh.slack.files import FileRefused, download

    shared = sandbox.add_file("notes.txt", b"hello", "text/plain")
    for url in ("https://evil.example.com/steal.txt", "http://files.slack.com/x.txt", "file:///etc/passwd"):
        with pytest.raises(FileRefused, match="not a Slack file URL"):
            download(ref(shared, url=url))
    assert sandbox.calls("files.download") == []


def test_a_sign_in_page_is_not_taken_for_the_file(sandbox, monkeypatch: pytest.MonkeyPatch):
    from insightmesh.slack.files import FileRefused, download

    shared = sandbox.add_file("notes.txt", b"hello", "text/plain")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "not-a-slack-token")  # read at each download
    with pytest.raises(FileRefused, match="HTTP 403"):
        download(ref(shared))


def test_the_files_of_one_message_share_a_time_budget(sandbox, monkeypatch: pytest.MonkeyPatch):
    """Each file is bounded by its own limit, and all of a message's files by the message's budget:
    a file that hangs is killed when the budget runs out, and the files after it are not read."""
    from insightmesh.conversation.attachments import read_shared_files
    from insightmesh.knowledge import extract

    monkeypatch.setattr(extract, "_CHILD_TARGET", "tests.isolation_targets:hang")
    monkeypatch.setenv("SHARED_FILES_BUDGET_SECONDS", "2")
    refs = [ref(sandbox.add_file(f"notes-{n}.txt", b"hello", "text/plain")) for n in range(3)]
    files: list[dict[str, str]] = []
    problems = read_shared_files(refs, files, lambda _text: None)
    assert files == []
    assert problems[0].startswith("I couldn't read notes-0.txt") and "2 s" in problems[0]
    assert all("took all the time I have for one message" in problem for problem in problems[1:])
    assert len(problems) == 3
