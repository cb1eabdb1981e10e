"""Budget definitions and alert markers, kept in the usage table (``USAGE_TABLE``) beside the
counters they limit, so that one ``BatchGetItem`` on one table reads both.

Items:

* a budget — ``subject = "budget"``, ``period = "<scope>#<value>"`` (``user#u-123``,
  ``group#sales``, ``agent#help``, ``workspace#T01``): ``limit_micros`` (the limit in millionths of
  a US dollar, like the counters' ``cost_micros``), ``period_kind`` (``day``, ``week`` or
  ``month``, UTC), ``warn_at`` (a fraction of the limit, 0.8 by default), ``fallback_model``
  (optional), ``version``, ``updated_at``, ``updated_by``;
* the spend it limits — the counter ``(subject_of(scope, value), period_key(period_kind, now))``
  that :func:`insightmesh.llm.usage.record_usage` ADDs ``cost_micros`` to (never written here);
* an alert sent — ``subject = "budget-alert"``, ``period = "<scope>#<value>#<period key>"``:
  written once per budget and period by a conditional ``PutItem``; whoever writes it tells the
  admins (:mod:`insightmesh.budgets.alerts`).

Access patterns:

* the request-path check — ``BatchGetItem`` of the definitions of the request's scopes (the
  workspace, the user, the agent, each of the user's groups) and of their spend counters for the
  current day, ISO week and month, 100 keys a call (so one call for up to 22 groups), cached per
  container (:mod:`insightmesh.budgets.check`);
* every budget — ``Query`` on ``subject = "budget"`` (the admin list, paginated);
* one budget — ``GetItem`` on ``("budget", "<scope>#<value>")`` (the admin API's before-image);
* set / remove a budget — ``PutItem`` / ``DeleteItem`` with the audit entry in one transaction
  (:mod:`insightmesh.admin.budgets`);
* the alert — ``PutItem`` with ``attribute_not_exists(subject)`` on ``("budget-alert", ...)``; the
  marker carries ``expires_at`` (the table's TTL) 35 days after its period ends, once it can no
  longer matter.
"""

from __future__ import annotations

from typing import Final, Literal

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.llm.usage import PeriodKind

Scope = Literal["workspace", "group", "user", "agent"]
SCOPES: Final[tuple[Scope, ...]] = ("workspace", "group", "user", "agent")
BUDGET_SUBJECT: Final = "budget"
ALERT_SUBJECT: Final = "budget-alert"
DEFAULT_WARN_AT: Final = 0.8


def budget_key(scope: Scope, value: str) -> str:
    """The range key of a budget's definition: ``<scope>#<value>``."""
    return f"{scope}#{value}"


class BudgetItem(Model):
    """An item of the usage table as the budget check reads it: a budget's definition (subject
    ``budget``) or a spend counter (any other subject: only ``cost_micros`` is read)."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)
    period = UnicodeAttribute(range_key=True)
    cost_micros = NumberAttribute(null=True)  # a counter's spend
    scope = UnicodeAttribute(null=True)
    value = UnicodeAttribute(null=True)
    limit_micros = NumberAttribute(null=True)
    period_kind = UnicodeAttribute(null=True)
    warn_at = NumberAttribute(null=True)
    fallback_model = UnicodeAttribute(null=True)
    version = NumberAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # the table's TTL: never set on a budget

    @property
    def is_budget(self) -> bool:
        return self.subject == BUDGET_SUBJECT and self.limit_micros is not None

    @property
    def kind(self) -> PeriodKind:
        kind = str(self.period_kind or "month")
        return "day" if kind == "day" else "week" if kind == "week" else "month"


class BudgetAlert(Model):
    """The marker of one budget's alert in one period: whoever writes it first sends the alert."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)  # always ALERT_SUBJECT
    period = UnicodeAttribute(range_key=True)  # <scope>#<value>#<period key>
    sent_at = UTCDateTimeAttribute()
    spent_micros = NumberAttribute()
    limit_micros = NumberAttribute()
    expires_at = TTLAttribute(null=True)  # a while after its period ends (the table's TTL removes it)
