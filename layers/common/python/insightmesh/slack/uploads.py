"""Uploading a file into a Slack thread: slack_sdk's ``WebClient.files_upload_v2``.

``files_upload_v2`` is Slack's supported flow (``files.upload`` is gone): ``files.getUploadURLExternal``
(filename, length → an upload URL and a file id), a POST of the bytes to that URL, then
``files.completeUploadExternal`` (``files=[{id, title}]``, ``channel_id``, ``thread_ts``,
``initial_comment``), which shares the file into the thread as one message. Scope: ``files:write``.

The whole flow runs through :func:`insightmesh.slack.client.call_slack` (the ``slack`` circuit
breaker; the client retries 429s after ``Retry-After`` and connection errors). slack_sdk POSTs the
bytes with ``urllib`` outside its retry handlers, so a failed POST surfaces as
:class:`UploadFailed` (with slack_sdk's own ``SlackRequestError`` or urllib's ``HTTPError`` as the
cause), never as a silent success. Slack's own refusals (``ok: false``) stay ``SlackApiError``.

Not idempotent: a retried upload posts a second file. The caller (the research workflow's durable
step) records the returned file id and does not upload again once it has one.
"""

from __future__ import annotations

from typing import Final
from urllib.error import URLError

from slack_sdk.errors import SlackRequestError

from insightmesh.slack.client import call_slack

MAX_FILENAME_CHARS: Final = 255
MAX_TITLE_CHARS: Final = 255
# Slack truncates a message's text at 40,000 characters; an initial comment is a message.
MAX_COMMENT_CHARS: Final = 40_000


class UploadFailed(RuntimeError):
    """The upload did not complete (the bytes were not accepted, or Slack's answer had no file)."""


def upload_file(*, channel_id: str, thread_ts: str | None, filename: str, content: bytes, title: str,
                initial_comment: str | None = None) -> str:
    """Upload ``content`` as ``filename`` into ``channel_id`` (a reply in ``thread_ts``'s thread when
    given: the parent's ts) with ``initial_comment`` as the message's text; returns the file id."""
    if not content:
        raise ValueError("an empty file cannot be uploaded (Slack refuses a length of 0)")
    name = filename.strip().replace("/", "_")[:MAX_FILENAME_CHARS] or "file"
    comment = initial_comment[:MAX_COMMENT_CHARS] if initial_comment else None
    try:
        response = call_slack(lambda client: client.files_upload_v2(
            channel=channel_id, thread_ts=thread_ts, filename=name, content=content,
            title=title[:MAX_TITLE_CHARS] or name, initial_comment=comment))
    except (SlackRequestError, URLError) as error:
        raise UploadFailed(f"the upload of {name} to Slack failed: {error}") from error
    file = response.get("file")
    file_id = file.get("id") if isinstance(file, dict) else None
    if not isinstance(file_id, str) or not file_id:
        raise UploadFailed(f"Slack completed the upload of {name} without a file id")
    return file_id


__all__ = ["MAX_COMMENT_CHARS", "UploadFailed", "upload_file"]
