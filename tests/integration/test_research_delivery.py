"""A report delivered into its thread (research/delivery.py) against the Slack sandbox over
loopback: rendered as a PDF, uploaded with the summary as its message, the PDF readable with
pypdf, and a step that runs again after a crash finds the report already shared."""

from __future__ import annotations

import io
import subprocess
import sys

import httpx
import pypdf
import pytest

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.research.delivery import deliver_report, report_filename
from insightmesh.tools.base import Source
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.slack_fixtures import pointed_sandbox

TOKEN = "xoxb-delivery-test"
DOCUMENT = ReportDocument(
    title="Acme Corp profile",
    subtitle="profile Acme Corp",
    sections=(ReportSection("Overview", "Acme Corp makes anvils [1]. Its 10-K shows growth [2]."),),
    sources=(Source("Acme — About", "https://acme.example.com/about"),
             Source("Acme 10-K", "https://www.sec.gov/Archives/edgar/data/1/acme-10k.htm", kind="filing")),
)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with pointed_sandbox(monkeypatch, TOKEN) as stand_in:
        yield stand_in


def shared_files(sandbox: SlackSandbox, thread_ts: str) -> list[dict]:
    return [file for message in sandbox.messages("C0SALES", thread_ts) for file in message.get("files") or []]


def test_the_report_is_a_pdf_in_the_thread_with_the_summary_as_its_message(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="C0SALES", user="U1", text="profile Acme Corp")
    file_id = deliver_report(channel_id="C0SALES", thread_ts=parent["ts"], document=DOCUMENT,
                             filename="acme-corp-profile", summary="**Acme Corp** makes anvils [1].")
    (message,) = [m for m in sandbox.messages("C0SALES", parent["ts"]) if m.get("files")]
    assert message["thread_ts"] == parent["ts"]
    assert message["text"] == "*Acme Corp* makes anvils [1]."  # Slack mrkdwn, not Markdown
    (file,) = message["files"]
    assert (file["id"], file["name"], file["title"]) == (file_id, "acme-corp-profile.pdf", "Acme Corp profile")
    content = httpx.get(file["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"}).content
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)
    assert "Acme Corp profile" in text and "Overview" in text
    for source in DOCUMENT.sources:
        assert source.url in text


def test_a_step_run_again_finds_the_report_already_shared_and_uploads_nothing(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="C0SALES", user="U1", text="profile Acme Corp")
    first = deliver_report(channel_id="C0SALES", thread_ts=parent["ts"], document=DOCUMENT,
                           filename="acme.pdf", summary="Summary.")
    again = deliver_report(channel_id="C0SALES", thread_ts=parent["ts"], document=DOCUMENT,
                           filename="acme.pdf", summary="Summary.")
    assert again == first
    assert len(sandbox.calls("files.getUploadURLExternal")) == 1
    assert len(shared_files(sandbox, parent["ts"])) == 1
    # Another report (another name) in the same thread is delivered.
    other = deliver_report(channel_id="C0SALES", thread_ts=parent["ts"], document=DOCUMENT,
                           filename="acme-revised.pdf", summary="Revised.")
    assert other != first and len(shared_files(sandbox, parent["ts"])) == 2


def test_a_long_summary_is_bounded_to_a_readable_slack_message(sandbox: SlackSandbox):
    parent = sandbox.add_user_message(channel="C0SALES", user="U1", text="profile Acme Corp")
    deliver_report(channel_id="C0SALES", thread_ts=parent["ts"], document=DOCUMENT, filename="acme",
                   summary="Acme makes anvils. " * 1000)
    (message,) = [m for m in sandbox.messages("C0SALES", parent["ts"]) if m.get("files")]
    assert len(message["text"]) <= 3900 and message["text"].endswith("_(truncated)_")


@pytest.mark.parametrize(("given", "expected"), [
    ("acme-corp-profile", "acme-corp-profile.pdf"),
    ("Acme Corp.PDF", "Acme Corp.pdf"),
    ("../../etc/passwd", "etc-passwd.pdf"),
    ("", "report.pdf"),
    ("x" * 500, "x" * 120 + ".pdf"),
])
def test_report_file_names_are_safe(given: str, expected: str):
    assert report_filename(given) == expected


def test_importing_delivery_does_not_import_fpdf():
    # fpdf2 is only in the research function's layer: nothing else may import it by importing delivery.
    probe = "import sys, insightmesh.research.delivery; print('fpdf' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"
