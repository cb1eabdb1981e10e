"""Directory providers: the job types that mirror users and groups from Slack and Google Workspace."""


def sync_run_id_for(run_id: str) -> str:
    """The sync run id of a fresh run: the task run's id (``#`` is reserved by the sync's marks)."""
    return run_id.replace("#", "-") or "run"
