"""What a ``gdrive_ingest`` checkpoint holds: the counts, the walk, the sweep digests (see :mod:`.job`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from insightmesh.job_contract import load_counts
from insightmesh.knowledge.base import IngestReport

CHECKPOINT_VERSION: Final = 1
MAX_SWEEP_DOCUMENTS: Final = 25_000  # 6-byte digests: ~200 KB of checkpoint
DIGEST_BYTES: Final = 6


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()[:DIGEST_BYTES]


def pack(digests: Iterable[bytes]) -> str:
    return base64.b64encode(b"".join(sorted(digests))).decode("ascii")


def unpack(text: str) -> set[bytes]:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    return {raw[start:start + DIGEST_BYTES] for start in range(0, len(raw), DIGEST_BYTES)}


# -- counters and checkpoints ----------------------------------------------------------------------


@dataclass
class Counts:
    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    skipped: int = 0
    skipped_unsupported: int = 0
    skipped_google_type: int = 0
    skipped_too_large: int = 0
    skipped_shared_drive: int = 0
    skipped_no_readers: int = 0
    vanished: int = 0
    listed: int = 0
    folders: int = 0
    pages: int = 0
    downloads: int = 0
    exports: int = 0
    bytes_downloaded: int = 0
    not_downloaded: int = 0
    permission_lookups: int = 0
    chunks_written: int = 0
    http_retries: int = 0
    reauthentications: int = 0

    def add_report(self, report: IngestReport) -> None:
        for name in ("seen", "new", "changed", "unchanged", "failed", "chunks_written"):
            setattr(self, name, getattr(self, name) + int(getattr(report, name)))


@dataclass
class State:
    """Everything a checkpoint holds (see the module docstring)."""

    fingerprint: str
    source: str
    run_id: str
    root_done: bool = False  # the root was read (and, for a file, ingested)
    stack: list[str] = field(default_factory=list)  # folders still to list (the last first)
    folder: str | None = None  # the folder being listed
    page_token: str | None = None  # the token of the page being worked (None: its first page)
    page: int = 1
    done: list[str] = field(default_factory=list)  # ids of that page already handled
    counts: Counts = field(default_factory=Counts)
    errors: dict[str, str] = field(default_factory=dict)
    candidates: set[bytes] | None = None  # sweep: digests of the source's documents not yet seen
    sweep_skipped: str | None = None
    finished: bool = False  # the run ended (an error after the listing): the next one starts over

    def checkpoint(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "parameters": self.fingerprint, "source": self.source,
                "run_id": self.run_id, "root_done": self.root_done, "stack": list(self.stack),
                "folder": self.folder, "page_token": self.page_token, "page": self.page, "done": list(self.done),
                "counts": asdict(self.counts), "errors": dict(self.errors),
                "candidates": None if self.candidates is None else pack(self.candidates),
                "sweep_skipped": self.sweep_skipped, "finished": self.finished}

    @classmethod
    def restore(cls, saved: Mapping[str, Any]) -> State:
        stack, done, errors = saved.get("stack"), saved.get("done"), saved.get("errors")
        candidates = saved.get("candidates")
        return cls(fingerprint=str(saved["parameters"]), source=str(saved["source"]), run_id=str(saved["run_id"]),
                   root_done=bool(saved.get("root_done")),
                   stack=[str(item) for item in stack] if isinstance(stack, list) else [],
                   folder=str(saved["folder"]) if saved.get("folder") else None,
                   page_token=str(saved["page_token"]) if saved.get("page_token") else None,
                   page=int(saved.get("page") or 1),
                   done=[str(item) for item in done] if isinstance(done, list) else [],
                   counts=load_counts(Counts, saved.get("counts")),
                   errors={str(k): str(v) for k, v in errors.items()} if isinstance(errors, Mapping) else {},
                   candidates=unpack(candidates) if isinstance(candidates, str) else None,
                   sweep_skipped=str(saved["sweep_skipped"]) if saved.get("sweep_skipped") else None)

