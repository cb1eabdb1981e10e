"""The knowledge base's shared vocabulary: what goes in (:class:`SourceDocument`), who asks
(:class:`Viewer`) and what comes out (:class:`Passage`).

Access control lists are tuples of principals, stored with every chunk and matched inside the
Qdrant query (a payload filter on the keyword-indexed ``acl`` field), never after it:

* ``"anyone"`` — everyone (a Drive file shared with anyone, or a local upload marked public);
* ``"domain:example.com"`` — everyone whose e-mail is in that domain;
* ``"user:alice@example.com"`` — that person (e-mail, lower-case);
* ``"group:sales@example.com"`` — the members of that group (the group's e-mail, lower-case).

A viewer matches a chunk when any of :meth:`Viewer.principals` is in its ``acl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

ANYONE: Final = "anyone"


@dataclass(frozen=True)
class SourceDocument:
    """One document to ingest, as its source delivers it."""

    document_id: str  # stable and unique: "gdrive:<file id>", "local:<sha256 of the absolute path>", "slack:..."
    source: str  # the sweep scope: "gdrive:<root folder or file id>", "local:<root path>"
    title: str
    mime_type: str  # of ``content`` (a Google Doc arrives exported, e.g. text/plain)
    content: bytes
    url: str | None = None  # Drive's webViewLink, or a file:// URL
    modified_time: datetime | None = None
    acl: tuple[str, ...] = (ANYONE,)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: their e-mail, the e-mails of their groups, and any further domains they
    belong to (a channel member the directory does not know yet is a member of the workspace's
    domain, and nothing more)."""

    email: str | None
    groups: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    @property
    def domain(self) -> str | None:
        if not self.email or "@" not in self.email:
            return None
        return self.email.rsplit("@", 1)[1].lower()

    def principals(self) -> list[str]:
        found = [ANYONE]
        if self.email:
            found.append(f"user:{self.email.lower()}")
        domains = [self.domain] if self.domain else []
        found += [f"domain:{domain}" for domain in dict.fromkeys([*domains, *(d.lower() for d in self.domains)])]
        found += [f"group:{group.lower()}" for group in self.groups]
        return found


@dataclass(frozen=True)
class Audience:
    """Everyone who will read an answer. A document qualifies only when **every** reader may
    see it: the query requires, for each reader, one of their principals in the chunk's ``acl``
    (a conjunction of ``MatchAny`` conditions, inside the Qdrant query). ``anyone`` is in every
    reader's principals, so what is shared with anyone always qualifies.

    ``scope`` says how the audience was found, for logs and for the private follow-up:
    ``asker`` (a DM with the bot, or an ephemeral answer), ``members`` (every member of the
    conversation), ``workspace`` (a conversation too large to resolve: the workspace's domain and
    ``anyone``) or ``public`` (nothing known: ``anyone`` only)."""

    viewers: tuple[Viewer, ...]
    scope: str = "asker"

    @classmethod
    def of(cls, viewer: Viewer) -> Audience:
        return cls((viewer,), "asker")

    @property
    def is_private(self) -> bool:
        """Only the asker reads the answer."""
        return self.scope == "asker"

    def principal_sets(self) -> list[list[str]]:
        """One principal list per distinct reader (readers with the same principals collapse)."""
        seen: dict[frozenset[str], list[str]] = {}
        for viewer in self.viewers or (Viewer(email=None),):
            principals = viewer.principals()
            seen.setdefault(frozenset(principals), principals)
        return list(seen.values())


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk."""

    document_id: str
    title: str
    url: str | None
    text: str
    score: float
    chunk_index: int
    heading: str | None = None
    mime_type: str | None = None


@dataclass
class IngestReport:
    """Counts of one ingestion (per document) and the documents that failed, with why."""

    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    chunks_written: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # document_id -> error message
