"""The budgets' environment, validated once per process on first use.

* ``BUDGET_CACHE_SECONDS`` (``5``, 0 to 60): how long a container reuses the budget definitions
  and spend counters it read (0: read on every request). The overspend this allows is bounded in
  :mod:`insightmesh.budgets.check`.
* ``BUDGET_ALERT_CHANNEL`` (unset): a Slack channel id (``C…``/``G…``) that gets the budget alerts;
  unset, each admin with a Slack id gets a DM (:mod:`insightmesh.budgets.alerts`).
* ``LLM_FALLBACK_MODEL`` (unset): the model a request moves to when a budget without a fallback of
  its own reaches its warning threshold — read from :mod:`insightmesh.llm.pricing`'s settings,
  where ``/api/models`` lists it too.

An empty value means "not set" (the template passes empty parameters through).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.config import load_settings


class BudgetSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True)

    BUDGET_CACHE_SECONDS: float = Field(default=5.0, ge=0, le=60)
    BUDGET_ALERT_CHANNEL: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]{2,30}$")


@lru_cache(maxsize=1)
def budget_settings() -> BudgetSettings:
    """Validated once per container (tests call ``budget_settings.cache_clear()``)."""
    return load_settings(BudgetSettings)


__all__ = ["BudgetSettings", "budget_settings"]
