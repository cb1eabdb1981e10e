"""Drive permissions (and owners) as knowledge-base principals (see :mod:`.job`'s docstring: **ACL**)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from insightmesh.knowledge.base import ANYONE


def acl_principals(permissions: Iterable[Mapping[str, Any]],
                   owners: Iterable[Mapping[str, Any]] = ()) -> tuple[str, ...]:
    """Drive permissions (and owners) as knowledge-base principals, sorted (see the module doc)."""
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

