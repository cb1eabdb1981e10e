"""Job type ``google_workspace_sync``: Google Workspace's people and groups mirrored into the directory.

**Users.** ``GET /admin/directory/v1/users`` (``customer`` — or ``domain`` when one is given —
``maxResults = page_size``, ``projection=basic``, ``orderBy=email``, paginated by
``nextPageToken``) feeds :func:`insightmesh.directory.sync.sync_users` as identities
``google#<directory user id>`` in the sync scope ``google#<domain or customer>``. A suspended or
archived account is an inactive record; ``primary`` sets ``is_primary_hint`` (Google as the HR
source of truth: a Google account linked by e-mail to an existing Slack user becomes that user's
primary identity). Matching by e-mail and deactivating the accounts Google no longer lists are
``sync_users``'s.

**Groups** (``sync_groups``). ``GET /admin/directory/v1/groups`` and, per group,
``GET /admin/directory/v1/groups/{id}/members?includeDerivedMembership=true`` (members of nested
groups included). Each Google group becomes a directory :class:`~insightmesh.directory.models.Group`
named ``gw-<slug of the address's local part>`` (``^[a-z][a-z0-9_-]{1,39}$``; see
:func:`group_name_candidates` for overflow and collisions) with ``source = "google"`` and
``external_id`` = the Google group id. The sync writes a group only when the name is free or the
group is already its own (a conditional ``PutItem``): system groups and groups an admin created are
never touched. Members of type ``USER`` are mapped to directory users through the identities the
user sync wrote (``google#<id>``, else the e-mail claim ``email#<address>``) with BatchGetItem
(≤ 100 keys a call); other member types (``GROUP``, ``CUSTOMER``) and unknown people are counted
and skipped. A group's memberships are read with one paginated Query on its hash key; new ones are
written with ``Membership.batch_write`` (25 a call) page by page, and those Google no longer lists
are deleted once its last member page is read. With ``deactivate_missing``, groups of this sync
scope that Google no longer lists lose their memberships and are deleted — unless an agent is
granted to them, in which case the (now empty) group is kept for an admin to decide.

**Calls.** Plain REST over httpx through :mod:`insightmesh.google_api` (shared with
``gdrive_ingest``): one process-wide client with explicit timeouts, the ``google_directory`` circuit
breaker and a bounded retry policy (HTTP 429, 5xx, Google's ``rateLimitExceeded``/
``userRateLimitExceeded`` 403s and transport errors are retried with backoff honouring
``Retry-After``, each retry logged and counted as ``http_retries``). A 401 fetches the access token
again once (it may have been refreshed since) and repeats the call; a second 401 fails the run with
:class:`~insightmesh.google_api.GoogleAuthError`. Base URL: ``GOOGLE_DIRECTORY_API_URL``
(default https://admin.googleapis.com). The token comes from the credential ``credential_id``
through the job context's ``credential_token`` (the runner's stored credential; injectable:
``GoogleWorkspaceSync(token_provider=...)``).

**Checkpoints** (after each users page, each group, each groups page and each removed group):
``{"sync_run_id", "scope", "phase": "users" | "groups" | "groups_sweep", "cursor", "listing_done",
"pages_done", "progress", "counts", "users_swept", "groups_cursor", "groups_done",
"groups_pages_done", "group_counts", "parameters"}``. A resumed run continues the users listing
from ``cursor`` with the same sync run id (or finishes its sweep), re-reads the groups page at
``groups_cursor`` skipping the groups in ``groups_done`` (a group interrupted between its member
pages is redone: additions are idempotent), or continues the group sweep. A checkpoint of other
parameters is discarded; a page token Google no longer accepts (HTTP 400) restarts that listing.

**Refusals.** A listing that gives no user to sync, or a sweep that would deactivate more than
``max_deactivate_percent`` (default 20) of the users the sync manages, deactivates no one: the run
fails with :class:`~insightmesh.directory.sync.SyncRefusedError` (the reason and the numbers), the
warning ("listed 0 users", "would deactivate 9 of 10 users") is recorded on the run, the numbers
are in its summary, and the checkpoint is cleared so that the next run lists again.

**Counts.** ``processed``: users and groups Google listed; ``succeeded``: users synced plus groups
whose memberships were mirrored; ``failed``: user records the sync could not write plus groups
that could not be named or written.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator
from pynamodb.exceptions import PutError

from insightmesh.clock import utc_now
from insightmesh.directory.email_users import claim_key
from insightmesh.directory.models import (
    GROUP_KIND,
    Grant,
    Group,
    Identity,
    Membership,
    group_principal,
    identity_key,
    normalize_domain,
    normalize_email,
)
from insightmesh.directory.providers import max_deactivate_percent_field, refuse, sync_run_id_for
from insightmesh.directory.sync import ProviderUser, SyncProgress, sync_users
from insightmesh.directory.users import SYSTEM_ACTOR
from insightmesh.google_api import (
    ATTEMPTS,
    AccessTokenProvider,
    ApiPage,
    GoogleApi,
    GoogleApiError,
    api_breaker,
    api_url,
    http_client,
)
from insightmesh.google_api import GoogleAuthError as GoogleAuthError  # re-exported: a refused token's error
from insightmesh.job_contract import (
    JobContext,
    JobParameters,
    JobResult,
    checkpoint_matches,
    load_counts,
    parameters_fingerprint,
    parameters_of,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitBreaker, Timeouts

PROVIDER: Final = "google"
DEFAULT_API_URL: Final = "https://admin.googleapis.com"
API_URL_VARIABLE: Final = "GOOGLE_DIRECTORY_API_URL"
USER_SCOPE: Final = "https://www.googleapis.com/auth/admin.directory.user.readonly"
GROUP_SCOPE: Final = "https://www.googleapis.com/auth/admin.directory.group.readonly"  # groups and members
MAX_USERS_PAGE: Final = 500  # users.list maxResults limit
MAX_GROUPS_PAGE: Final = 200  # groups.list and members.list maxResults limit
GROUP_NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_-]{1,39}$")
GROUP_PREFIX: Final = "gw-"
MAX_GROUP_NAME: Final = 40
MAX_DESCRIPTION: Final = 500
TIMEOUTS: Final = Timeouts(connect=3.0, read=20.0)
BREAKER: Final = "google_directory"
CHECKPOINT_VERSION: Final = 1
USERS_FIELDS: Final = "nextPageToken,users(id,primaryEmail,name/fullName,suspended,archived)"
GROUPS_FIELDS: Final = "nextPageToken,groups(id,email,name,description)"
MEMBERS_FIELDS: Final = "nextPageToken,members(id,email,type,status)"


# -- parameters ------------------------------------------------------------------------------------


class GoogleWorkspaceSyncParameters(JobParameters):
    credential_id: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    customer: str = Field(default="my_customer", pattern=r"^[A-Za-z0-9_]{1,64}$")
    domain: str | None = None  # only this domain's users and groups (else the whole customer)
    sync_groups: bool = True
    primary: bool = True  # Google is the source of truth for the people it lists (is_primary_hint)
    page_size: int = Field(default=200, ge=1, le=MAX_USERS_PAGE)
    deactivate_missing: bool = True
    max_deactivate_percent: float = max_deactivate_percent_field()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return None if value is None else normalize_domain(value)


# -- errors and the token --------------------------------------------------------------------------

GoogleDirectoryError = GoogleApiError  # the Directory API refused a request (or kept failing after the retries)


def required_scopes(parameters: GoogleWorkspaceSyncParameters) -> tuple[str, ...]:
    return (USER_SCOPE, GROUP_SCOPE) if parameters.sync_groups else (USER_SCOPE,)


# -- the Directory API ------------------------------------------------------------------------------


class DirectoryApi(GoogleApi):
    """The three Directory API v1 GETs the sync needs (retries, breaker and token refresh: GoogleApi's)."""

    def __init__(self, *, base_url: str, token: Callable[[], str], http: httpx.Client,
                 breaker: CircuitBreaker, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(service="Google Directory API", base_url=base_url, token=token, http=http,
                         breaker=breaker, attempts=attempts, sleep=sleep, timeouts=TIMEOUTS)

    def users(self, *, customer: str, domain: str | None, page_size: int, page_token: str | None) -> ApiPage:
        scope = {"domain": domain} if domain else {"customer": customer}
        return self.page("/admin/directory/v1/users", "users",
                         {**scope, "maxResults": min(page_size, MAX_USERS_PAGE), "pageToken": page_token,
                          "projection": "basic", "orderBy": "email", "fields": USERS_FIELDS})

    def groups(self, *, customer: str, domain: str | None, page_size: int, page_token: str | None) -> ApiPage:
        scope = {"domain": domain} if domain else {"customer": customer}
        return self.page("/admin/directory/v1/groups", "groups",
                         {**scope, "maxResults": min(page_size, MAX_GROUPS_PAGE), "pageToken": page_token,
                          "fields": GROUPS_FIELDS})

    def members(self, group_key: str, *, page_size: int, page_token: str | None) -> ApiPage:
        return self.page(f"/admin/directory/v1/groups/{quote(group_key, safe='')}/members", "members",
                         {"maxResults": min(page_size, MAX_GROUPS_PAGE), "pageToken": page_token,
                          "includeDerivedMembership": "true", "fields": MEMBERS_FIELDS})


# -- group names -----------------------------------------------------------------------------------


def _slug(local_part: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", local_part.lower())
    return re.sub(r"-{2,}", "-", slug).strip("-_") or "group"


def _digest(value: str, length: int) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def group_name_candidates(email: str, group_id: str) -> tuple[str, str]:
    """The directory names a Google group may take, in order of preference — both deterministic.

    The first is ``gw-<slug>`` (the address's local part, lower-cased, runs of other characters
    turned into ``-``), or, when that is longer than 40 characters, its first 30 characters of slug
    plus ``-`` and 6 hex digits of the group id's SHA-256. The second — used when the first is
    another group's (another domain's ``eng@``, or a group an admin created) — is the slug cut to
    28 characters plus ``-`` and 8 hex digits of that digest.
    """
    slug = _slug(email.partition("@")[0])
    plain = GROUP_PREFIX + slug
    first = plain if len(plain) <= MAX_GROUP_NAME else f"{GROUP_PREFIX}{slug[:30].rstrip('-_')}-{_digest(group_id, 6)}"
    second = f"{GROUP_PREFIX}{slug[:28].rstrip('-_')}-{_digest(group_id, 8)}"
    assert GROUP_NAME_PATTERN.match(first) and GROUP_NAME_PATTERN.match(second), (first, second)
    return first, second


# -- counters and checkpoints ----------------------------------------------------------------------


@dataclass
class _UserCounts:
    users_listed: int = 0
    users_inactive: int = 0  # suspended or archived accounts (synced as inactive)
    http_retries: int = 0
    reauthentications: int = 0


@dataclass
class _GroupCounts:
    groups_listed: int = 0
    groups_synced: int = 0  # memberships mirrored to the end
    groups_created: int = 0
    groups_updated: int = 0
    groups_failed: int = 0  # no free name, or the name was taken meanwhile
    groups_vanished: int = 0  # deleted in Google between the listing and its members
    groups_removed: int = 0
    groups_kept_with_grants: int = 0  # gone from Google but granted an agent: emptied, kept
    group_pages: int = 0
    member_pages: int = 0
    memberships_added: int = 0
    memberships_removed: int = 0
    members_unmatched: int = 0  # USER members with no directory user (outside the synced users)
    members_skipped: int = 0  # GROUP / CUSTOMER members (nested members come derived)


class _Stopped(Exception):
    """should_stop() said so in the groups phase (unwinds to run(), which saves and returns)."""


@dataclass
class _State:
    """Everything a checkpoint holds (see the module docstring)."""

    sync_run_id: str
    scope: str
    fingerprint: str
    phase: str = "users"
    cursor: str | None = None
    listing_done: bool = False
    pages_done: int = 0
    progress: SyncProgress = field(default_factory=SyncProgress)
    users: _UserCounts = field(default_factory=_UserCounts)
    users_swept: bool = False
    groups_cursor: str | None = None
    groups_done: list[str] = field(default_factory=list)
    groups_pages_done: int = 0
    groups: _GroupCounts = field(default_factory=_GroupCounts)
    groups_swept: bool = False

    def checkpoint(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "sync_run_id": self.sync_run_id, "scope": self.scope,
                "parameters": self.fingerprint, "phase": self.phase, "cursor": self.cursor,
                "listing_done": self.listing_done, "pages_done": self.pages_done,
                "progress": asdict(self.progress), "counts": asdict(self.users), "users_swept": self.users_swept,
                "groups_cursor": self.groups_cursor, "groups_done": list(self.groups_done),
                "groups_pages_done": self.groups_pages_done, "group_counts": asdict(self.groups)}

    @classmethod
    def restore(cls, saved: Mapping[str, Any]) -> _State:
        done = saved.get("groups_done")
        return cls(sync_run_id=str(saved["sync_run_id"]), scope=str(saved["scope"]),
                   fingerprint=str(saved["parameters"]), phase=str(saved.get("phase") or "users"),
                   cursor=str(saved.get("cursor") or "") or None, listing_done=bool(saved.get("listing_done")),
                   pages_done=int(saved.get("pages_done") or 0),
                   progress=load_counts(SyncProgress, saved.get("progress")),
                   users=load_counts(_UserCounts, saved.get("counts")),
                   users_swept=bool(saved.get("users_swept")),
                   groups_cursor=str(saved.get("groups_cursor") or "") or None,
                   groups_done=[str(item) for item in done] if isinstance(done, list) else [],
                   groups_pages_done=int(saved.get("groups_pages_done") or 0),
                   groups=load_counts(_GroupCounts, saved.get("group_counts")))


# -- the job ----------------------------------------------------------------------------------------


class GoogleWorkspaceSync:
    """Mirror a Google Workspace directory (users, and optionally groups and memberships)."""

    name: ClassVar[str] = "google_workspace_sync"
    title: ClassVar[str] = "Google Workspace directory sync"
    description: ClassVar[str] = (
        "Reads the Google Workspace directory (Admin SDK Directory API) with a connected Google credential: "
        "people become users or are linked by e-mail to existing ones (suspended accounts are deactivated), "
        "and Google groups become directory groups (gw-...) with their members.")
    Parameters: ClassVar[type[JobParameters]] = GoogleWorkspaceSyncParameters

    def __init__(self, token_provider: AccessTokenProvider | None = None, *, http: httpx.Client | None = None,
                 base_url: str | None = None, breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.token_provider: AccessTokenProvider | None = token_provider  # None: the context's
        self.http = http
        self.base_url = base_url
        self.breaker = breaker
        self.sleep = sleep

    def run(self, context: JobContext) -> JobResult:
        return _Run(self, context).run()


class _Run:
    """One invocation of the job: the users phase, the groups phase, the groups sweep."""

    def __init__(self, job: GoogleWorkspaceSync, context: JobContext) -> None:
        self.parameters = parameters_of(context, GoogleWorkspaceSyncParameters)
        self.context = context
        parameters = self.parameters
        tokens: AccessTokenProvider = job.token_provider or context.credential_token
        self.api = DirectoryApi(
            base_url=job.base_url or api_url(API_URL_VARIABLE, DEFAULT_API_URL),
            token=lambda: tokens(parameters.credential_id, required_scopes=required_scopes(parameters)),
            http=job.http or http_client(),
            breaker=job.breaker or api_breaker(BREAKER),
            sleep=job.sleep)
        self.now: datetime = utc_now()
        self.scope = parameters.domain or parameters.customer
        self.state = _State(sync_run_id=sync_run_id_for(context.run_id), scope=self.scope,
                            fingerprint=parameters_fingerprint(parameters))
        self.resumed = False
        self.complete = False
        self._retries_base = (0, 0)
        self._pending_users: tuple[_UserCounts, str] | None = None

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> JobResult:
        self._restore(self.context.load_checkpoint())
        try:
            if self.state.phase == "users" and not self._users_phase():
                return self._stopped()
            if self.parameters.sync_groups and self.state.phase == "groups":
                self._groups_phase()
            if self.parameters.sync_groups and self.state.phase == "groups_sweep":
                self._groups_sweep()
        except _Stopped:
            return self._stopped()
        self.state.phase = "done"
        self.complete = True
        summary = self.summary()
        get_logger().info("google workspace sync finished", extra={"summary": summary})
        processed, succeeded, failed = self._counts()
        return JobResult(processed=processed, succeeded=succeeded, failed=failed, summary=summary, complete=True)

    def _restore(self, saved: Mapping[str, Any] | None) -> None:
        if not saved:
            return
        if not checkpoint_matches(saved, version=CHECKPOINT_VERSION, fingerprint=self.state.fingerprint,
                                  present=("sync_run_id",), scope=self.scope):
            get_logger().warning("google workspace sync checkpoint not resumable (other parameters or format); "
                                 "starting over", extra={"scope": self.scope})
            return
        self.state = _State.restore(saved)
        self._retries_base = (self.state.users.http_retries, self.state.users.reauthentications)
        self.resumed = True

    def _stopped(self) -> JobResult:
        self._save()
        summary = self.summary()
        get_logger().info("google workspace sync stopped at the deadline; the next run resumes",
                          extra={"summary": summary})
        processed, succeeded, failed = self._counts()
        return JobResult(processed=processed, succeeded=succeeded, failed=failed, summary=summary, complete=False)

    def _counts(self) -> tuple[int, int, int]:
        """(processed, succeeded, failed) — see the module docstring."""
        users, groups, progress = self.state.users, self.state.groups, self.state.progress
        return (users.users_listed + groups.groups_listed, progress.seen + groups.groups_synced,
                progress.failed + groups.groups_failed)

    def summary(self) -> dict[str, Any]:
        state = self.state
        state.users.http_retries = self._retries_base[0] + self.api.retries
        state.users.reauthentications = self._retries_base[1] + self.api.reauthentications
        return {"sync_run_id": state.sync_run_id, "scope": f"{PROVIDER}#{state.scope}", "resumed": self.resumed,
                "complete": self.complete, "phase": state.phase, **asdict(state.progress), "swept": state.users_swept,
                **asdict(state.users), **asdict(state.groups), "groups_swept": state.groups_swept}

    def _save(self) -> None:
        self.summary()  # folds this invocation's retry counters into the state
        self.context.save_checkpoint(self.state.checkpoint())

    def _report(self) -> None:
        self._save()
        processed, succeeded, failed = self._counts()
        self.context.progress(processed=processed, succeeded=succeeded, failed=failed, summary=self.summary())

    def _should_stop(self) -> bool:
        return self.context.should_stop()

    # -- users -----------------------------------------------------------------------------------

    def _users_phase(self) -> bool:
        """Sync the users; False when it stopped at the deadline."""
        state = self.state
        first: ApiPage | None = None
        if self.resumed and not state.listing_done and state.cursor:
            try:
                first = self._fetch_users()
            except GoogleDirectoryError as error:
                if error.status != 400:
                    raise
                get_logger().warning("saved users page token refused; starting the user sync over",
                                     extra={"scope": self.scope})
                state.sync_run_id = sync_run_id_for(self.context.run_id)
                state.cursor, state.pages_done, state.progress = None, 0, SyncProgress()
                state.users = _UserCounts(http_retries=state.users.http_retries,
                                          reauthentications=state.users.reauthentications)
        pages: Iterator[Sequence[ProviderUser]] = iter(()) if state.listing_done else self._user_pages(first)
        report = sync_users(PROVIDER, pages, run_id=state.sync_run_id, scope=self.scope, start=state.progress,
                            checkpoint=self._user_page_written, should_stop=self._should_stop,
                            deactivate_missing=self.parameters.deactivate_missing,
                            max_deactivate_percent=self.parameters.max_deactivate_percent)
        state.progress = report.progress
        if report.refusal is not None:
            refuse(self.context, report.refusal, "the Google Workspace directory", counts=self._counts(),
                   summary=self.summary())
        if not report.complete:
            return False
        state.users_swept = report.swept
        state.phase = "groups" if self.parameters.sync_groups else "done"
        self._report()
        return True

    def _fetch_users(self) -> ApiPage:
        self.context.step(f"directory users page {self.state.pages_done + 1}")
        return self.api.users(customer=self.parameters.customer, domain=self.parameters.domain,
                              page_size=self.parameters.page_size, page_token=self.state.cursor)

    def _user_pages(self, first: ApiPage | None) -> Iterator[Sequence[ProviderUser]]:
        while True:
            page = first if first is not None else self._fetch_users()
            first = None
            counts = _UserCounts()
            records = []
            for item in page.items:
                counts.users_listed += 1
                record = self._user_record(item)
                if record is not None:
                    records.append(record)
                    counts.users_inactive += 0 if record.is_active else 1
            self._pending_users = (counts, page.next_token)
            self.context.step(f"write directory users page {self.state.pages_done + 1}")
            yield records
            if not page.next_token:
                self.context.step("deactivation sweep")
                return

    def _user_record(self, item: Mapping[str, Any]) -> ProviderUser | None:
        user_id = item.get("id")
        if not isinstance(user_id, str) or not user_id:
            return None  # not an account: nothing to key it by (counted as listed only)
        name = item.get("name")
        full_name = name.get("fullName") if isinstance(name, Mapping) else None
        full = full_name.strip() if isinstance(full_name, str) and full_name.strip() else None
        email = item.get("primaryEmail")
        return ProviderUser(provider_user_id=user_id, email=normalize_email(email if isinstance(email, str) else None),
                            display_name=full, real_name=full,
                            is_active=not (item.get("suspended") is True or item.get("archived") is True),
                            is_primary_hint=self.parameters.primary)

    def _user_page_written(self, progress: SyncProgress) -> None:
        state = self.state
        state.progress = progress
        if self._pending_users is not None:
            counts, next_token = self._pending_users
            self._pending_users = None
            state.users.users_listed += counts.users_listed
            state.users.users_inactive += counts.users_inactive
            state.pages_done += 1
            state.cursor = next_token or None
            state.listing_done = not next_token
        self._report()

    # -- groups ----------------------------------------------------------------------------------

    def _groups_phase(self) -> None:
        state = self.state
        may_restart = self.resumed and state.groups_cursor is not None  # a saved token Google may refuse
        while True:
            if self._should_stop():
                raise _Stopped
            self.context.step(f"groups page {state.groups_pages_done + 1}")
            try:
                page = self.api.groups(customer=self.parameters.customer, domain=self.parameters.domain,
                                       page_size=self.parameters.page_size, page_token=state.groups_cursor)
            except GoogleDirectoryError as error:
                if not may_restart or error.status != 400:
                    raise
                get_logger().warning("saved groups page token refused; listing the groups again",
                                     extra={"scope": self.scope})
                state.groups_cursor, state.groups_done = None, []
                may_restart = False
                continue
            may_restart = False
            self._groups_page(page)
            state.groups_pages_done += 1
            state.groups.group_pages += 1
            state.groups_cursor = page.next_token or None
            state.groups_done = []
            if not page.next_token:
                state.phase = "groups_sweep" if self.parameters.deactivate_missing else "done"
                self._report()
                return
            self._report()

    def _groups_page(self, page: ApiPage) -> None:
        state = self.state
        listed = [(str(item["id"]), str(item["email"]), item) for item in page.items
                  if isinstance(item.get("id"), str) and item.get("id") and isinstance(item.get("email"), str)]
        todo = [entry for entry in listed if entry[0] not in state.groups_done]
        candidates = {gid: group_name_candidates(email, gid) for gid, email, _ in todo}
        names = sorted({name for pair in candidates.values() for name in pair})
        loaded = {group.name: group for group in Group.batch_get(names, consistent_read=True)} if names else {}
        taken: dict[str, str] = {}  # names chosen in this page -> the Google group id
        for gid, email, item in todo:
            if self._should_stop():
                raise _Stopped
            name = _choose_name(gid, candidates[gid], loaded, taken)
            if name is None:
                state.groups.groups_failed += 1
                get_logger().warning("google group not synced: both of its names belong to other groups",
                                     extra={"group_id": gid, "names": list(candidates[gid])})
            else:
                taken[name] = gid
                group = self._write_group(name, gid, email, item, loaded.get(name))
                if group is not None:
                    loaded[name] = group
                    self._sync_members(group, gid, email)
            state.groups_done.append(gid)
            state.groups.groups_listed += 1  # counted once done: a group interrupted half-way is redone
            self._report()

    def _write_group(self, name: str, gid: str, email: str, item: Mapping[str, Any],
                     existing: Group | None) -> Group | None:
        """Create or update the directory group of a Google group (conditional: a name that is not
        free and not this sync's own is never written). ``None`` if the condition failed."""
        description = _description(item, email)
        if existing is None:
            group = Group(name, description=description, is_system=False, created_at=self.now, source=PROVIDER,
                          external_id=gid, email=email.lower())
        else:
            group = existing
        changed = group.description != description or group.email != email.lower()
        group.description, group.email = description, email.lower()
        group.sync_scope, group.last_seen_run, group.last_synced_at = self.scope, self.state.sync_run_id, self.now
        condition = Group.name.does_not_exist() | ((Group.source == PROVIDER) & (Group.external_id == gid))
        try:
            group.save(condition=condition)
        except PutError as error:
            if getattr(error, "cause_response_code", None) != "ConditionalCheckFailedException":
                raise
            self.state.groups.groups_failed += 1
            get_logger().warning("google group not synced: its name was taken meanwhile",
                                 extra={"group": name, "group_id": gid})
            return None
        if existing is None:
            self.state.groups.groups_created += 1
        elif changed:
            self.state.groups.groups_updated += 1
        return group

    def _sync_members(self, group: Group, gid: str, email: str) -> None:
        """Mirror one group's members: additions page by page, removals after the last page."""
        counts = self.state.groups
        existing = {membership.user_id for membership in Membership.query(group.name, consistent_read=True)}
        seen: set[str] = set()
        token: str | None = None
        number = 0
        while True:
            if number and self._should_stop():
                raise _Stopped  # the group is redone by the next run (additions are idempotent)
            number += 1
            self.context.step(f"members of {email} page {number}")
            try:
                page = self.api.members(gid, page_size=self.parameters.page_size, page_token=token)
            except GoogleDirectoryError as error:
                if error.status != 404:
                    raise
                counts.groups_vanished += 1  # deleted since the listing: the next run's sweep removes it
                get_logger().warning("google group vanished while syncing its members", extra={"group": group.name})
                return
            counts.member_pages += 1
            user_ids = self._member_users(page.items)
            added = sorted(user_ids - existing - seen)
            seen |= user_ids
            if added:
                with Membership.batch_write() as batch:
                    for user_id in added:
                        batch.save(Membership(group.name, user_id, added_at=self.now, added_by=SYSTEM_ACTOR))
                counts.memberships_added += len(added)
            token = page.next_token or None
            if token is None:
                break
        removed = sorted(existing - seen)
        if removed:
            with Membership.batch_write() as batch:
                for user_id in removed:
                    batch.delete(Membership(group.name, user_id))
            counts.memberships_removed += len(removed)
        counts.groups_synced += 1

    def _member_users(self, members: Sequence[Mapping[str, Any]]) -> set[str]:
        """The directory users of a page of members: one BatchGetItem (≤ 100 keys a call) of their
        Google identities and e-mail claims."""
        counts = self.state.groups
        wanted: list[tuple[str, str | None]] = []
        for member in members:
            kind, member_id = member.get("type"), member.get("id")
            if kind != "USER" or not isinstance(member_id, str) or not member_id:
                counts.members_skipped += 1
                continue
            address = member.get("email")
            email = normalize_email(address if isinstance(address, str) else None)
            wanted.append((identity_key(PROVIDER, member_id), claim_key(email) if email else None))
        keys = sorted({key for pair in wanted for key in pair if key is not None})
        found = {identity.identity_key: identity.user_id
                 for identity in Identity.batch_get(keys, consistent_read=True)} if keys else {}
        users: set[str] = set()
        for identity, claim in wanted:
            user_id = found.get(identity) or (found.get(claim) if claim else None)
            if user_id:
                users.add(user_id)
            else:
                counts.members_unmatched += 1
        return users

    # -- groups Google no longer lists -----------------------------------------------------------

    def _groups_sweep(self) -> None:
        """Remove this scope's Google groups that this run did not list (memberships first)."""
        state = self.state
        if state.groups.groups_listed == 0:
            get_logger().warning("google listed no group; no group removed", extra={"scope": self.scope})
            state.groups_swept = False
            return
        self.context.step("groups sweep")
        stale_condition = ((Group.source == PROVIDER) & (Group.sync_scope == self.scope)
                           & (Group.last_seen_run != state.sync_run_id))
        names = [group.name for group in Group.by_kind.query(GROUP_KIND, filter_condition=stale_condition)]
        for offset in range(0, len(names), 100):
            # The index is eventually consistent: confirm on the items before removing anything.
            for group in sorted(Group.batch_get(names[offset:offset + 100], consistent_read=True),
                                key=lambda item: item.name):
                if group.source != PROVIDER or group.sync_scope != self.scope or group.is_system \
                        or group.last_seen_run == state.sync_run_id:
                    continue
                if self._should_stop():
                    raise _Stopped
                self._remove_group(group)
                self._report()
        state.groups_swept = True

    def _remove_group(self, group: Group) -> None:
        counts = self.state.groups
        self.context.step(f"remove group {group.name}")
        members = [membership.user_id for membership in Membership.query(group.name, consistent_read=True)]
        if members:
            with Membership.batch_write() as batch:
                for user_id in members:
                    batch.delete(Membership(group.name, user_id))
            counts.memberships_removed += len(members)
        if any(True for _ in Grant.by_principal.query(group_principal(group.name), limit=1)):
            counts.groups_kept_with_grants += 1
            get_logger().warning("google group gone but granted an agent: emptied and kept for an admin",
                                 extra={"group": group.name})
            return
        group.delete(condition=(Group.source == PROVIDER) & (Group.external_id == group.external_id))
        counts.groups_removed += 1


def _choose_name(gid: str, candidates: tuple[str, str], loaded: Mapping[str, Group],
                 taken: Mapping[str, str]) -> str | None:
    """This group's existing name if it has one, else the first free candidate, else ``None``."""
    for name in candidates:
        item = loaded.get(name)
        if item is not None and item.source == PROVIDER and item.external_id == gid:
            return name
    for name in candidates:
        if name not in loaded and taken.get(name, gid) == gid:
            return name
    return None


def _description(item: Mapping[str, Any], email: str) -> str:
    for key in ("description", "name"):
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_DESCRIPTION]
    return email[:MAX_DESCRIPTION]
