"""Directory providers: the job types that mirror users and groups from Slack and Google Workspace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from pydantic import Field

from insightmesh.directory.sync import DEFAULT_MAX_DEACTIVATE_PERCENT, SyncRefusal, SyncRefusedError
from insightmesh.job_contract import JobContext


def max_deactivate_percent_field() -> Any:
    """The sync bound, a parameter of both directory job types."""
    return Field(default=float(DEFAULT_MAX_DEACTIVATE_PERCENT), ge=0, le=100, description=(
        "At most this percentage of the users the sync manages may be deactivated in one run (people the "
        "provider no longer lists); a run that would deactivate more, or that lists nobody, stops before "
        "deactivating anyone and is recorded failed. Raise it for one run when many people really left."))


def refuse(context: JobContext, refusal: SyncRefusal, provider: str, *, counts: tuple[int, int, int],
           summary: Mapping[str, Any]) -> NoReturn:
    """Fail the run without deactivating anyone: the warning and the numbers on the run, the
    checkpoint cleared (the next run lists again from the start), then :class:`SyncRefusedError`."""
    context.warn(refusal.reason)
    context.save_checkpoint({})
    processed, succeeded, failed = counts
    context.progress(processed=processed, succeeded=succeeded, failed=failed,
                     summary={**summary, **refusal.summary()})
    raise SyncRefusedError(refusal, provider)


def sync_run_id_for(run_id: str) -> str:
    """The sync run id of a fresh run: the task run's id (``#`` is reserved by the sync's marks)."""
    return run_id.replace("#", "-") or "run"
