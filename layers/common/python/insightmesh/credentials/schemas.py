"""Credential names and scopes (validated), and what the API shows of a credential.

* A **name** is 1-80 characters once surrounding white space is stripped, printable (no control
  characters, no line or paragraph separators) and not blank. Any other character is allowed —
  ``<``, ``>``, ``&``, quotes — because every page and response escapes it on output.
* **Scopes** come from :data:`GOOGLE_SCOPES`: the full Google scope URL, or its short alias
  (``drive.readonly``), which is expanded. They are stored deduplicated and sorted.
* :class:`CredentialSummary` is everything the API ever returns about a credential. It has no
  field for token material, and refuses extra fields, so none can be added by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from insightmesh.api.pagination import Page

MAX_NAME_LENGTH: Final = 80
MAX_SCOPES: Final = 8
GOOGLE_SCOPE_PREFIX: Final = "https://www.googleapis.com/auth/"
# Alias → scope URL: the Google scopes a credential may be connected with (Drive and Directory).
GOOGLE_SCOPES: Final[dict[str, str]] = {
    alias: GOOGLE_SCOPE_PREFIX + alias
    for alias in (
        "drive.readonly",
        "admin.directory.user.readonly",
        "admin.directory.group.readonly",
        "admin.directory.group.member.readonly",
    )
}
ALLOWED_SCOPES: Final = frozenset(GOOGLE_SCOPES.values())
DRIVE_READONLY: Final = GOOGLE_SCOPES["drive.readonly"]
DIRECTORY_USER_READONLY: Final = GOOGLE_SCOPES["admin.directory.user.readonly"]
DIRECTORY_GROUP_READONLY: Final = GOOGLE_SCOPES["admin.directory.group.readonly"]
DIRECTORY_GROUP_MEMBER_READONLY: Final = GOOGLE_SCOPES["admin.directory.group.member.readonly"]

Status = Literal["active", "expiring", "expired"]


def clean_name(value: str) -> str:
    """``value`` stripped, if it is a valid credential name (see the module doc); else ValueError."""
    name = value.strip()
    if not name:
        raise ValueError("the name must not be blank")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the name must be at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValueError("the name must not contain control characters or line breaks")
    return name


def expand_scope(value: str) -> str:
    """The scope URL of ``value`` (a scope URL or its alias); ValueError if it is not allowed."""
    scope = value.strip()
    scope = GOOGLE_SCOPES.get(scope, scope)
    if scope not in ALLOWED_SCOPES:
        allowed = ", ".join(sorted(GOOGLE_SCOPES))
        raise ValueError(f"{value[:100]!r} is not an allowed Google scope (allowed: {allowed}, "
                         f"or the same prefixed with {GOOGLE_SCOPE_PREFIX})")
    return scope


def normalize_scopes(values: Iterable[str]) -> list[str]:
    """The scope URLs of ``values`` (URLs or aliases), deduplicated and sorted; ValueError if one
    is not allowed or there are none."""
    scopes = sorted({expand_scope(value) for value in values})
    if not scopes:
        raise ValueError("at least one scope is required")
    return scopes


CredentialName = Annotated[str, Field(min_length=1, max_length=4 * MAX_NAME_LENGTH,
                                      description="1-80 printable characters (HTML is escaped on output)."),
                           AfterValidator(clean_name)]
ScopeList = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]],
                      Field(min_length=1, max_length=MAX_SCOPES,
                            description="Google scope URLs, or their aliases: " + ", ".join(GOOGLE_SCOPES)),
                      AfterValidator(normalize_scopes)]


class GoogleAuthorizeIn(BaseModel):
    """Start connecting a Google credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: CredentialName
    scopes: ScopeList


class AuthorizationOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    authorization_url: str = Field(description="Open this URL in the browser to consent at Google.")
    state_expires_at: datetime = Field(description="The flow must be completed before this time (10 minutes).")


class CredentialSummary(BaseModel):
    """A credential as the API shows it: never any token material.

    ``status``: ``expired`` when Google refused to refresh it (revoked, or the grant expired:
    ``status_reason`` says which) or when it has no refresh token and its access token has
    expired; ``expiring`` when it has no refresh token and its access token expires within an
    hour; ``active`` otherwise — with a refresh token the access token is renewed automatically.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="The credential's id (job parameters refer to it).")
    name: str
    provider: Literal["google"] = "google"
    scopes: list[str]
    status: Status
    status_reason: str | None = Field(default=None, description="Why a credential is expired or expiring.")
    created_by: str = Field(description="The user id of the admin who connected it.")
    created_at: datetime
    last_used_at: datetime | None = Field(default=None, description="When a job last obtained an access token.")
    last_refreshed_at: datetime | None = None
    access_expires_at: datetime | None = Field(
        default=None, description="When the current access token expires (renewed automatically when refreshable).")
    refreshable: bool = Field(description="Whether Google gave a refresh token (offline access).")


class CredentialDeleted(CredentialSummary):
    """The credential that was deleted, and whether Google confirmed the revocation."""

    revoked: bool = Field(description="True when Google revoked the grant (or no longer knew it); false when "
                                      "Google could not be reached — revoke it in the Google account then.")


CredentialPage = Page[CredentialSummary]

__all__ = [
    "ALLOWED_SCOPES",
    "DIRECTORY_GROUP_MEMBER_READONLY",
    "DIRECTORY_GROUP_READONLY",
    "DIRECTORY_USER_READONLY",
    "DRIVE_READONLY",
    "GOOGLE_SCOPES",
    "AuthorizationOut",
    "CredentialDeleted",
    "CredentialPage",
    "CredentialSummary",
    "GoogleAuthorizeIn",
    "Status",
    "clean_name",
    "expand_scope",
    "normalize_scopes",
]
