"""The file types InsightMesh reads, by MIME type and by file name.

Platform-level so that every context that meets a file agrees on what it is: the knowledge
base's extractor (``knowledge.extract``), Slack's file download (``slack.files``: its type
allow-list) and the ingest CLI — without one importing the other.
"""

from __future__ import annotations

import re
from typing import Final

PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX: Final = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
MARKDOWN: Final = "text/markdown"
PLAIN: Final = "text/plain"
CSV: Final = "text/csv"
TSV: Final = "text/tab-separated-values"
VTT: Final = "text/vtt"
SRT: Final = "application/x-subrip"

EXTENSIONS: Final[dict[str, str]] = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".xlsx": XLSX,
    ".pptx": PPTX,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": PLAIN,
    ".vtt": VTT,
    ".srt": SRT,
    ".csv": CSV,
    ".tsv": TSV,
}


def mime_type_for(filename: str) -> str | None:
    """The MIME type of ``filename`` by its extension (case-insensitive), None when not supported."""
    match = re.search(r"(\.[A-Za-z0-9]+)$", filename.strip())
    return EXTENSIONS.get(match.group(1).lower()) if match else None
