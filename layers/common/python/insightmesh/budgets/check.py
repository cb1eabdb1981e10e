"""The budget check on the conversation worker's path, before an agent runs.

The scopes of a request: the user (directory user id), the agent, each of the user's groups
(:func:`insightmesh.directory.permissions.groups_of`, cached 30 s) and the workspace (Slack team
id). For each scope with a budget, its spend is the usage counter
``(subject_of(scope, value), period_key(budget.period, now)).cost_micros``. The decision:

* every budget under its ``warn_at`` fraction: go on with the configured model;
* a budget at or above ``warn_at`` (and under its limit): the request moves to that budget's
  ``fallback_model``, else to ``LLM_FALLBACK_MODEL`` when set (the most specific scope's fallback
  wins: user, agent, group, workspace), and the admins are told once per budget and period
  (:mod:`insightmesh.budgets.alerts`, in the background);
* a budget at or above its limit: :attr:`BudgetDecision.refusal` names it (scope, value, limit,
  period) and when it resets (the next period's start, UTC); the worker replies with it and
  :meth:`BudgetDecision.client` gives a client that refuses every call, so no LLM call is made.
  When several are used up, the one that resets last is named: nothing runs before then.

Reads: at most one DynamoDB call per request, a ``BatchGetItem`` on the usage table of what the
container's cache lacks — a scope's budget definition and, while the definition is unknown, its
three spend counters (day, week, month); once the definition is known, only the counter of its
period. Everything read (absent items included) is kept ``BUDGET_CACHE_SECONDS`` (5 s): a request
whose items are all cached makes no call. 100 keys fit one call: up to 22 groups per user on a
cold cache (more groups take one more call per 25). The groups come from the shared 30 s cache
(usage recording reads the same), whose miss is one ``Query``.

Fail open: if the budgets cannot be read (a DynamoDB error, a missing table), the check logs a
warning and the request goes on with the configured model, uncounted against any budget. A
budget is a cost control, not a permission: an unreadable usage table should not stop the
assistant (a permission check, by contrast, fails closed). The failure is not cached, so the next
request reads again.

Overspend the cache allows. A container decides on spend it read up to ``T`` seconds ago
(``BUDGET_CACHE_SECONDS``), and a request that starts under the limit may spend its whole cost.
The counters themselves lag too: a completion goes to the usage queue and is counted by the usage
aggregator within its batching window ``W`` (5 s, ``MaximumBatchingWindowInSeconds``) plus its
run. With ``C`` worker containers running at once, each finishing ``r`` requests a second, and
``m`` the largest cost of one request, the spend past a limit is at most::

    overspend <= C * ((T + W) * r + 1) * m

A Lambda container serves one request at a time and a worker request takes >= ~1 s, so r <= 1:
with T = 5 s, W = 5 s, m = $0.05 (a long gpt-4o answer with tools; gpt-4o-mini is ~$0.003) and
C = 10, overspend <= 10 * 11 * $0.05 = $5.50, and $0.55 per container. Lower T (0 reads every request)
or the worker's reserved concurrency lowers it; the budgets' own ``warn_at`` fallback to a cheaper
model lowers ``m`` before the limit is reached.

A research run (:mod:`insightmesh.research.workflow`) is one request that spends for minutes: it
runs this check again (the same cached :func:`check`, on the run's user, the ``profile`` agent, the
user's groups and the workspace) before each step that calls the LLM — the plan, each researcher,
the synthesis, each review and revision — and stops at the limit with a partial report
(:attr:`BudgetDecision.used_up` names the budget). So a run overspends at most one step's cost
past the cached read, ``m`` being that step's cost (a researcher's tool loop is bounded by
``RESEARCH_RESEARCHER_MAX_TOKENS``), times the researchers running at once
(``RESEARCH_MAX_CONCURRENCY``), each of which was checked when it started; past ``warn_at`` the
run's remaining steps use the fallback model.

The cache is not invalidated when this container records usage: a container's requests run one
after another, so every request would invalidate it and the cache would save nothing for budgeted
scopes; the ``+ 1`` and ``T * r`` terms above are that choice's price, and ``T = 0`` buys it back.
``W * r`` is the price of writing the counters off the request path (22 writes per completion on
it slowed the next request's reads ~2x).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from insightmesh.budgets import alerts
from insightmesh.budgets.models import BUDGET_SUBJECT, DEFAULT_WARN_AT, BudgetItem, Scope, budget_key
from insightmesh.budgets.settings import budget_settings
from insightmesh.caching import TtlCache
from insightmesh.clock import utc_now
from insightmesh.directory.permissions import groups_of
from insightmesh.llm import get_llm_client
from insightmesh.llm.base import Completion, LlmClient, LlmUnavailableError
from insightmesh.llm.pricing import pricing_settings
from insightmesh.llm.usage import MICROS_PER_USD, PERIOD_KINDS, PeriodKind, period_key, subject_of
from insightmesh.observability import get_logger

_DATA_ERRORS: Final = (PynamoDBException, BotoCoreError, ClientError)
Key = tuple[str, str]
MARKER_KEPT: Final = timedelta(days=35)  # an alert marker outlives its period by this much
Cached = tuple[BudgetItem | None]  # a 1-tuple, so that "known absent" differs from "not cached"


@dataclass(frozen=True)
class Budget:
    """A budget's definition: ``limit_micros`` per ``period`` on one scope's value."""

    scope: Scope
    value: str
    limit_micros: int
    period: PeriodKind
    warn_at: float = DEFAULT_WARN_AT
    fallback_model: str | None = None

    @classmethod
    def of(cls, scope: Scope, value: str, item: BudgetItem) -> Budget:
        return cls(scope=scope, value=value, limit_micros=int(item.limit_micros or 0), period=item.kind,
                   warn_at=float(item.warn_at if item.warn_at is not None else DEFAULT_WARN_AT),
                   fallback_model=item.fallback_model or None)

    @property
    def label(self) -> str:
        return f"the {self.scope} budget for {self.value} ({usd(self.limit_micros)} per {self.period})"


@dataclass(frozen=True)
class Standing:
    """A budget and its spend in the current period."""

    budget: Budget
    spent_micros: int
    period_key: str
    now: datetime

    @property
    def exhausted(self) -> bool:
        return self.spent_micros >= self.budget.limit_micros

    @property
    def warned(self) -> bool:
        return self.spent_micros >= self.budget.warn_at * self.budget.limit_micros

    @property
    def resets_at(self) -> datetime:
        return next_period_start(self.budget.period, self.now)

    @property
    def alert_key(self) -> str:
        return f"{budget_key(self.budget.scope, self.budget.value)}#{self.period_key}"


@dataclass(frozen=True)
class BudgetDecision:
    """What the budgets decide for one request (module docstring)."""

    standings: tuple[Standing, ...] = ()
    fallback_model: str | None = None
    exhausted: Standing | None = None
    checked: bool = True  # False: the budgets could not be read (fail open)
    notes: list[str] = field(default_factory=list)

    @property
    def refusal(self) -> str | None:
        """The reply to a request a used-up budget stops, or None."""
        used_up = self.used_up
        if used_up is None:
            return None
        return f"Sorry, {used_up} Until then I can't answer here; an InsightMesh admin can raise the budget."

    @property
    def used_up(self) -> str | None:
        """The used-up budget and its reset in the refusal's words (a research run's note uses them
        too): ``the user budget for u-1 ($5.00 per month) is used up: ... It resets on ... UTC.``"""
        if self.exhausted is None:
            return None
        budget, resets = self.exhausted.budget, self.exhausted.resets_at
        return (f"{budget.label} is used up: {usd(self.exhausted.spent_micros)} spent this {budget.period}. "
                f"It resets on {resets:%Y-%m-%d at %H:%M} UTC.")

    @property
    def exhausted_label(self) -> str | None:
        return None if self.exhausted is None else self.exhausted.budget.label

    def client(self, llm: LlmClient) -> LlmClient:
        """The LLM the agent gets: ``llm``, the fallback model's client, or one that refuses (used up)."""
        if self.exhausted is not None:
            return RefusingLlm(llm.name, self.refusal or "budget used up")
        if self.fallback_model:
            return get_llm_client(model=self.fallback_model)
        return llm


class RefusingLlm:
    """The client of a request a budget stopped: every call raises, so no LLM call is made (the
    thread memory's summary, say, is then skipped as on any LLM failure)."""

    def __init__(self, name: str, reason: str) -> None:
        self._name, self._reason = name, reason

    @property
    def name(self) -> str:
        return self._name

    def complete(self, messages: Sequence[Any], **_: Any) -> Completion:
        raise LlmUnavailableError("budget used up: no LLM call", user_message=self._reason, provider=self._name)


def usd(micros: int) -> str:
    return f"${micros / MICROS_PER_USD:,.2f}"


def next_period_start(kind: PeriodKind, now: datetime) -> datetime:
    """When the ``kind`` period holding ``now`` ends: the next UTC day, ISO week (Monday) or month."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return day + timedelta(days=1)
    if kind == "week":
        return day + timedelta(days=7 - day.weekday())
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


@lru_cache(maxsize=1)
def _cache() -> TtlCache[Key, Cached]:
    return TtlCache(budget_settings().BUDGET_CACHE_SECONDS, max_entries=8192)


def reset_cache() -> None:
    """Forget everything read (tests; a new BUDGET_CACHE_SECONDS after ``budget_settings.cache_clear()``)."""
    _cache.cache_clear()


def scopes_of(*, workspace: str, user_id: str, agent: str, groups: Iterable[str]) -> list[tuple[Scope, str]]:
    """The request's scopes, most specific first (whose fallback model wins)."""
    scopes: list[tuple[Scope, str]] = [("user", user_id), ("agent", agent)]
    scopes += [("group", name) for name in sorted(groups)]
    scopes.append(("workspace", workspace))
    return [(scope, value) for scope, value in scopes if value]


def check(*, workspace: str, user_id: str, agent: str, groups: Iterable[str] | None = None,
          now: datetime | None = None, alert: bool = True) -> BudgetDecision:
    """Decide on one request (module docstring); never raises for a data-access failure."""
    moment = now or utc_now()
    try:
        names = groups_of(user_id) if groups is None else frozenset(groups)
        scopes = scopes_of(workspace=workspace, user_id=user_id, agent=agent, groups=names)
        known = _read(scopes, moment)
    except _DATA_ERRORS as error:
        get_logger().warning("budgets not read; the request goes on (fail open)",
                             extra={"user_id": user_id, "agent": agent, "error": str(error)})
        return BudgetDecision(checked=False)
    standings = []
    for scope, value in scopes:
        item = known.get(_definition_key(scope, value))
        if item is None or not item.is_budget:
            continue
        budget = Budget.of(scope, value, item)
        counter = known.get(_counter_key(scope, value, budget.period, moment))
        spent = int(counter.cost_micros or 0) if counter is not None else 0
        standings.append(Standing(budget, spent, period_key(budget.period, moment), moment))
    decision = decide(standings)
    if alert:
        for standing in standings:
            if standing.warned:
                alerts.notify(alert_of(standing, workspace, decision))
    return decision


def decide(standings: Sequence[Standing]) -> BudgetDecision:
    """The decision over the request's budgets (in scope order, most specific first)."""
    exhausted = [standing for standing in standings if standing.exhausted]
    if exhausted:
        last = max(exhausted, key=lambda standing: standing.resets_at)  # max keeps the first of equals
        return BudgetDecision(tuple(standings), exhausted=last)
    warned = [standing for standing in standings if standing.warned]
    if not warned:
        return BudgetDecision(tuple(standings))
    own = next((standing.budget.fallback_model for standing in warned if standing.budget.fallback_model), None)
    return BudgetDecision(tuple(standings), fallback_model=own or pricing_settings().LLM_FALLBACK_MODEL)


def alert_of(standing: Standing, workspace: str, decision: BudgetDecision) -> alerts.Alert:
    budget = standing.budget
    share = standing.spent_micros / budget.limit_micros if budget.limit_micros else 1.0
    if standing.exhausted:
        then = f"Requests it covers are refused until {standing.resets_at:%Y-%m-%d %H:%M} UTC."
    elif decision.fallback_model:
        then = f"Requests now use the fallback model {decision.fallback_model}."
    else:
        then = "No fallback model is configured: requests go on with the usual model."
    text = (f":warning: InsightMesh budget alert: {budget.label} has reached {share:.0%} "
            f"({usd(standing.spent_micros)} spent in {standing.period_key}; warning at {budget.warn_at:.0%}). {then}")
    return alerts.Alert(key=standing.alert_key, text=text, team_id=workspace, spent_micros=standing.spent_micros,
                        limit_micros=budget.limit_micros, expires_at=standing.resets_at + MARKER_KEPT)


def _definition_key(scope: Scope, value: str) -> Key:
    return BUDGET_SUBJECT, budget_key(scope, value)


def _counter_key(scope: Scope, value: str, kind: PeriodKind, now: datetime) -> Key:
    return subject_of(scope, value), period_key(kind, now)


def _read(scopes: Sequence[tuple[Scope, str]], now: datetime) -> dict[Key, BudgetItem | None]:
    """The definitions and counters of ``scopes``: from the cache, the rest in one BatchGetItem."""
    cache = _cache()
    known: dict[Key, BudgetItem | None] = {}
    wanted: list[Key] = []

    def want(key: Key) -> None:
        cached = cache.get(key)
        if cached is not None:
            known[key] = cached[0]
        elif key not in wanted:
            wanted.append(key)

    for scope, value in scopes:
        definition = _definition_key(scope, value)
        want(definition)
        if definition in known:  # known: only its own period's counter, if it is a budget
            item = known[definition]
            if item is not None and item.is_budget:
                want(_counter_key(scope, value, item.kind, now))
        else:  # not yet known: its period neither, so all three counters in the same call
            for kind in PERIOD_KINDS:
                want(_counter_key(scope, value, kind, now))
    if wanted:
        found: dict[Key, BudgetItem | None] = dict.fromkeys(wanted)
        for item in BudgetItem.batch_get(wanted):
            found[(str(item.subject), str(item.period))] = item
        for key, read in found.items():
            cache.put(key, (read,))
        known.update(found)
    return known
