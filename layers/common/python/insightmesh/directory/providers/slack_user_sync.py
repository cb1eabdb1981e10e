"""Job type ``slack_user_sync``: the Slack workspace's people mirrored into the directory.

**What it does.** ``auth.test`` names the workspace (its team id is the sync scope, so one
workspace's sweep never deactivates another's users), then ``users.list`` is read page by page
(``limit = page_size``, cursor pagination) through the process's Slack client
(:func:`insightmesh.slack.client.call_slack`: slack_sdk retries HTTP 429 after ``Retry-After``;
each retry is logged and counted in the summary as ``rate_limited_retries``). Each page is
filtered, then written by :func:`insightmesh.directory.sync.sync_users` as identities
``slack#<team_id>:<user_id>``:

* skipped (and counted): bots (``is_bot``, and Slackbot ``USLACKBOT``, which Slack does not flag as
  a bot), deleted users, Slack guests (``is_restricted``, ``is_ultra_restricted``), people of other
  workspaces (``is_stranger``, or a ``team_id`` other than the workspace's: Slack Connect), so none
  of these is put in ``all_users``; users without an e-mail address, and — when ``email_domains`` is given —
  users whose address is in none of those domains (case-insensitive);
* the others become :class:`~insightmesh.directory.sync.ProviderUser` records (display name,
  real name and e-mail from the profile). Matching a person to an existing user of another
  provider by e-mail, and deactivating the people Slack no longer lists (a skipped user is simply
  not seen, so the sweep deactivates them), are ``sync_users``'s.

**Checkpoints.** After every page: ``{"sync_run_id", "team_id", "cursor", "listing_done",
"pages_done", "progress", "counts", "parameters"}`` — ``cursor`` is Slack's ``next_cursor`` after
the last page written, ``progress`` the :class:`~insightmesh.directory.sync.SyncProgress`
counters, ``counts`` the skip counters. A run that ``should_stop()`` returns
``JobResult(complete=False)`` with that checkpoint; the next run resumes with the same sync run id
from the saved cursor (or, once every page was written, goes straight to the sweep), with the
counters carried over. A checkpoint of another workspace or of other parameters is discarded and
the sync starts over (that is always correct, only slower), as is one whose cursor Slack no longer
accepts (``invalid_cursor``).

**Refusals.** A listing that gives no user to sync, or a sweep that would deactivate more than
``max_deactivate_percent`` (default 20) of the users the sync manages, deactivates no one: the run
fails with :class:`~insightmesh.directory.sync.SyncRefusedError` (the reason and the numbers), the
warning ("listed 0 users", "would deactivate 9 of 10 users") is recorded on the run, the numbers
are in its summary, and the checkpoint is cleared so that the next run lists again.

**Counts.** ``processed``: users Slack listed (skipped ones included); ``succeeded``: users synced;
``failed``: records the sync could not write. Slack errors (``invalid_auth``, ...) propagate as
``SlackApiError``: the runner records the failed run with its step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Final

from pydantic import Field, field_validator
from slack_sdk.errors import SlackApiError

from insightmesh.directory.models import normalize_domain, normalize_email
from insightmesh.directory.providers import max_deactivate_percent_field, refuse, sync_run_id_for
from insightmesh.directory.sync import ProviderUser, SyncProgress, SyncReport, sync_users
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
from insightmesh.slack.client import call_slack, rate_limit_retries

PROVIDER: Final = "slack"
SLACKBOT_ID: Final = "USLACKBOT"
MAX_PAGE_SIZE: Final = 1000  # users.list's own cap
CHECKPOINT_VERSION: Final = 1


class SlackUserSyncParameters(JobParameters):
    """``email_domains``: only people whose address is in one of these domains (empty: everyone)."""

    email_domains: list[str] = Field(default_factory=list, max_length=100)
    page_size: int = Field(default=200, ge=1, le=MAX_PAGE_SIZE)
    deactivate_missing: bool = True
    max_deactivate_percent: float = max_deactivate_percent_field()

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_domain(domain) for domain in value))  # ValueError names the bad one


@dataclass
class _Counts:
    """What the job counts besides the sync's own counters (carried across resumed runs)."""

    listed: int = 0
    skipped_bots: int = 0
    skipped_deleted: int = 0
    skipped_no_email: int = 0
    skipped_other_domain: int = 0
    skipped_guests: int = 0
    skipped_external: int = 0
    rate_limited_retries: int = 0

    def add(self, other: _Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

def progress_dict(progress: SyncProgress) -> dict[str, int]:
    return asdict(progress)


def email_domain(email: str) -> str:
    return email.rpartition("@")[2]


@dataclass
class _Listing:
    """The users.list pages of one invocation, with what the checkpoint needs about them."""

    context: JobContext
    parameters: SlackUserSyncParameters
    team_id: str
    cursor: str | None  # where the next page starts (None: the first page)
    pages_done: int
    committed: _Counts
    listing_done: bool = False
    pending: tuple[_Counts, str] | None = None  # the yielded, not yet written page: counts, next cursor
    first: Mapping[str, Any] | None = None  # a page already fetched (the first, to check the cursor)
    domains: frozenset[str] = field(default_factory=frozenset)

    def fetch(self) -> Mapping[str, Any]:
        self.context.step(f"users.list page {self.pages_done + 1}")
        cursor = self.cursor
        response = call_slack(lambda client: client.users_list(limit=self.parameters.page_size, cursor=cursor or None))
        data: Any = response.data
        return data if isinstance(data, Mapping) else {}

    def pages(self) -> Iterator[Sequence[ProviderUser]]:
        while not self.listing_done:
            data = self.first if self.first is not None else self.fetch()
            self.first = None
            members = data.get("members")
            metadata = data.get("response_metadata")
            next_cursor = str(metadata.get("next_cursor") or "") if isinstance(metadata, Mapping) else ""
            counts = _Counts()
            records = [record for member in (members if isinstance(members, list) else [])
                       if (record := self._record(member, counts)) is not None]
            self.pending = (counts, next_cursor)
            self.context.step(f"write users.list page {self.pages_done + 1}")
            yield records
            if not next_cursor:
                self.context.step("deactivation sweep")
                return

    def page_written(self) -> None:
        """The sync wrote the page last yielded: its counts and cursor become the checkpoint's."""
        if self.pending is None:
            return
        counts, next_cursor = self.pending
        self.pending = None
        self.committed.add(counts)
        self.pages_done += 1
        self.cursor = next_cursor
        self.listing_done = not next_cursor

    def _record(self, member: Any, counts: _Counts) -> ProviderUser | None:
        if not isinstance(member, Mapping):
            return None
        counts.listed += 1
        user_id = str(member.get("id") or "")
        given_profile = member.get("profile")
        profile: Mapping[str, Any] = given_profile if isinstance(given_profile, Mapping) else {}
        if member.get("is_bot") or user_id == SLACKBOT_ID:
            counts.skipped_bots += 1
            return None
        if member.get("deleted"):
            counts.skipped_deleted += 1
            return None
        if member.get("is_restricted") or member.get("is_ultra_restricted"):
            counts.skipped_guests += 1
            return None
        home = str(member.get("team_id") or "")
        enterprise = member.get("enterprise_user")
        org_teams = enterprise.get("teams") if isinstance(enterprise, Mapping) else None
        in_org = isinstance(org_teams, list) and self.team_id in org_teams  # Enterprise Grid: a sibling workspace
        if member.get("is_stranger") or (home and home != self.team_id and not in_org):
            counts.skipped_external += 1
            return None
        email = normalize_email(str(profile.get("email") or ""))
        if email is None or "@" not in email:
            counts.skipped_no_email += 1
            return None
        if self.domains and email_domain(email) not in self.domains:
            counts.skipped_other_domain += 1
            return None
        real_name = str(profile.get("real_name") or member.get("real_name") or "") or None
        return ProviderUser(provider_user_id=f"{self.team_id}:{user_id}", email=email,
                            display_name=str(profile.get("display_name") or "") or None, real_name=real_name)


class SlackUserSync:
    """Mirror the Slack workspace's people (``users.list``) into users and identities."""

    name: ClassVar[str] = "slack_user_sync"
    title: ClassVar[str] = "Slack user sync"
    description: ClassVar[str] = (
        "Reads the workspace's users.list and mirrors its people into the directory: new people become "
        "users (or are linked by e-mail to an existing user), changed profiles are updated, and people who "
        "left are deactivated. Bots, deleted users, guests, people of other workspaces and users without an "
        "e-mail are skipped.")
    Parameters: ClassVar[type[JobParameters]] = SlackUserSyncParameters

    def run(self, context: JobContext) -> JobResult:
        parameters = parameters_of(context, SlackUserSyncParameters)
        retries_before = rate_limit_retries()
        context.step("auth.test")
        team_id = str(call_slack(lambda client: client.auth_test()).get("team_id") or "")
        if not team_id:
            raise RuntimeError("Slack's auth.test named no team_id")
        fingerprint = parameters_fingerprint(parameters)
        saved = _usable_checkpoint(context.load_checkpoint(), team_id=team_id, fingerprint=fingerprint)
        listing = _Listing(context, parameters, team_id, cursor=None, pages_done=0, committed=_Counts(),
                           domains=frozenset(parameters.email_domains))
        sync_run_id, start = sync_run_id_for(context.run_id), SyncProgress()
        if saved is not None:
            sync_run_id, start = str(saved["sync_run_id"]), load_counts(SyncProgress, saved.get("progress"))
            listing.cursor = str(saved.get("cursor") or "") or None
            listing.pages_done = int(saved.get("pages_done") or 0)
            listing.committed = load_counts(_Counts, saved.get("counts"))
            listing.listing_done = bool(saved.get("listing_done"))
            if not listing.listing_done:
                try:
                    listing.first = listing.fetch()
                except SlackApiError as error:
                    if error.response.get("error") != "invalid_cursor":
                        raise
                    get_logger().warning("saved users.list cursor refused; starting the sync over",
                                         extra={"team_id": team_id, "sync_run_id": sync_run_id})
                    saved, sync_run_id, start = None, sync_run_id_for(context.run_id), SyncProgress()
                    listing.cursor, listing.pages_done, listing.committed = None, 0, _Counts()
        resumed = saved is not None
        committed_retries = listing.committed.rate_limited_retries

        def counts_now() -> _Counts:
            counts = _Counts(**asdict(listing.committed))
            counts.rate_limited_retries = committed_retries + rate_limit_retries() - retries_before
            return counts

        def checkpoint_data(progress: SyncProgress, *, sweeping: bool = False) -> dict[str, Any]:
            return {"version": CHECKPOINT_VERSION, "sync_run_id": sync_run_id, "team_id": team_id,
                    "parameters": fingerprint, "cursor": listing.cursor, "listing_done": listing.listing_done,
                    "sweeping": sweeping or listing.listing_done, "pages_done": listing.pages_done,
                    "progress": progress_dict(progress), "counts": asdict(counts_now())}

        def summary(progress: SyncProgress, *, swept: bool, complete: bool) -> dict[str, Any]:
            return {"team_id": team_id, "sync_run_id": sync_run_id, "resumed": resumed, "complete": complete,
                    "swept": swept, **progress_dict(progress), **asdict(counts_now())}

        def report_progress(progress: SyncProgress) -> None:
            listing.page_written()
            context.save_checkpoint(checkpoint_data(progress))
            context.progress(processed=listing.committed.listed, succeeded=progress.seen, failed=progress.failed,
                             summary=summary(progress, swept=False, complete=False))

        pages: Iterator[Sequence[ProviderUser]] = iter(()) if listing.listing_done else listing.pages()
        report: SyncReport = sync_users(PROVIDER, pages, run_id=sync_run_id, scope=team_id, start=start,
                                        checkpoint=report_progress, should_stop=context.should_stop,
                                        deactivate_missing=parameters.deactivate_missing,
                                        max_deactivate_percent=parameters.max_deactivate_percent)
        progress = report.progress
        if report.refusal is not None:
            refuse(context, report.refusal, "Slack users.list",
                   counts=(listing.committed.listed, progress.seen, progress.failed),
                   summary=summary(progress, swept=False, complete=True))
        if not report.complete:
            sweeping = report.resume_token is not None and report.resume_token.sweeping
            context.save_checkpoint(checkpoint_data(progress, sweeping=sweeping))
        result_summary = summary(progress, swept=report.swept, complete=report.complete)
        get_logger().info("slack user sync " + ("finished" if report.complete else "stopped; will resume"),
                          extra={"summary": result_summary})
        return JobResult(processed=listing.committed.listed, succeeded=progress.seen, failed=progress.failed,
                         summary=result_summary, complete=report.complete)


def _usable_checkpoint(saved: Mapping[str, Any] | None, *, team_id: str, fingerprint: str) -> Mapping[str, Any] | None:
    """The checkpoint to resume from, if it is this job's kind, workspace and parameters."""
    if not saved:
        return None
    if not checkpoint_matches(saved, version=CHECKPOINT_VERSION, fingerprint=fingerprint, present=("sync_run_id",),
                              team_id=team_id):
        get_logger().warning("slack user sync checkpoint not resumable (other workspace, parameters or format); "
                             "starting over", extra={"team_id": team_id})
        return None
    return saved
