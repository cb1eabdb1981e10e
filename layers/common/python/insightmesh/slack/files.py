"""Files shared in Slack messages: downloaded by the conversation worker (never on the ingress
path, which must acknowledge within 3 s) with the bot token, and turned into text.

* **Allow-list**: PDF, DOCX, XLSX, PPTX, Markdown, plain text, CSV, VTT and SRT — by the file's
  MIME type, or by its name when Slack reports a generic type. Anything else is refused with a
  reason the reply can show ("images are not read").
* **Size limit**: ``SLACK_FILE_MAX_BYTES`` (default 10 MB): a file Slack declares larger is not
  downloaded; the download streams and stops as soon as it passes the limit.
* **Where from**: only the Slack API's file host (``files.slack.com``) or, in development and
  tests, the host of ``SLACK_API_URL`` (the sandbox) — the bot token is never sent elsewhere.
* The token goes in ``Authorization: Bearer`` (as Slack requires for ``url_private_download``);
  a redirect to a login page (HTML instead of the file) is reported as not downloadable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from insightmesh.config import get_secret
from insightmesh.file_types import mime_type_for
from insightmesh.slack.client import api_url

if TYPE_CHECKING:
    import httpx

MAX_FILES: Final = 10  # the files of one message that are read
DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024
SLACK_FILE_HOSTS: Final = frozenset({"files.slack.com"})
TIMEOUT_SECONDS: Final = 20.0
CONNECT_TIMEOUT_SECONDS: Final = 5.0
ALLOWED_MIME_TYPES: Final = frozenset({
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "text/plain", "text/markdown", "text/csv", "text/vtt", "application/x-subrip",
})


class SlackFileRef(BaseModel):
    """A file attached to a Slack message: what the worker needs to download it (never its content:
    the ingress path does no download)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=255)
    mimetype: str = Field(default="", max_length=255)
    size: int = Field(default=0, ge=0)
    url: str = Field(default="", max_length=2048)  # url_private_download (or url_private)


class FileRefused(ValueError):
    """The file is not read: the message says why (shown to the user)."""


@dataclass(frozen=True)
class DownloadedFile:
    name: str
    mime_type: str
    content: bytes


def max_bytes() -> int:
    try:
        return int(os.environ.get("SLACK_FILE_MAX_BYTES") or DEFAULT_MAX_BYTES)
    except ValueError:
        return DEFAULT_MAX_BYTES


def mime_type_of(ref: SlackFileRef) -> str:
    """The file's type from Slack's ``mimetype``, or from its name when that says more."""
    declared = (ref.mimetype or "").split(";")[0].strip().lower()
    if declared in ALLOWED_MIME_TYPES and declared != "text/plain":
        return declared
    by_name = mime_type_for(ref.name) if ref.name else None
    if by_name in ALLOWED_MIME_TYPES:
        return by_name
    if declared in ALLOWED_MIME_TYPES:
        return declared
    raise FileRefused(f"{ref.name or ref.id}: {declared or 'this type'} files are not read "
                      "(PDF, Word, Excel, PowerPoint and text files are)")


def _trusted_hosts() -> set[str]:
    hosts = set(SLACK_FILE_HOSTS)
    configured = urlsplit(api_url()).hostname
    if configured and configured != "slack.com":
        hosts.add(configured)  # the sandbox / a proxy configured as the Slack API
    return hosts


def download(ref: SlackFileRef, *, client: httpx.Client | None = None) -> DownloadedFile:
    """Download one file with the bot token, enforcing the allow-list and the size limit."""
    import httpx  # on the worker's path only: the ingress imports this module for SlackFileRef

    mime_type = mime_type_of(ref)
    limit = max_bytes()
    if ref.size and ref.size > limit:
        raise FileRefused(f"{ref.name or ref.id} is {ref.size // 1024} KB; files up to {limit // 1024} KB are read")
    url = urlsplit(ref.url)
    if url.scheme not in ("https", "http") or url.hostname not in _trusted_hosts():
        raise FileRefused(f"{ref.name or ref.id}: not a Slack file URL")
    if url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost"):
        raise FileRefused(f"{ref.name or ref.id}: not a Slack file URL")
    token = get_secret("SLACK_BOT_TOKEN", default="")
    owned = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
                                      follow_redirects=False)
    try:
        with http.stream("GET", ref.url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status_code != 200:
                raise FileRefused(f"{ref.name or ref.id} could not be downloaded (HTTP {response.status_code})")
            if response.headers.get("content-type", "").startswith("text/html") and mime_type != "text/html":
                raise FileRefused(f"{ref.name or ref.id} could not be downloaded (Slack answered with a page)")
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > limit:
                    raise FileRefused(f"{ref.name or ref.id} is larger than {limit // 1024} KB; not read")
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise FileRefused(f"{ref.name or ref.id} could not be downloaded ({type(error).__name__})") from error
    finally:
        if owned:
            http.close()
    return DownloadedFile(name=ref.name or ref.id, mime_type=mime_type, content=b"".join(chunks))
