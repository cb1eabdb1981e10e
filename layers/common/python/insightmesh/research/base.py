"""The research context's vocabulary, shared by the workflow, progress and delivery modules.

``ProgressBoard`` is how a run shows its plan and steps in the thread (``research.progress``
implements it on Slack); the workflow depends on this protocol only, so its tests can record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

TaskStatus = Literal["pending", "in_progress", "complete", "error"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "capped"]


@dataclass(frozen=True, slots=True)
class PlanTask:
    id: str  # stable within a run: "plan", "overview", "people", ..., "synthesis", "review", "report"
    title: str
    status: TaskStatus = "pending"
    detail: str = ""


class ProgressBoard(Protocol):
    """Shows a run's plan and its steps in the thread. Every method is idempotent (a durable step
    may run again after a crash) and never raises for a Slack failure (progress is best effort;
    the report's delivery is not)."""

    def show_plan(self, tasks: Sequence[PlanTask]) -> None: ...

    def update(self, task_id: str, status: TaskStatus, detail: str = "") -> None: ...

    def close(self, text: str) -> None:
        """The run ended (``text`` says how); the board stops offering the Stop button."""
        ...
