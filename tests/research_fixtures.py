"""What the research board's tests and benchmark share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Run:
    """A research run as the board reads it (``research.progress.BoardRun``), without the table."""

    run_id: str
    channel_id: str
    thread_ts: str
    progress_ts: str | None = None
    subject: str = "Acme Corp"
