"""Who is calling: the authenticated principal every control-plane route works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str | None
    is_admin: bool
    via: Literal["token", "session"]
    token_id: str | None = None  # the API token's id (never the token itself)
    scopes: frozenset[str] = field(default_factory=frozenset)
    csrf_token: str | None = None  # browser sessions: the value state-changing requests must echo

    @property
    def label(self) -> str:
        """How the principal appears in the audit log."""
        return self.email or self.user_id
