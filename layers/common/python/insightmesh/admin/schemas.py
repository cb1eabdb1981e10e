"""The admin API's request and response models: validated input, documented output.

Names of groups are lower-case slugs (:data:`NAME_PATTERN`); agent names follow the registry's
rule (:data:`insightmesh.agents.catalog.AGENT_NAME_PATTERN`); every string has a bounded length
and request bodies refuse unknown fields — anything else is a 422 with the error envelope.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from insightmesh.api.pagination import Page

NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{1,39}$"
AGENT_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # = insightmesh.agents.catalog's rule
# A word people type to call an agent: a slug (a digit may start it) or the single "?" of help.
ALIAS_PATTERN: Final = r"^(\?|[a-z0-9][a-z0-9_-]{0,39})$"
USER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
PRINCIPAL_PATTERN: Final = r"^(group:[a-z][a-z0-9_-]{1,39}|user:[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127})$"
MAX_ALIASES: Final = 10
MAX_DISPLAY_NAME: Final = 80
MAX_DESCRIPTION: Final = 500

GroupName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Alias = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN)]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DISPLAY_NAME)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- agents and grants ----------------------------------------------------------------------------


class AgentOut(_Response):
    name: str
    display_name: str
    description: str
    aliases: list[str]
    is_system: bool = Field(description="A built-in agent: cannot be disabled or deleted.")
    is_public: bool
    requires_admin: bool
    enabled: bool
    deleted: bool
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Send it back in PATCH: a concurrent change makes the PATCH a 409. "
                                     "Every change of the record increments it, grant counts included.")
    group_count: int | None = Field(description="Groups holding a grant (allow or deny); admins only.")
    user_count: int | None = Field(description="Users holding a grant (allow or deny); admins only.")


class GrantOut(_Response):
    agent_name: str
    principal: str = Field(description="group:<name> or user:<user_id>, as DELETE .../grants/{principal} takes it.")
    principal_type: Literal["group", "user"]
    principal_id: str
    effect: Literal["allow", "deny"]
    expires_at: datetime | None
    expired: bool
    granted_by: str | None
    created_at: datetime


class AgentDetail(AgentOut):
    grants: list[GrantOut] = Field(description="Who has access: the first page of the agent's grants.")
    grants_next_cursor: str | None = Field(description="Continue with GET /api/agents/{name}/grants?cursor=.")


class AgentPatch(_Request):
    version: int = Field(ge=1, description="The version you read; a concurrent change since then is a 409.")
    display_name: DisplayName | None = None
    description: Description | None = None
    aliases: list[Alias] | None = Field(default=None, max_length=MAX_ALIASES,
                                        description="Replaces the aliases; unique across agents (409).")

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("aliases must be distinct")
        return value

    @model_validator(mode="after")
    def _something(self) -> AgentPatch:
        if self.display_name is None and self.description is None and self.aliases is None:
            raise ValueError("nothing to change: give display_name, description or aliases")
        return self


class GrantIn(_Request):
    principal_type: Literal["group", "user"]
    principal_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    effect: Literal["allow", "deny"] = "allow"
    expires_at: datetime | None = Field(default=None, description="Ignored after this time (UTC if no offset).")

    @field_validator("expires_at")
    @classmethod
    def _future_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            expires = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise ValueError("expires_at is out of range") from None
        if expires <= datetime.now(UTC):
            raise ValueError("expires_at must be in the future")
        return expires

    @model_validator(mode="after")
    def _principal_id(self) -> GrantIn:
        pattern = NAME_PATTERN if self.principal_type == "group" else USER_ID_PATTERN
        if not re.fullmatch(pattern, self.principal_id):
            raise ValueError(f"principal_id of a {self.principal_type} must match {pattern}")
        return self


# -- groups and members ---------------------------------------------------------------------------


class GroupOut(_Response):
    name: str
    description: str
    is_system: bool = Field(description="A system group (all_users): cannot be changed, deleted or have "
                                        "members added or removed by hand.")
    created_at: datetime


class GroupDetail(GroupOut):
    grants: list[GrantOut] = Field(description="The agents granted (or denied) to this group, first page.")


class GroupCreate(_Request):
    name: GroupName
    description: Description = ""


class GroupPatch(_Request):
    description: Description


class MemberIn(_Request):
    user_id: UserId


class MemberOut(_Response):
    user_id: str
    group_name: str
    added_at: datetime
    added_by: str | None
    email: str | None
    display_name: str | None
    is_active: bool | None


# -- users ----------------------------------------------------------------------------------------


class UserOut(_Response):
    user_id: str
    email: str | None
    display_name: str
    real_name: str | None
    is_active: bool
    is_admin: bool
    is_bot: bool
    primary_provider: str
    created_at: datetime
    last_synced_at: datetime | None
    version: int | None


class UserDetail(UserOut):
    groups: list[str] = Field(description="The groups the user belongs to.")


class AdminFlagIn(_Request):
    is_admin: bool


# -- audit and me ---------------------------------------------------------------------------------


class AuditEntryOut(_Response):
    id: str = Field(description="The entry's sort key: <timestamp>#<uuid>.")
    target: str
    at: datetime
    actor: str
    actor_id: str
    action: str
    outcome: Literal["allowed", "denied"]
    reason: str | None
    before: Any = None
    after: Any = None
    request_id: str


class UsableAgent(_Response):
    name: str
    display_name: str
    description: str
    aliases: list[str]


class MeOut(_Response):
    user_id: str
    email: str | None
    display_name: str
    is_admin: bool
    via: Literal["token", "session"]
    agents: list[UsableAgent] = Field(description="The agents you may use.")
    groups: list[str] = Field(default_factory=list, description="The groups you are a member of, by name.")


class TokenOut(_Response):
    token_id: str = Field(description="The token's public id (never its secret).")
    name: str
    scopes: list[str]
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenList(_Response):
    items: list[TokenOut] = Field(description="Every token of yours, newest first (revoked and expired included).")


AgentPage = Page[AgentOut]
GrantPage = Page[GrantOut]
GroupPage = Page[GroupOut]
MemberPage = Page[MemberOut]
UserPage = Page[UserOut]
AuditPage = Page[AuditEntryOut]
