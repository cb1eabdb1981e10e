"""The knowledge base's shared vocabulary: what goes in (:class:`SourceDocument`), who asks
(:class:`Viewer`) and what comes out (:class:`Passage`).

Access control lists are tuples of principals, stored with every chunk and matched inside the
Qdrant query (a payload filter on the keyword-indexed ``acl`` field), never after it:

* ``"anyone"`` — everyone (a Drive file shared with anyone, or a local upload marked public);
* ``"domain:example.com"`` — everyone whose e-mail is in that domain;
* ``"user:alice@example.com"`` — that person (e-mail, lower-case);
* ``"group:sales"`` — the members of the directory group named ``sales`` (a group an admin made,
  or one a directory sync mirrors; the name is a lower-case slug, never with an ``@``);
* ``"group:sales@example.com"`` — the members of the group with that e-mail (a Google group as
  Drive names it; lower-case). A Drive permission for a group the directory mirrors carries both
  forms (:mod:`insightmesh.knowledge.sources.gdrive.acl`).

One prefix, ``group:``, for both: an ``@`` tells an e-mail from a name. A viewer's principals
hold every group they belong to by name, and by e-mail when the group has one, so either form
matches its members. A viewer matches a chunk when any of :meth:`Viewer.principals` is in its
``acl``; :func:`normalise_principals` is the grammar every writer checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

ANYONE: Final = "anyone"
GROUP_PREFIX: Final = "group:"
GROUP_NAME_PATTERN: Final = r"[a-z][a-z0-9_-]{1,39}"  # a directory group's name (the admin API's rule)
PRINCIPAL_RE: Final = re.compile(
    r"^(anyone|domain:[a-z0-9-]+(\.[a-z0-9-]+)+|(user|group):[^@\s]+@[a-z0-9-]+(\.[a-z0-9-]+)+"
    rf"|group:{GROUP_NAME_PATTERN})$")
PRINCIPAL_FORMS: Final = "anyone, domain:<domain>, user:<e-mail>, group:<group name> or group:<group e-mail>"


def normalise_principals(principals: Iterable[str]) -> tuple[str, ...]:
    """Principals lower-cased and deduplicated, in order; ValueError names any that is not one."""
    normalised = tuple(dict.fromkeys(principal.strip().lower() for principal in principals))
    bad = [principal for principal in normalised if not PRINCIPAL_RE.match(principal)]
    if bad:
        raise ValueError(f"not a principal ({PRINCIPAL_FORMS}): {', '.join(bad)}")
    return normalised


def group_names(principals: Iterable[str]) -> list[str]:
    """The directory group names among ``principals`` (``group:<name>``, not ``group:<e-mail>``)."""
    return sorted({principal[len(GROUP_PREFIX):] for principal in principals
                   if principal.startswith(GROUP_PREFIX) and "@" not in principal})


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
    """Who is asking: their e-mail, their groups (each by name, and by e-mail when it has one),
    and any further domains they belong to (a channel member the directory does not know yet is a
    member of the workspace's domain, and nothing more)."""

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


@dataclass(frozen=True)
class DocumentOutcome:
    """What one ingestion did with one document, and the ACL it was given (for the audit log)."""

    document_id: str
    title: str
    outcome: str  # "new" | "changed" | "unchanged" | "failed"
    acl: tuple[str, ...]


@dataclass
class IngestReport:
    """Counts of one ingestion (per document), the documents that failed, with why, and what
    became of each document seen (``outcomes``, in order)."""

    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    chunks_written: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # document_id -> error message
    outcomes: list[DocumentOutcome] = field(default_factory=list)
