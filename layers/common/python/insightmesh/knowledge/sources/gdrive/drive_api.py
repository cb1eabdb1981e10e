"""The Drive API v3 calls of ``gdrive_ingest`` and Drive's vocabulary (ids, MIME types, fields, times).

Every call goes through :class:`insightmesh.google_api.GoogleApi` (retries, breaker, token refresh).
Base URL: ``GOOGLE_DRIVE_API_URL`` (default https://www.googleapis.com).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from insightmesh.google_api import ApiPage, GoogleApi, Reply
from insightmesh.resilience import CircuitBreaker

DRIVE_SCOPE: Final = "https://www.googleapis.com/auth/drive.readonly"
DEFAULT_API_URL: Final = "https://www.googleapis.com"
API_URL_VARIABLE: Final = "GOOGLE_DRIVE_API_URL"
BREAKER: Final = "google_drive"
MAX_PAGE_SIZE: Final = 1000  # files.list pageSize limit
MAX_PERMISSIONS_PAGE: Final = 100  # permissions.list pageSize limit
DRIVE_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,200}$"
DRIVE_ID_RE: Final = re.compile(DRIVE_ID_PATTERN)

FOLDER: Final = "application/vnd.google-apps.folder"
GOOGLE_PREFIX: Final = "application/vnd.google-apps."
GOOGLE_DOC: Final = "application/vnd.google-apps.document"
GOOGLE_SHEET: Final = "application/vnd.google-apps.spreadsheet"
GOOGLE_SLIDES: Final = "application/vnd.google-apps.presentation"
EXPORTS: Final[Mapping[str, tuple[str, ...]]] = {  # in order of preference
    GOOGLE_DOC: ("text/markdown", "text/plain"),
    GOOGLE_SHEET: ("text/csv",),
    GOOGLE_SLIDES: ("text/plain",),
}
PERMISSION_FIELDS: Final = "permissions(type,role,emailAddress,domain,deleted,allowFileDiscovery)"
FILE_FIELDS: Final = ("id,name,mimeType,modifiedTime,size,webViewLink,md5Checksum,version,trashed,"
                      f"{PERMISSION_FIELDS},owners(emailAddress),driveId,parents")
LIST_FIELDS: Final = f"nextPageToken,files({FILE_FIELDS})"


def parents_query(folder_id: str) -> str:
    """The ``q`` of a folder's children (the id is validated: nothing can be injected)."""
    if not DRIVE_ID_RE.match(folder_id):
        raise ValueError(f"not a Drive id: {folder_id!r}")
    return f"'{folder_id}' in parents and trashed = false"


class DriveApi(GoogleApi):
    """The Drive API v3 calls of the job (retries, breaker and token refresh: GoogleApi's)."""

    def __init__(self, *, base_url: str, token: Callable[[], str], http: httpx.Client, breaker: CircuitBreaker,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(service="Google Drive API", base_url=base_url, token=token, http=http, breaker=breaker,
                         sleep=sleep)

    def file(self, file_id: str) -> dict[str, Any]:
        return self.get(f"/drive/v3/files/{quote(file_id, safe='')}",
                        {"fields": FILE_FIELDS, "supportsAllDrives": "true"})

    def children(self, folder_id: str, *, page_size: int, page_token: str | None, all_drives: bool) -> ApiPage:
        return self.page("/drive/v3/files", "files", {
            "q": parents_query(folder_id), "fields": LIST_FIELDS, "pageSize": min(page_size, MAX_PAGE_SIZE),
            "pageToken": page_token, "supportsAllDrives": "true", "includeItemsFromAllDrives": "true",
            "corpora": "allDrives" if all_drives else None})

    def permissions(self, file_id: str) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            page = self.page(f"/drive/v3/files/{quote(file_id, safe='')}/permissions", "permissions", {
                "fields": f"nextPageToken,{PERMISSION_FIELDS}", "pageSize": MAX_PERMISSIONS_PAGE,
                "pageToken": token, "supportsAllDrives": "true"})
            found.extend(page.items)
            token = page.next_token or None
            if token is None:
                return found

    def media(self, file_id: str, *, max_bytes: int) -> Reply:
        return self.fetch(f"/drive/v3/files/{quote(file_id, safe='')}",
                          {"alt": "media", "supportsAllDrives": "true"}, max_bytes=max_bytes)

    def export(self, file_id: str, mime_type: str, *, max_bytes: int) -> Reply:
        return self.fetch(f"/drive/v3/files/{quote(file_id, safe='')}/export", {"mimeType": mime_type},
                          max_bytes=max_bytes)



def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None

