"""Drive permissions (and owners) as knowledge-base principals (see :mod:`.job`'s docstring: **ACL**).

A ``group`` permission becomes ``group:<group e-mail>``; when a directory group has that e-mail (a
Google group the Workspace directory sync mirrors: ``directory.models.Group.email``, lower-case),
it also becomes ``group:<that group's name>`` — the form an admin uses for the directory's groups
(``insightmesh ingest --acl group:<name>``, ``GET /api/knowledge/documents?acl=group:<name>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from insightmesh.knowledge.base import ANYONE, GROUP_PREFIX


def acl_principals(permissions: Iterable[Mapping[str, Any]],
                   owners: Iterable[Mapping[str, Any]] = (),
                   directory_groups: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Drive permissions (and owners) as knowledge-base principals, sorted (see the module doc).
    ``directory_groups`` maps a directory group's e-mail (lower-case) to its name."""
    found: set[str] = set()
    link_only = False  # shared with "anyone with the link": not discoverable, so not everyone
    for item in permissions:
        if item.get("deleted") is True:
            continue
        kind = item.get("type")
        if kind in ("user", "group"):
            email = item.get("emailAddress")
            if isinstance(email, str) and "@" in email.strip():
                found.add(f"{kind}:{email.strip().lower()}")
                name = (directory_groups or {}).get(email.strip().lower()) if kind == "group" else None
                if name:
                    found.add(f"{GROUP_PREFIX}{name}")
        elif kind == "domain":
            domain = item.get("domain")
            if isinstance(domain, str) and domain.strip():
                found.add(f"domain:{domain.strip().lower()}")
        elif kind == "anyone":
            if item.get("allowFileDiscovery") is True:  # public on the web: anyone may find and read it
                found.add(ANYONE)
            else:
                link_only = True
    for owner in owners:
        email = owner.get("emailAddress")
        if isinstance(email, str) and "@" in email.strip():
            found.add(f"user:{email.strip().lower()}")
            if link_only:  # the link circulates in the owner's organisation
                found.add(f"domain:{email.strip().rsplit('@', 1)[1].lower()}")
    return tuple(sorted(found))

