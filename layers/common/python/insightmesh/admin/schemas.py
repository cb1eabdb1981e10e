"""The admin API's request and response models: validated input, documented output.

Names of groups are lower-case slugs (:data:`NAME_PATTERN`); agent names follow the registry's
rule (:data:`insightmesh.agents.catalog.AGENT_NAME_PATTERN`); every string has a bounded length
and request bodies refuse unknown fields — anything else is a 422 with the error envelope.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from insightmesh.agents.catalog import Visibility
from insightmesh.api.pagination import Page
from insightmesh.directory.email_users import MAX_EMAIL_LENGTH, InvalidEmailError, valid_email
from insightmesh.tools.registry import TOOLS

NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{1,39}$"
AGENT_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # = insightmesh.agents.catalog's rule
# A word people type to call an agent: a slug (a digit may start it) or the single "?" of help.
ALIAS_PATTERN: Final = r"^(\?|[a-z0-9][a-z0-9_-]{0,39})$"
USER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
PRINCIPAL_PATTERN: Final = r"^(group:[a-z][a-z0-9_-]{1,39}|user:[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127})$"
MAX_ALIASES: Final = 10
MAX_DISPLAY_NAME: Final = 80
MAX_DESCRIPTION: Final = 500
VISIBILITY_DESCRIPTION: Final = ("Who may use the agent: `public` (every active user), `admins` (admins only) or "
                                 "`restricted` (only the users and groups with an allow grant). A deny grant always "
                                 "wins.")

TOOLS_DESCRIPTION: Final = ("The tools the agent may use (knowledge_search, web_search, read_url, sec_filings); "
                           "a channel's `tools` setting narrows them there.")


def _known_tool(value: str) -> str:
    if value not in TOOLS:
        raise ValueError(f"unknown tool {value!r}; the tools are: {', '.join(sorted(TOOLS))}")
    return value


# A tool admins may enable: a name the tool registry holds.
ToolName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_tool)]
GroupName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Alias = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN)]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DISPLAY_NAME)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION)]


def _email(value: str) -> str:
    try:
        return valid_email(value)
    except InvalidEmailError as error:
        raise ValueError(str(error)) from None


# An address, normalised (trimmed, lower-cased) as the directory stores it.
Email = Annotated[str, StringConstraints(min_length=3, max_length=MAX_EMAIL_LENGTH), AfterValidator(_email)]
EMAIL_DESCRIPTION: Final = ("A user, by e-mail address: the directory user with that address (404 if there is "
                            "none; find people with GET /api/users?email= or ?email_prefix=).")


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
    is_system: bool = Field(description="A built-in agent: cannot be disabled or deleted (it can be restricted, "
                                        "except help).")
    visibility: Visibility = Field(description=VISIBILITY_DESCRIPTION)
    enabled: bool
    deleted: bool
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Send it back in PATCH: a concurrent change makes the PATCH a 409. "
                                     "Every change of the record increments it, grant counts included.")
    group_count: int | None = Field(description="Groups holding a grant (allow or deny); admins only.")
    user_count: int | None = Field(description="Users holding a grant (allow or deny); admins only.")
    tools: list[str] = Field(default_factory=list, description=TOOLS_DESCRIPTION)


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
    email: str | None = Field(default=None, description="A user grant's e-mail in a listing (one BatchGetItem a page); "
                                                        "null for a group, or a user without an address.")


class AgentDetail(AgentOut):
    grants: list[GrantOut] = Field(description="Who has access: the first page of the agent's grants.")
    grants_next_cursor: str | None = Field(description="Continue with GET /api/agents/{name}/grants?cursor=.")


class AgentPatch(_Request):
    version: int = Field(ge=1, description="The version you read; a concurrent change since then is a 409.")
    display_name: DisplayName | None = None
    description: Description | None = None
    aliases: list[Alias] | None = Field(default=None, max_length=MAX_ALIASES,
                                        description="Replaces the aliases; unique across agents (409).")
    visibility: Visibility | None = Field(default=None, description=VISIBILITY_DESCRIPTION + " `help` must stay "
                                          "public (409): it tells people which agents they may use.")
    tools: list[ToolName] | None = Field(default=None, max_length=len(TOOLS),
                                         description=TOOLS_DESCRIPTION + " Replaces the list; [] disables every tool.")

    @model_validator(mode="before")
    @classmethod
    def _replaced_flags(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for flag, meaning in (("is_public", "public"), ("requires_admin", "admins")):
                if flag in data:
                    raise ValueError(f"{flag} is replaced by visibility: send \"visibility\": \"{meaning}\", "
                                     "\"admins\" or \"restricted\" (only users and groups with an allow grant)")
        return data

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("aliases must be distinct")
        return value

    @field_validator("tools")
    @classmethod
    def _distinct_tools(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("tools must be distinct")
        return value

    @model_validator(mode="after")
    def _something(self) -> AgentPatch:
        if (self.display_name is None and self.description is None and self.aliases is None
                and self.visibility is None and self.tools is None):
            raise ValueError("nothing to change: give display_name, description, aliases, visibility or tools")
        return self


class GrantIn(_Request):
    """Who: ``principal_type`` and ``principal_id`` (a group's name or a user's id), or a user by
    ``user_id`` or ``email`` alone — exactly one of ``principal_id``, ``user_id`` and ``email``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"principal_type": "group", "principal_id": "sales", "effect": "allow"},
        {"email": "ada@example.com", "effect": "allow"},
        {"user_id": "U0ADA", "effect": "deny", "expires_at": "2030-01-01T00:00:00Z"},
    ]})

    principal_type: Literal["group", "user"] | None = Field(
        default=None, description="Required with principal_id; implied (user) by user_id or email.")
    principal_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="The group's name, or the user's id.")
    user_id: UserId | None = Field(default=None, description="A user, by directory user id.")
    email: Email | None = Field(default=None, description=EMAIL_DESCRIPTION)
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
        named = [field for field in ("principal_id", "user_id", "email") if getattr(self, field) is not None]
        if len(named) != 1:
            raise ValueError("name who the grant is for once: principal_type with principal_id, or user_id, "
                             "or email")
        if self.principal_id is None:
            if self.principal_type == "group":
                raise ValueError(f"{named[0]} names a user: give principal_type user (or leave it out), or "
                                 "principal_id for a group")
            return self
        if self.principal_type is None:
            raise ValueError("principal_type (group or user) is required with principal_id")
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
    """The user to add, by ``user_id`` or by ``email`` (exactly one)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}, {"user_id": "U0ADA"}]})

    user_id: UserId | None = Field(default=None, description="The directory user id.")
    email: Email | None = Field(default=None, description=EMAIL_DESCRIPTION)

    @model_validator(mode="after")
    def _one(self) -> MemberIn:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give the user_id or the email of the user to add (exactly one)")
        return self


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


class IdentityOut(_Response):
    """One provider account linked to the user (Slack, Google, e-mail claim, ...)."""

    provider_type: str
    provider_user_id: str
    provider_email: str | None
    is_primary: bool
    is_active: bool
    created_at: datetime
    last_seen_at: datetime | None


class UserDetail(UserOut):
    groups: list[str] = Field(description="The groups the user belongs to.")
    identities: list[IdentityOut] = Field(default_factory=list, description="The user's provider accounts.")
    agents: list[UsableAgent] = Field(default_factory=list, description="The agents the user may use, by the rule "
                                                                        "the conversation worker applies.")


class AdminFlagIn(_Request):
    is_admin: bool


# -- audit and me ---------------------------------------------------------------------------------


class AuditEntryOut(_Response):
    id: str = Field(description="The entry's sort key: <timestamp>#<uuid>.")
    target: str
    target_label: str | None = Field(default=None, description="Who or what the target is, for people: a user's "
                                                               "e-mail next to user:<id> (null when not recorded).")
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
