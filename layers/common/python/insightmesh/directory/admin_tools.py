"""Operator actions on the directory that never go over HTTP (the CLI's): make the first admin,
and audit what the CLI did. Users are found or created by e-mail with
:func:`insightmesh.directory.email_users.find_or_create_user_by_email` (claimed by an
``email#<address>`` identity, so concurrent commands, sign-ins and syncs create one user).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from insightmesh.directory.email_users import find_or_create_user_by_email
from insightmesh.directory.models import User


def make_admin(email: str, *, actor: str) -> tuple[User, bool]:
    """Make the user with ``email`` (created if needed) an active admin; audited. Idempotent."""
    user = find_or_create_user_by_email(email, added_by="cli")
    if user.is_admin and user.is_active:
        return user, False
    before = {"is_admin": bool(user.is_admin), "is_active": bool(user.is_active)}
    user.update(actions=[User.is_admin.set(True), User.is_active.set(True)])
    audit_cli(action="user.bootstrap_admin", target=f"user:{user.user_id}", target_label=user.email, before=before,
              after={"is_admin": True, "is_active": True}, actor=actor)
    return user, True


@dataclass(frozen=True)
class CliActor:
    """The operator a CLI command acts for, as the audit log records them (an ``audit.log.Actor``)."""

    user_id: str

    @property
    def label(self) -> str:
        return self.user_id


def audit_cli(*, action: str, target: str, actor: str, before: Any = None, after: Any = None,
              target_label: str | None = None) -> None:
    """Record what a CLI command did; ``target_label`` names the target for people (a user's e-mail)."""
    from insightmesh.audit.log import record

    record(actor=CliActor(actor), action=action, target=target, before=before, after=after,
           request_id=f"cli-{uuid.uuid4()}", target_label=target_label)
