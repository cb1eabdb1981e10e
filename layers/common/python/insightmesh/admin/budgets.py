"""``/api/budgets``: cost budgets per period on a workspace, group, user or agent (admins only;
every change audited in the same transaction).

* ``GET /api/budgets`` — the budgets, a page at a time, each with its spend in the current period
  (one ``Query`` of the definitions, one ``BatchGetItem`` of their counters);
* ``PUT /api/budgets/<scope>/<value>`` — set one (201 when new): ``limit_usd`` (> 0), ``period``
  (day, week or month, UTC), ``warn_at`` (a fraction of the limit, 0.8 by default) and an optional
  ``fallback_model``;
* ``DELETE /api/budgets/<scope>/<value>`` — remove one (404 when there is none).

Values are checked where that is cheap: a group and a user must exist (one ``GetItem``), an agent
must be in the catalog (one ``GetItem``); a workspace is a Slack team id (``T…``), checked by its
form only (a single-workspace install has no workspace record). A change is conditional on the
version read (409 if someone changed the budget meanwhile). Storage and access patterns:
:mod:`insightmesh.budgets.models`; what a budget does: :mod:`insightmesh.budgets.check`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field

from insightmesh.admin.schemas import AGENT_NAME_PATTERN, NAME_PATTERN, USER_ID_PATTERN
from insightmesh.agents.catalog import get_agent
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, responses
from insightmesh.api.errors import ConflictError, NotFoundError, ValidationFailedError
from insightmesh.api.pagination import DEFAULT_LIMIT, Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.guard import authenticate_admin
from insightmesh.auth.principal import Principal
from insightmesh.budgets.check import next_period_start
from insightmesh.budgets.models import BUDGET_SUBJECT, DEFAULT_WARN_AT, BudgetItem, Scope, budget_key
from insightmesh.clock import utc_now
from insightmesh.directory.models import Group, User
from insightmesh.llm.usage import MICROS_PER_USD, PeriodKind, period_key, subject_of

WORKSPACE_PATTERN: Final = r"^T[A-Z0-9]{2,30}$"
VALUE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"  # the widest of the four; each scope's below
MODEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$"
MAX_LIMIT_USD: Final = 1_000_000.0
LIST_SCOPE: Final = "budgets"
SCOPE_VALUES: Final[dict[str, str]] = {"workspace": WORKSPACE_PATTERN, "group": NAME_PATTERN,
                                       "user": USER_ID_PATTERN, "agent": AGENT_NAME_PATTERN}

ScopePath = Annotated[Scope, Path(description="workspace, group, user or agent.")]
ValuePath = Annotated[str, Path(pattern=VALUE_PATTERN,
                                description="The Slack team id (workspace), group name, directory user id or agent "
                                            "name.")]


class BudgetIn(BaseModel):
    """A budget, whole (PUT)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit_usd: float = Field(gt=0, le=MAX_LIMIT_USD, description="The limit in US dollars per period (> 0).")
    period: Literal["day", "week", "month"] = Field(description="The UTC period the limit applies to (ISO weeks).")
    warn_at: float = Field(default=DEFAULT_WARN_AT, gt=0, le=1,
                           description="From this fraction of the limit on, requests use the fallback model and "
                                       "the admins are told once per period (default 0.8).")
    fallback_model: str | None = Field(default=None, pattern=MODEL_PATTERN,
                                       description="The cheaper model past warn_at; null: LLM_FALLBACK_MODEL, if set.")
    version: int | None = Field(default=None, ge=1, description="The version you read: 409 if changed since.")


class BudgetOut(BaseModel):
    scope: Scope
    value: str
    limit_usd: float
    period: PeriodKind
    warn_at: float
    fallback_model: str | None
    spent_usd: float | None = Field(default=None, description="Spent in the current period (lists only).")
    resets_at: datetime = Field(description="When the current period ends (UTC).")
    version: int
    updated_at: datetime | None
    updated_by: str | None


def target(scope: str, value: str) -> str:
    return f"budget:{scope}:{value}"


def budget_out(item: BudgetItem, *, spent_micros: int | None = None) -> BudgetOut:
    scope, value = _scope_value(item)
    return BudgetOut(scope=scope, value=value, limit_usd=int(item.limit_micros or 0) / MICROS_PER_USD,
                     period=item.kind, warn_at=float(item.warn_at or DEFAULT_WARN_AT),
                     fallback_model=item.fallback_model, resets_at=next_period_start(item.kind, utc_now()),
                     spent_usd=None if spent_micros is None else spent_micros / MICROS_PER_USD,
                     version=int(item.version or 0), updated_at=item.updated_at, updated_by=item.updated_by)


def _read(scope: Scope, value: str) -> BudgetItem | None:
    try:
        return BudgetItem.get(BUDGET_SUBJECT, budget_key(scope, value), consistent_read=True)
    except BudgetItem.DoesNotExist:
        return None


def _invalid(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError(message, details=[{"loc": field.split("."), "msg": message, "type": "value_error"}])


def check_value(scope: Scope, value: str) -> None:
    """422 unless ``value`` has the scope's form and (group, user, agent) exists: one GetItem."""
    if not re.fullmatch(SCOPE_VALUES[scope], value):
        raise _invalid("path.value", f"{value!r} is not a {scope} ({SCOPE_VALUES[scope]})")
    exists = True
    if scope == "group":
        exists = _exists(Group, value)
    elif scope == "user":
        exists = _exists(User, value)
    elif scope == "agent":
        agent = get_agent(value)
        exists = agent is not None and not agent.is_deleted
    if not exists:
        raise _invalid("path.value", f"no {scope} named {value!r}")


def _exists(model: type[Group] | type[User], key: str) -> bool:
    try:
        model.get(key)
    except model.DoesNotExist:
        return False
    return True


def list_page(*, limit: int, cursor: str | None) -> Page[BudgetOut]:
    results = BudgetItem.query(BUDGET_SUBJECT, limit=limit, last_evaluated_key=start_key(cursor, scope=LIST_SCOPE))
    items, last_key = query_page(results, BudgetItem)
    now = utc_now()
    counters = {}
    keys = [(subject_of(*_scope_value(item)), period_key(item.kind, now)) for item in items]
    if keys:
        counters = {(str(c.subject), str(c.period)): int(c.cost_micros or 0) for c in BudgetItem.batch_get(keys)}
    return Page[BudgetOut](items=[budget_out(item, spent_micros=counters.get(key, 0)) for item, key in zip(items, keys,
                                                                                                          strict=True)],
                           next_cursor=key_cursor(last_key, scope=LIST_SCOPE))


def _scope_value(item: BudgetItem) -> tuple[Scope, str]:
    scope, _, value = str(item.period).partition("#")
    return scope, value  # type: ignore[return-value]  # written by put() below: always a Scope


def put(scope: Scope, value: str, body: BudgetIn, *, actor: Principal, request_id: str) -> tuple[BudgetOut, bool]:
    """Set the budget (with its audit entry), conditional on the version read: (budget, created)."""
    check_value(scope, value)
    current = _read(scope, value)
    version = int(current.version or 0) if current is not None else 0
    if body.version is not None and body.version != version:
        raise ConflictError(f"budget {scope}/{value} is at version {version}, not {body.version}: reload and retry")
    item = BudgetItem(BUDGET_SUBJECT, budget_key(scope, value), scope=scope, value=value,
                      limit_micros=round(body.limit_usd * MICROS_PER_USD), period_kind=body.period,
                      warn_at=body.warn_at, fallback_model=body.fallback_model, version=version + 1,
                      updated_at=utc_now(), updated_by=actor.label)
    condition = (BudgetItem.version == version) if current is not None else BudgetItem.subject.does_not_exist()
    after = budget_out(item)
    tx = Tx()
    tx.put(item, condition=condition,
           error=ConflictError(f"budget {scope}/{value} was changed by someone else; reload and retry"))
    tx.audit(audit_log.entry(actor=actor, action="budget.put", target=target(scope, value),
                             before=budget_out(current) if current is not None else None, after=after,
                             request_id=request_id))
    tx.commit()
    return after, current is None


def delete(scope: Scope, value: str, *, actor: Principal, request_id: str) -> BudgetOut:
    current = _read(scope, value)
    if current is None:
        raise NotFoundError(f"there is no {scope} budget for {value}")
    tx = Tx()
    tx.delete(BudgetItem(BUDGET_SUBJECT, budget_key(scope, value)),
              condition=BudgetItem.version == int(current.version or 0),
              error=ConflictError(f"budget {scope}/{value} was changed by someone else; reload and retry"))
    before = budget_out(current)
    tx.audit(audit_log.entry(actor=actor, action="budget.delete", target=target(scope, value), before=before,
                             after=None, request_id=request_id))
    tx.commit()
    return before


def register_budget_routes(app: InsightMeshResolver) -> None:
    def admin(action: str, scope: str = "*", value: str = "*") -> Principal:
        return authenticate_admin(app, action=action, target=target(scope, value))

    @app.get("/api/budgets", summary="List budgets", tags=["budgets"], security=SECURITY,
             description="Admins only. Every budget, with its spend in the current period.",
             responses=responses(200, "A page of budgets", 403))
    def list_budgets(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[BudgetOut]:
        admin("budget.read")
        return list_page(limit=limit, cursor=cursor)

    @app.put("/api/budgets/<scope>/<value>", summary="Set a budget", tags=["budgets"], security=SECURITY,
             description="Admins only; audited. A group, user or agent that does not exist: 422.",
             responses={**responses(200, "The budget, replaced", 403, 404, 409),
                        201: {"description": "The budget, set for the first time"}})
    def put_budget(scope: ScopePath, value: ValuePath, body: Annotated[BudgetIn, Body()]) -> Response[BudgetOut]:
        principal = admin("budget.put", scope, value)
        out, created = put(scope, value, body, actor=principal, request_id=app.correlation_id)
        return Response(status_code=201 if created else 200, content_type=content_types.APPLICATION_JSON, body=out)

    @app.delete("/api/budgets/<scope>/<value>", summary="Remove a budget", tags=["budgets"], security=SECURITY,
                description="Admins only; audited. 404 when there is no such budget.",
                responses=responses(200, "The budget removed", 403, 404, 409))
    def delete_budget(scope: ScopePath, value: ValuePath) -> BudgetOut:
        principal = admin("budget.delete", scope, value)
        return delete(scope, value, actor=principal, request_id=app.correlation_id)
