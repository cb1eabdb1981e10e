"""The job types InsightMesh knows, by name. Imported lazily: a type's provider client loads only
in the function that runs or validates it."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Final

from insightmesh.job_contract import JobType

# name -> "module:Class"
_TYPES: Final[dict[str, str]] = {
    "slack_user_sync": "insightmesh.directory.providers.slack_user_sync:SlackUserSync",
    "google_workspace_sync": "insightmesh.directory.providers.google_workspace_sync:GoogleWorkspaceSync",
    "gdrive_ingest": "insightmesh.knowledge.sources.gdrive.job:GdriveIngest",
    "answer_quality_eval": "insightmesh.evaluation.job:AnswerQualityEval",
}


def job_type_names() -> list[str]:
    return sorted(_TYPES)


@cache
def job_type(name: str) -> type[JobType]:
    """The class of job type ``name``; ``KeyError`` if there is none."""
    module, _, attribute = _TYPES[name].partition(":")
    cls: type[JobType] = getattr(importlib.import_module(module), attribute)
    if cls.name != name:
        raise RuntimeError(f"job type {attribute} is registered as {name!r} but names itself {cls.name!r}")
    return cls
