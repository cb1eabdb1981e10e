"""Delivering a report into its thread: the PDF (``research.pdf``) uploaded with the summary as the
file's message (``slack.uploads``, files_upload_v2).

``deliver_report`` is what the research workflow's last durable step calls. A step may run again
after a crash, and an upload is not idempotent (a second call posts a second file), so before
uploading it looks in the thread (``conversations.replies``) for a file the bot already shared
under the same ``filename``, and returns that file's id instead: one report, never two.

The summary is Markdown from the model: it is converted to Slack mrkdwn and bounded (the same
``slack.formatting.to_mrkdwn`` as every answer: escaped, links checked, at most 3,900 characters).
The PDF renderer (fpdf2, in the research layer only) is imported inside :func:`deliver_report`,
so importing this module never needs fpdf2.
"""

from __future__ import annotations

import re
from typing import Any, Final

from slack_sdk.errors import SlackApiError

from insightmesh.agents.base import ReportDocument
from insightmesh.observability import get_logger
from insightmesh.slack.client import bot_identity, call_slack
from insightmesh.slack.formatting import to_mrkdwn
from insightmesh.slack.uploads import upload_file

MAX_FILENAME_CHARS: Final = 120
MAX_THREAD_PAGES: Final = 5  # 1,000 messages: a report thread is far shorter
_UNSAFE: Final = re.compile(r"[^\w.\- ]+")


def report_filename(name: str) -> str:
    """A safe ``.pdf`` file name: no path separators or control characters, bounded."""
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    stem = _UNSAFE.sub("-", stem).strip(" .-")[:MAX_FILENAME_CHARS] or "report"
    return stem + ".pdf"


def deliver_report(*, channel_id: str, thread_ts: str, document: ReportDocument, filename: str,
                   summary: str) -> str:
    """Render ``document`` as a PDF and upload it into the thread with ``summary`` as its message;
    returns the Slack file id (the one already shared under ``filename``, if a retried step finds it)."""
    name = report_filename(filename)
    shared = _already_shared(channel_id, thread_ts, name)
    if shared is not None:
        get_logger().info("report already in the thread; not uploaded again",
                          extra={"channel": channel_id, "file_id": shared})
        return shared
    from insightmesh.research.pdf import render_pdf  # fpdf2: the research layer only

    content = render_pdf(document)
    file_id = upload_file(channel_id=channel_id, thread_ts=thread_ts, filename=name, content=content,
                          title=document.title or name, initial_comment=to_mrkdwn(summary) if summary else None)
    get_logger().info("report delivered", extra={"channel": channel_id, "file_id": file_id, "bytes": len(content)})
    return file_id


def _already_shared(channel_id: str, thread_ts: str, filename: str) -> str | None:
    """The id of a file named ``filename`` the bot already shared in the thread, else None."""
    bot_user = bot_identity().user_id
    cursor: str | None = None

    def replies(after: str | None) -> Any:
        return call_slack(lambda client: client.conversations_replies(channel=channel_id, ts=thread_ts, limit=200,
                                                                       cursor=after))

    for _page in range(MAX_THREAD_PAGES):
        try:
            page = replies(cursor)
        except SlackApiError as error:
            if error.response.get("error") == "thread_not_found":  # nothing posted there yet
                return None
            raise
        for message in page.get("messages") or []:
            for file in message.get("files") or []:
                if isinstance(file, dict) and file.get("name") == filename and \
                        bot_user in (file.get("user"), message.get("user")) and isinstance(file.get("id"), str):
                    return str(file["id"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    return None


__all__ = ["deliver_report", "report_filename"]
