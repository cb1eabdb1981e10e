"""What a conversation turn knows besides the messages: files shared in the thread, and the
knowledge base searched with the asker's access.

**Files.** When a message carries files, the worker downloads each (bot token, type allow-list,
size limit: :mod:`insightmesh.slack.files`), extracts its text (:mod:`insightmesh.knowledge.extract`)
and keeps it in the thread's state, so later turns of the thread still see it. A thread keeps
at most :data:`MAX_THREAD_FILES` files, :data:`MAX_FILE_CHARS` characters of each and the byte
budget of :func:`insightmesh.conversation.threads.bound_files`; each file's text is stored in an
item of its own, beside the thread item (see conversation.threads); a file that cannot be read is
reported in the reply, never fatal to it.

**Knowledge.** The agent's ``retrieve(question)`` is :class:`insightmesh.conversation.audience.
AudienceRetriever`: the knowledge base searched with the access of everyone who will read the
reply. If the store is unreachable the answer goes on without it (logged), as a conversation must
not fail because search did. While no document has ever been ingested (one ``Scan`` with
``Limit=1`` on the documents table, remembered for ``KNOWLEDGE_EMPTY_RECHECK_SECONDS``, default
:data:`EMPTY_RECHECK_SECONDS`), the search is skipped altogether — a deployment without a
knowledge base pays neither the vector store's client import (~1 s on a cold worker) nor its calls.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from insightmesh.agents.base import SharedDocument
from insightmesh.conversation.threads import bound_files
from insightmesh.observability import get_logger
from insightmesh.slack.files import SlackFileRef

MAX_THREAD_FILES: Final = 5
# All the files of one message share this many seconds (each file is also bounded by its own
# EXTRACT_TIMEOUT_SECONDS), so ten slow files cannot hold the worker past its timeout.
DEFAULT_FILES_BUDGET_SECONDS: Final = 30.0
MAX_FILE_CHARS: Final = 30_000
EMPTY_RECHECK_SECONDS: Final = 30.0

_known_documents = False
_empty_until = 0.0
_documents_lock = threading.Lock()

logger = get_logger("conversation_worker")


def read_shared_files(refs: Sequence[SlackFileRef], files: list[dict[str, str]],
                      progress: Callable[[str], None]) -> list[str]:
    """Download and extract ``refs`` into ``files`` (the thread's list, updated in place); returns
    the problems to tell the user about."""
    from insightmesh.knowledge.extract import (
        ExtractionError,
        UnsupportedDocumentError,
        extract_text,
        extraction_limits,
        failure_reason,
    )
    from insightmesh.slack.files import FileRefused, download

    problems: list[str] = []
    known = {item.get("id") for item in files}
    limits = extraction_limits()
    deadline = time.monotonic() + files_budget_seconds()
    for ref in refs:
        if ref.id in known:
            continue  # a redelivery of the same message
        left = deadline - time.monotonic()
        if left < 1.0:
            problems.append(f"I didn't read {ref.name or ref.id}: the files shared with this message took all the "
                            "time I have for one message — share it again on its own")
            continue
        progress(f"Reading {ref.name or 'the file'}…")
        try:
            downloaded = download(ref)
            seconds = min(limits.EXTRACT_TIMEOUT_SECONDS, round(left, 1))
            within = dataclasses.replace(limits, EXTRACT_TIMEOUT_SECONDS=seconds)
            text = extract_text(downloaded.content, downloaded.mime_type, filename=downloaded.name,
                                limits=within).text.strip()
        except FileRefused as refused:
            problems.append(str(refused))
            continue
        except (ExtractionError, UnsupportedDocumentError) as error:
            problems.append(f"I couldn't read {ref.name or ref.id}: {failure_reason(error)}")
            continue
        if not text:
            problems.append(f"{ref.name or ref.id} has no text to read")
            continue
        truncated = len(text) > MAX_FILE_CHARS
        files.append({"id": ref.id, "name": ref.name or ref.id,
                      "text": text[:MAX_FILE_CHARS] + ("\n[…truncated]" if truncated else "")})
        logger.info("shared file read", extra={"file_id": ref.id, "chars": len(text), "truncated": truncated})
    del files[:-MAX_THREAD_FILES]
    bound_files(files)  # the thread's byte budget (conversation.threads), before the agent reads them
    return problems


def files_budget_seconds() -> float:
    """``SHARED_FILES_BUDGET_SECONDS``: the seconds all the files of one message may take."""
    value = os.environ.get("SHARED_FILES_BUDGET_SECONDS", "").strip()
    try:
        budget = float(value) if value else DEFAULT_FILES_BUDGET_SECONDS
    except ValueError as error:
        raise ValueError(f"SHARED_FILES_BUDGET_SECONDS must be a number of seconds, not {value!r}") from error
    if budget <= 0:
        raise ValueError("SHARED_FILES_BUDGET_SECONDS must be more than 0")
    return budget


def shared_documents(files: Sequence[dict[str, str]]) -> tuple[SharedDocument, ...]:
    return tuple(SharedDocument(name=item.get("name", "file"), text=item.get("text", "")) for item in files)


def empty_recheck_seconds() -> float:
    """How long an empty knowledge base is believed empty: the first document ingested is searched
    at most this long after (``KNOWLEDGE_EMPTY_RECHECK_SECONDS``; 0 checks on every question)."""
    value = os.environ.get("KNOWLEDGE_EMPTY_RECHECK_SECONDS", "").strip()
    return max(0.0, float(value)) if value else EMPTY_RECHECK_SECONDS


def knowledge_base_has_documents() -> bool:
    """Whether any document was ever ingested (see the module docstring)."""
    global _known_documents, _empty_until
    with _documents_lock:
        if _known_documents:
            return True
        if time.monotonic() < _empty_until:
            return False
    from insightmesh.knowledge.models import KnowledgeDocument

    found = next(iter(KnowledgeDocument.scan(limit=1, attributes_to_get=["document_id"])), None) is not None
    with _documents_lock:
        _known_documents = found
        _empty_until = 0.0 if found else time.monotonic() + empty_recheck_seconds()
    return found


def reset_for_tests() -> None:
    global _known_documents, _empty_until
    with _documents_lock:
        _known_documents, _empty_until = False, 0.0
