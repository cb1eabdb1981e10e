"""Directory sync: a provider's user list (Slack ``users.list``, Google Workspace directory) mirrored
into users, identities and ``all_users`` memberships. The data layer only — the scheduled job
fetches the provider's pages (and owns its cursor); this module writes them.

Usage (a job)::

    report = sync_users("google", pages, run_id=run_id, checkpoint=save, should_stop=near_deadline)

``pages`` is any iterable of sequences of :class:`ProviderUser` (a generator that calls the
provider lazily is the intended form). Each record becomes the identity
``"<provider_type>#<provider_user_id>"`` (Slack: ``provider_user_id = "<team_id>:<user_id>"``).

**Per page** (up to 100 records; a longer page is processed in slices of 100), and whatever the
number of users already stored:

1. ``BatchGetItem`` on the identities table: the page's identities *and* the e-mail claims of
   the page's addresses (``email#<address>`` → the user that owns the address), ≤ 200 keys;
2. ``BatchGetItem`` of the users those point to, plus the ids that new identities would create
   (two per record at most, ≤ 200 keys; in practice the same ≤ 100 users);
3. ``BatchGetItem`` of the ``all_users`` memberships of the users that exist (same bound);
4. in-memory decisions, then ``BatchWriteItem`` (pynamodb ``Model.batch_write``, 25 items per call)
   of what changed, in this order: users, memberships, identities with e-mail claims. Nothing is
   rewritten when nothing changed; an identity is rewritten once per run to record
   ``last_seen_run`` / ``last_seen_at`` (a retry of the same ``run_id`` writes nothing).

At 100 keys per BatchGetItem that is 6 reads a page at most, and ≤ 400 items (16 calls) written
(plus pynamodb's re-sends of unprocessed keys or items when DynamoDB throttles).
No ``Scan``, no ``Query`` and no ``GetItem`` per record. Measured per page of 100: a first sync is
3 reads + 16 writes, a re-sync 4 reads + 4 writes (the identities' marks), a retry of the same
run 4 reads + 0 writes (``benchmarks/directory_sync.py``).

**Rules.** A new identity whose e-mail is claimed by an *active* user with that address is
linked to that user (cross-provider match); otherwise it creates a user (id derived from the
identity key, so a retry after a crash finds the same user rather than creating an orphan) and
claims the address. Records of one page are processed in a fixed order — existing identities
first, then new ones by identity key — so duplicate addresses in a page always resolve the same
way: the lowest identity key creates the user and the others link to it. Records without an
e-mail are synced as identities but never matched. Each user has one primary identity
(``is_primary`` and ``provider_type == User.primary_provider``): only it sets the user's names and
e-mail, and only its transitions change ``User.is_active`` — deactivated (``is_active`` false in the
provider, or not seen in a complete run) deactivates the user; re-appearing re-activates it. An
admin's manual deactivation is therefore kept while the provider keeps reporting the same state.
``is_primary_hint`` makes an identity that is *linked* by e-mail to an existing user of another
provider that user's primary (e.g. Google Workspace as the HR source of truth over Slack); the old
primary is demoted when its own provider next syncs it. ``all_users`` membership is re-derived for
every user a page touches: active users are members, inactive ones are not. E-mail claims are
identities of provider ``email`` (they carry ``user_id``, so ``Query by-user`` lists them with a
user's accounts; the sweep never sees them).

**Deactivation sweep.** After the last page, the identities of the run's scope that this run did
not see are deactivated. Every identity that a sync saw active carries ``sync_scope`` and
``sync_mark = "<run_id>#<identity_key>"``; GSI ``by-sync-scope`` (hash ``sync_scope``, range
``sync_mark``, KEYS_ONLY, sparse: inactive identities carry no mark) holds exactly the active
identities. The unseen ones are ``sync_mark < "<run_id>#"`` and ``sync_mark >= "<run_id>$"``: two
paginated Queries (100 keys a page) that read only what is to be deactivated, each page confirmed
by a consistent ``BatchGetItem`` (the GSI is eventually consistent) and written like a sync page.
The per-item sort key spreads the index's writes across partitions. The sweep runs only when
every page was processed, and not at all when the run saw no record (an empty provider answer
deactivates no one).

**Refusals** (``SyncReport.refusal``, a :class:`SyncRefusal` with the reason and the numbers; the
job types raise :class:`SyncRefusedError` with it, so the run is recorded ``failed``). A run that
saw no record is refused whatever else is asked: it counts the scope's active identities (one
paginated ``Query`` of the index, ``Select=COUNT``) for the message and deactivates no one. With
``max_deactivate_percent``, before the sweep deactivates anyone, the unseen identities are counted
the same way (the sweep's two Queries, ``Select=COUNT``); if they are more than that percentage
of the users the scope manages (those seen plus those unseen), rounded down, the sweep is refused
and no one is deactivated. The bound is about the sweep — people the provider no longer lists;
a record the provider itself reports inactive (a Google account suspended) is applied with its page.
``scope`` defaults to the provider type; pass the Slack team id for a
per-workspace ``users.list`` (``scope="T123"`` → ``sync_scope = "slack#T123"``), or one
workspace's sweep would deactivate the other workspaces' users.

**Checkpoints and deadlines.** ``checkpoint(progress)`` is called after each page and each sweep
page with cumulative counters; ``should_stop()`` is asked before each page is pulled from
``pages`` and after each sweep page. When it says stop, the report has ``complete=False`` and a
:class:`ResumeToken`. To resume, call again with the *same* ``run_id``, ``start=report.progress``
and the provider pages that follow the last page processed — the provider's cursor is the job's
to save in its checkpoint, next to ``pages`` — or no pages (``[]``) if the token says
``sweeping``. Re-processing a page that was already written is harmless (nothing is rewritten).

**Memory**: the current page (and the few hundred items loaded for it) and the counters.

**Concurrency**: batch writes are unconditional. Run at most one sync per scope at a time (the
job runner's concern). A user edited elsewhere (an admin setting ``is_admin``) between a page's
read and its write — milliseconds — is overwritten by that page's write of the same user; writes
bump ``User.version``, so an optimistic writer that read before us fails instead. A first contact
(:func:`insightmesh.directory.users.resolve_slack_user`) racing a sync of the same new Slack user
can leave one orphan user. Users created on first contact have no e-mail claim until a Slack sync
sees them: schedule the Slack sync before others, or a Google record of that person creates a
second user.

DynamoDB errors propagate (the job records the failed run; a retry with the same ``run_id`` is
idempotent). Records without a ``provider_user_id`` are counted as ``failed`` and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Final

from pynamodb.expressions.condition import Condition

from insightmesh.clock import utc_now
from insightmesh.directory.email_users import EMAIL_PROVIDER, claim_key, new_user, new_user_id
from insightmesh.directory.models import Identity, Membership, User, identity_key, normalize_email
from insightmesh.directory.users import ALL_USERS, SLACK_PROVIDER, SYSTEM_ACTOR
from insightmesh.observability import get_logger

PAGE_LIMIT: Final = 100  # records per slice: the BatchGetItem key limit
DEFAULT_MAX_DEACTIVATE_PERCENT: Final = 20  # the job types' default bound on one sweep
# Users created by sync get new_user_id(identity_key) (uuid5, the one id scheme of email_users):
# a retry recreates the same id.


@dataclass(frozen=True)
class ProviderUser:
    """One user as a provider lists it; every field but the id may be unknown."""

    provider_user_id: str  # Slack: "<team_id>:<user_id>"; Google: the directory user id
    email: str | None = None
    display_name: str | None = None
    real_name: str | None = None
    is_active: bool = True  # False for Slack's deleted users, Google's suspended ones
    is_primary_hint: bool = False  # see the module docstring


@dataclass(frozen=True)
class SyncProgress:
    """Cumulative counters of a run, per provider record (``linked``: matched by e-mail)."""

    pages: int = 0
    seen: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    failed: int = 0
    linked: int = 0

    def __add__(self, other: SyncProgress) -> SyncProgress:
        return SyncProgress(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class ResumeToken:
    """Where a stopped run stopped: resume with the same ``run_id`` (module docstring)."""

    run_id: str
    pages_done: int  # pages processed so far; the provider cursor after that page is the job's
    sweeping: bool  # every page was processed; resume with no pages to finish the sweep


@dataclass(frozen=True)
class SyncRefusal:
    """Why a run deactivated no one although it was asked to sweep (module docstring)."""

    reason: str  # "listed 0 users" or "would deactivate 9 of 10 users"
    listed: int  # records this run saw
    managed: int  # active identities of the scope before the sweep, seen or not
    to_deactivate: int  # active identities this run did not see
    max_percent: float | None = None  # the bound, if one applied
    allowed: int | None = None  # the most it could deactivate under the bound

    def message(self, provider: str) -> str:
        """The refusal as the run's error: what happened, the numbers, and what to do."""
        if self.listed == 0:
            return (f"{provider} listed 0 users: the sync stopped before deactivating anyone (it manages "
                    f"{self.managed} active users). An empty answer is taken as a fault (wrong credential, "
                    "scope or domain), never as everyone leaving: check the job's credential and parameters, "
                    "then run it again")
        share = round(100 * self.to_deactivate / self.managed) if self.managed else 100
        return (f"{provider} listed {self.listed} users: the sync would deactivate {self.to_deactivate} of the "
                f"{self.managed} users it manages ({share}%), more than max_deactivate_percent={self.max_percent:g} "
                f"allows ({self.allowed}); it stopped before deactivating anyone. If they really left, raise "
                "max_deactivate_percent for one run")

    def summary(self) -> dict[str, object]:
        return {"refused": self.reason, "listed": self.listed, "managed": self.managed,
                "to_deactivate": self.to_deactivate, "max_deactivate_percent": self.max_percent,
                "allowed_deactivations": self.allowed}


class SyncRefusedError(RuntimeError):
    """A directory sync that stopped before deactivating anyone (:class:`SyncRefusal`): the job
    types raise it so that the run is recorded ``failed`` with the reason and the numbers."""

    def __init__(self, refusal: SyncRefusal, provider: str) -> None:
        super().__init__(refusal.message(provider))
        self.refusal = refusal


@dataclass(frozen=True)
class SyncReport:
    provider_type: str
    sync_scope: str
    run_id: str
    progress: SyncProgress
    complete: bool
    swept: bool  # the deactivation sweep ran to its end
    resume_token: ResumeToken | None = None
    refusal: SyncRefusal | None = None  # set: nobody was deactivated, and the job should fail


def sync_users(
    provider_type: str,
    pages: Iterable[Sequence[ProviderUser]],
    *,
    run_id: str,
    now: datetime | None = None,
    checkpoint: Callable[[SyncProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    scope: str | None = None,
    start: SyncProgress | None = None,
    deactivate_missing: bool = True,
    max_deactivate_percent: float | None = None,
) -> SyncReport:
    """Mirror ``pages`` of ``provider_type``'s users into the directory (see the module docstring).

    ``run_id`` names the run (no ``#``); reuse it to resume or retry. ``start`` carries the
    counters of the invocations before a resume. ``deactivate_missing=False`` skips the sweep
    (for a partial listing). ``max_deactivate_percent`` bounds the sweep (``None``: no bound);
    a run that saw no record, or would sweep past the bound, returns a report with a ``refusal``.
    """
    return SyncRun(provider_type, run_id=run_id, now=now, scope=scope).run(
        pages, checkpoint=checkpoint, should_stop=should_stop, start=start, deactivate_missing=deactivate_missing,
        max_deactivate_percent=max_deactivate_percent)


class SyncRun:
    """One run of one provider scope: :meth:`sync_page` per page, then :meth:`sweep`."""

    def __init__(self, provider_type: str, *, run_id: str, now: datetime | None = None,
                 scope: str | None = None) -> None:
        if not provider_type or "#" in provider_type or provider_type == EMAIL_PROVIDER:
            raise ValueError(f"invalid provider_type {provider_type!r}")
        if not run_id or "#" in run_id:
            raise ValueError("run_id is required and cannot contain '#'")
        if scope is not None and not scope:
            raise ValueError("scope cannot be empty")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.provider_type = provider_type
        self.run_id = run_id
        self.now = now or utc_now()
        self.sync_scope = provider_type if scope is None else f"{provider_type}#{scope}"

    def run(
        self,
        pages: Iterable[Sequence[ProviderUser]],
        *,
        checkpoint: Callable[[SyncProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        start: SyncProgress | None = None,
        deactivate_missing: bool = True,
        max_deactivate_percent: float | None = None,
    ) -> SyncReport:
        if max_deactivate_percent is not None and not 0 <= max_deactivate_percent <= 100:
            raise ValueError(f"max_deactivate_percent must be 0-100, got {max_deactivate_percent}")
        progress = start or SyncProgress()
        remaining = iter(pages)
        while True:
            if should_stop is not None and should_stop():
                return self._report(progress, complete=False, swept=False,
                                    token=ResumeToken(self.run_id, progress.pages, sweeping=False))
            page = next(remaining, None)
            if page is None:
                break
            progress = progress + self.sync_page(page)
            if checkpoint is not None:
                checkpoint(progress)
        if progress.seen == 0:
            active = self._count_active()
            get_logger().warning("directory sync saw no user; nobody deactivated",
                                 extra={"sync_scope": self.sync_scope, "run_id": self.run_id, "managed": active})
            return self._report(progress, complete=True, swept=False, refusal=SyncRefusal(
                "listed 0 users", listed=0, managed=active, to_deactivate=active if deactivate_missing else 0))
        if not deactivate_missing:
            return self._report(progress, complete=True, swept=False)
        if max_deactivate_percent is not None:
            refusal = self._over_bound(progress, max_deactivate_percent)
            if refusal is not None:
                get_logger().warning("directory sync would deactivate too many users; nobody deactivated",
                                     extra={"sync_scope": self.sync_scope, "run_id": self.run_id,
                                            "refusal": refusal.summary()})
                return self._report(progress, complete=True, swept=False, refusal=refusal)
        for delta in self.sweep():
            progress = progress + delta
            if checkpoint is not None:
                checkpoint(progress)
            if should_stop is not None and should_stop():
                return self._report(progress, complete=False, swept=False,
                                    token=ResumeToken(self.run_id, progress.pages, sweeping=True))
        return self._report(progress, complete=True, swept=True)

    def sync_page(self, page: Sequence[ProviderUser]) -> SyncProgress:
        """Upsert one provider page; returns this page's counters (``pages=1``)."""
        progress = SyncProgress(pages=1)
        for offset in range(0, len(page), PAGE_LIMIT):
            progress = progress + self._sync_slice(page[offset:offset + PAGE_LIMIT])
        return progress

    def _unseen(self) -> tuple[Condition, ...]:
        """The index conditions of the scope's active identities this run did not mark."""
        seen_from, seen_to = f"{self.run_id}#", f"{self.run_id}$"  # the marks of this run
        return (Identity.sync_mark < seen_from, Identity.sync_mark >= seen_to)

    def _count_active(self) -> int:
        return Identity.by_sync_scope.count(self.sync_scope)

    def _over_bound(self, progress: SyncProgress, max_percent: float) -> SyncRefusal | None:
        """A refusal if the sweep would deactivate more than ``max_percent`` of the managed users."""
        unseen = sum(Identity.by_sync_scope.count(self.sync_scope, condition) for condition in self._unseen())
        managed = progress.seen + unseen
        allowed = int(managed * max_percent / 100)
        if unseen <= allowed:
            return None
        return SyncRefusal(f"would deactivate {unseen} of {managed} users", listed=progress.seen, managed=managed,
                           to_deactivate=unseen, max_percent=max_percent, allowed=allowed)

    def sweep(self) -> Iterator[SyncProgress]:
        """Deactivate the scope's active identities this run did not see; yields counters per
        page of ≤ 100 identities."""
        for condition in self._unseen():
            keys: list[str] = []
            for stub in Identity.by_sync_scope.query(self.sync_scope, condition, page_size=PAGE_LIMIT):
                keys.append(stub.identity_key)
                if len(keys) == PAGE_LIMIT:
                    yield self._sweep_slice(keys)
                    keys = []
            if keys:
                yield self._sweep_slice(keys)

    # -- one slice -----------------------------------------------------------------------------

    def _sync_slice(self, records: Sequence[ProviderUser]) -> SyncProgress:
        by_key: dict[str, ProviderUser] = {}
        failed = 0
        for record in records:
            if not record.provider_user_id or not record.provider_user_id.strip():
                failed += 1
                continue
            by_key[identity_key(self.provider_type, record.provider_user_id)] = record  # the last one wins
        if not by_key:
            return SyncProgress(failed=failed)
        emails = {email for email in (normalize_email(r.email) for r in by_key.values()) if email is not None}
        loaded = {item.identity_key: item
                  for item in Identity.batch_get([*by_key, *map(claim_key, emails)], consistent_read=True)}
        stored = {key: loaded.get(key) for key in by_key}
        claims = {email: loaded[claim_key(email)].user_id for email in emails if claim_key(email) in loaded}
        candidates = ({identity.user_id for identity in stored.values() if identity is not None}
                      | set(claims.values())
                      | {new_user_id(key) for key, identity in stored.items() if identity is None})
        plan = _Plan(self, _load_users(candidates), claims)
        plan.tally.failed = failed
        plan.tally.seen = len(by_key)
        for key in sorted(by_key):  # existing identities first: their users' claims come first
            existing = stored[key]
            if existing is not None:
                plan.update(existing, by_key[key])
        for key in sorted(by_key):
            if stored[key] is None:
                plan.add(key, by_key[key])
        plan.write()
        return plan.tally.freeze()

    def _sweep_slice(self, keys: Sequence[str]) -> SyncProgress:
        stale = [identity for identity in Identity.batch_get(keys, consistent_read=True)
                 if identity.sync_mark is not None and identity.sync_scope == self.sync_scope
                 and identity.last_seen_run != self.run_id]  # the index may lag: confirm on the item
        plan = _Plan(self, _load_users({identity.user_id for identity in stale}), {})
        for identity in sorted(stale, key=lambda item: item.identity_key):
            plan.deactivate(identity)
        plan.write()
        return plan.tally.freeze()

    def _report(self, progress: SyncProgress, *, complete: bool, swept: bool,
                token: ResumeToken | None = None, refusal: SyncRefusal | None = None) -> SyncReport:
        get_logger().info("directory sync " + ("refused" if refusal else "finished" if complete else "stopped"),
                          extra={"sync_scope": self.sync_scope, "run_id": self.run_id, "swept": swept,
                                 "progress": {f.name: getattr(progress, f.name) for f in fields(progress)}})
        return SyncReport(self.provider_type, self.sync_scope, self.run_id, progress, complete, swept, token,
                          refusal)


def _load_users(user_ids: set[str]) -> tuple[dict[str, User], set[str]]:
    """The users that exist among ``user_ids`` and which of them are ``all_users`` members:
    one BatchGetItem each (≤ 100 keys per call), nothing when there is nothing to read."""
    users = {user.user_id: user for user in User.batch_get(user_ids, consistent_read=True)}
    members = {member.user_id
               for member in Membership.batch_get([(ALL_USERS, user_id) for user_id in users], consistent_read=True)}
    return users, members


@dataclass
class _Tally:
    seen: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    failed: int = 0
    linked: int = 0

    def freeze(self) -> SyncProgress:
        return SyncProgress(0, self.seen, self.created, self.updated, self.deactivated, self.reactivated,
                            self.failed, self.linked)


def _display_name(record: ProviderUser) -> str:
    return (record.display_name or "").strip() or (record.real_name or "").strip() or record.provider_user_id


def _real_name(record: ProviderUser) -> str | None:
    return (record.real_name or "").strip() or None


class _Plan:
    """The decisions of one slice: what the loaded items become, then one batched write."""

    def __init__(self, run: SyncRun, loaded: tuple[dict[str, User], set[str]], claims: dict[str, str]) -> None:
        self.run = run
        self.users, self.members = loaded
        self.claims = claims  # address -> user id, as stored, then as planned
        self.tally = _Tally()
        self.touched: set[str] = set()  # users whose all_users membership is re-derived
        self.changed: set[str] = set()  # users to write
        self.claim_items: dict[str, Identity] = {}
        self.identities: list[Identity] = []

    # -- decisions -----------------------------------------------------------------------------

    def update(self, identity: Identity, record: ProviderUser) -> None:
        """A record whose identity exists."""
        email = normalize_email(record.email)
        user = self.users.get(identity.user_id)
        repaired = user is None
        if user is None:  # identity without its user (an interrupted first contact): recreate it
            user = self._new_user(identity.user_id, record, email)
            identity.is_primary = True
        was_active = identity.is_active
        primary = identity.is_primary and user.primary_provider == self.run.provider_type
        changed = _assign(identity, is_primary=primary, provider_email=email, is_active=record.is_active) or repaired
        user_changed = self._merge_slack_id(user, identity.provider_user_id)
        if primary:
            user_changed = self._apply_profile(user, record, email) or user_changed
            if was_active != record.is_active and user.is_active != record.is_active:
                user.is_active = record.is_active
                user_changed = True
        if user_changed:
            self.changed.add(user.user_id)
        if was_active != record.is_active:
            if record.is_active:
                self.tally.reactivated += 1
            else:
                self.tally.deactivated += 1
        elif changed or user_changed or repaired:
            self.tally.updated += 1
        self._touch(identity, changed=changed)
        self.touched.add(user.user_id)
        if primary:
            self._claim(email, user)

    def add(self, key: str, record: ProviderUser) -> None:
        """A record whose identity is new: link it to the owner of its e-mail, or create a user."""
        email = normalize_email(record.email)
        owner = self._owner_of(email)
        if owner is not None:
            user = owner
            primary = record.is_primary_hint and record.is_active and user.primary_provider != self.run.provider_type
            if primary:
                user.primary_provider = self.run.provider_type
                self._apply_profile(user, record, email)
                self.changed.add(user.user_id)
            self.tally.linked += 1
        else:
            user_id = new_user_id(key)
            found = self.users.get(user_id)  # found: a retry of a page interrupted after its users
            user = found if found is not None else self._new_user(user_id, record, email)
            primary = True
            self.tally.created += 1
        if self._merge_slack_id(user, record.provider_user_id):
            self.changed.add(user.user_id)
        identity = Identity(key, provider_type=self.run.provider_type, provider_user_id=record.provider_user_id,
                            user_id=user.user_id, provider_email=email, is_primary=primary,
                            is_active=record.is_active, created_at=self.run.now)
        self._touch(identity, changed=True)
        self.touched.add(user.user_id)
        if primary:
            self._claim(email, user)

    def deactivate(self, identity: Identity) -> None:
        """A sweep: ``identity`` was not seen in this run."""
        user = self.users.get(identity.user_id)
        if identity.is_active:
            self.tally.deactivated += 1
            if (user is not None and user.is_active and identity.is_primary
                    and user.primary_provider == self.run.provider_type):
                user.is_active = False
                self.changed.add(user.user_id)
        identity.is_active = False
        identity.sync_mark = None  # out of the sweep index until seen again
        self.identities.append(identity)
        if user is not None:
            self.touched.add(user.user_id)

    def _new_user(self, user_id: str, record: ProviderUser, email: str | None) -> User:
        user = new_user(user_id, email=email, display_name=_display_name(record), real_name=_real_name(record),
                        primary_provider=self.run.provider_type, created_at=self.run.now, is_active=record.is_active)
        self.users[user_id] = user
        self.changed.add(user_id)
        return user

    def _apply_profile(self, user: User, record: ProviderUser, email: str | None) -> bool:
        return _assign(user, email=email, display_name=_display_name(record), real_name=_real_name(record))

    def _merge_slack_id(self, user: User, provider_user_id: str) -> bool:
        team_id, _, slack_user_id = provider_user_id.partition(":")
        if self.run.provider_type != SLACK_PROVIDER or not slack_user_id:
            return False
        if (user.slack_ids or {}).get(team_id) == slack_user_id:
            return False
        user.slack_ids = {**(user.slack_ids or {}), team_id: slack_user_id}
        return True

    def _owner_of(self, email: str | None) -> User | None:
        """The user a claim on ``email`` gives, if it is active and still has that address."""
        owner = self.users.get(self.claims.get(email, "")) if email is not None else None
        if owner is None or not owner.is_active or owner.email != email:
            return None
        return owner

    def _claim(self, email: str | None, user: User) -> None:
        """Claim ``email`` for ``user`` unless another active user with that address holds it."""
        if email is None or not user.is_active or user.email != email or self.claims.get(email) == user.user_id:
            return
        holder = self._owner_of(email)
        if holder is not None:
            get_logger().warning("e-mail already claimed by another user; not linked",
                                 extra={"user_id": user.user_id, "holder_user_id": holder.user_id})
            return
        self.claims[email] = user.user_id
        self.claim_items[email] = Identity(
            claim_key(email), provider_type=EMAIL_PROVIDER, provider_user_id=email, user_id=user.user_id,
            provider_email=email, is_primary=False, is_active=True, created_at=self.run.now)

    def _touch(self, identity: Identity, *, changed: bool) -> None:
        """Record that this run saw ``identity``; queue its write if anything differs."""
        run = self.run
        mark = f"{run.run_id}#{identity.identity_key}" if identity.is_active else None
        if changed or identity.last_seen_run != run.run_id or identity.sync_scope != run.sync_scope \
                or identity.sync_mark != mark:
            identity.last_seen_run = run.run_id
            identity.last_seen_at = run.now
            identity.sync_scope = run.sync_scope
            identity.sync_mark = mark
            self.identities.append(identity)

    # -- the write -----------------------------------------------------------------------------

    def write(self) -> None:
        """Users, then memberships, then claims and identities: an identity (the run's mark) is
        written last, so a page interrupted half-way is redone in full by a retry."""
        now = self.run.now
        if self.changed:
            with User.batch_write() as users:
                for user_id in sorted(self.changed):
                    user = self.users[user_id]
                    user.version = (user.version or 0) + 1
                    user.last_synced_at = now
                    users.save(user)
        joins = [user_id for user_id in sorted(self.touched)
                 if self.users.get(user_id) is not None and self.users[user_id].is_active
                 and user_id not in self.members]
        leaves = [user_id for user_id in sorted(self.touched)
                  if user_id in self.members and not self.users[user_id].is_active]
        if joins or leaves:
            with Membership.batch_write() as memberships:
                for user_id in joins:
                    memberships.save(Membership(ALL_USERS, user_id, added_at=now, added_by=SYSTEM_ACTOR))
                for user_id in leaves:
                    memberships.delete(Membership(ALL_USERS, user_id))
        if self.claim_items or self.identities:
            with Identity.batch_write() as identities:
                for claim in self.claim_items.values():
                    identities.save(claim)
                for identity in self.identities:
                    identities.save(identity)


def _assign(item: Identity | User, **values: object) -> bool:
    """Set the attributes of ``item`` that differ from ``values``; ``True`` if any did."""
    changed = False
    for name, value in values.items():
        if getattr(item, name) != value:
            setattr(item, name, value)
            changed = True
    return changed
