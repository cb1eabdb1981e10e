"""The research runs' environment, validated once per process on first use (a function that
never starts or runs research never reads it).

* ``RESEARCH_MAX_TOKENS`` (``200000``): the token cap of one run — the sum of every LLM call's
  tokens (plan, researchers, synthesis, review, revisions). A run that reaches it ends ``capped``
  with a partial report that says so. Recorded on the run when it is created.
* ``RESEARCH_RESEARCHER_MAX_TOKENS`` (``30000``): each researcher's own budget (its tool loop).
* ``RESEARCH_RESEARCHER_MAX_STEPS`` (``6``): the tool-loop steps one researcher may take.
* ``RESEARCH_MAX_REVISIONS`` (``2``, at most 2): revisions after a failed quality check.
* ``RESEARCH_MAX_CONCURRENCY`` (``6``): researchers that run at once (the LLM provider's and the
  search API's rate limits are shared by them).

An empty value means "not set" (the template passes empty parameters through).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from insightmesh.config import load_settings


class ResearchSettings(BaseSettings):
    # env_ignore_empty: an empty variable (a template parameter left blank) takes the default.
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True)

    RESEARCH_MAX_TOKENS: int = Field(default=200_000, ge=1_000, le=10_000_000)
    RESEARCH_RESEARCHER_MAX_TOKENS: int = Field(default=30_000, ge=500, le=1_000_000)
    RESEARCH_RESEARCHER_MAX_STEPS: int = Field(default=6, ge=1, le=20)
    RESEARCH_MAX_REVISIONS: int = Field(default=2, ge=0, le=2)
    RESEARCH_MAX_CONCURRENCY: int = Field(default=6, ge=1, le=16)


@lru_cache(maxsize=1)
def get_research_settings() -> ResearchSettings:
    return load_settings(ResearchSettings)


__all__ = ["ResearchSettings", "get_research_settings"]
