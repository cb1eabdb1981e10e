"""Starting and cancelling research runs: what the conversation worker calls.

``start_research`` records the run (``research.runs.create_run``) and starts its durable execution
(``research.launcher.start_execution``, an asynchronous invoke named by the run id). The worker is
never held for the run's minutes: it answers at once ("researching…") and the research function
reports in the thread. A run that cannot be started is marked ``failed`` and the worker gets a
:class:`ResearchError` whose ``user_message`` it posts (never silent).

One thread runs one research at a time: a second request while a run is queued or running is
refused with :class:`ResearchBusyError` (one Query on the sparse active-thread index).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from insightmesh.agents.base import ReportDocument, ResearchRequest
from insightmesh.knowledge.base import Audience
from insightmesh.research import launcher, runs
from insightmesh.research.runs import RunKind
from insightmesh.research.settings import get_research_settings

logger = logging.getLogger(__name__)

NOT_STARTED_MESSAGE: Final = ("I couldn't start the research just now: the research service is unavailable. "
                              "Please try again in a few minutes.")
BUSY_MESSAGE: Final = ("A research run is already in progress in this thread. Say *stop* to cancel it, "
                       "or wait for its report.")
UNKNOWN_KIND_MESSAGE: Final = "I don't know how to run that kind of research."
TOO_LARGE_MESSAGE: Final = "The report is too large to deliver as a file."
KINDS: Final = frozenset({"profile"})


class ResearchError(Exception):
    """A research run could not be started; ``user_message`` is safe to post in the thread."""

    def __init__(self, message: str, *, user_message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message
        self.run_id = run_id


class ResearchNotStartedError(ResearchError):
    """The run was recorded but its execution could not be started (it is marked failed)."""


class ResearchBusyError(ResearchError):
    """The thread already has a queued or running run."""


def _launch(run: runs.ResearchRun) -> str:
    try:
        launcher.start_execution(run.run_id)
    except launcher.LaunchError as error:
        logger.warning("research run %s could not start: %s", run.run_id, error)
        runs.finish(run.run_id, "failed", error=f"could not start: {error}")
        raise ResearchNotStartedError(str(error), user_message=NOT_STARTED_MESSAGE, run_id=run.run_id) from error
    return run.run_id


def _refuse_if_busy(team_id: str, channel_id: str, thread_ts: str) -> None:
    active = runs.active_run_in_thread(team_id, channel_id, thread_ts)
    if active is not None:
        raise ResearchBusyError(f"run {active.run_id} is {active.status} in this thread",
                                user_message=BUSY_MESSAGE, run_id=active.run_id)


def start_research(request: ResearchRequest, *, team_id: str, channel_id: str, thread_ts: str, user_id: str,
                   tools: Iterable[str] | None = None, audience: Audience | None = None) -> str:
    """Record a research run for this thread and start it; its run id. Raises :class:`ResearchError`.

    ``tools``: the tools enabled where the answer is read (the agent's ∩ the channel's; None: the
    workflow's own). ``audience``: who reads the thread (``conversation.audience``); the research
    searches the knowledge base only for them, and not at all without it."""
    if request.kind not in KINDS:
        raise ResearchError(f"unknown research kind {request.kind!r}", user_message=UNKNOWN_KIND_MESSAGE)
    _refuse_if_busy(team_id, channel_id, thread_ts)
    kind: RunKind = "profile"
    run = runs.create_run(kind=kind, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
                          user_id=user_id, subject=request.subject, question=request.question,
                          token_cap=get_research_settings().RESEARCH_MAX_TOKENS, tools=tools, audience=audience)
    return _launch(run)


def start_report(document: ReportDocument, *, team_id: str, channel_id: str, thread_ts: str, user_id: str,
                 question: str = "") -> str:
    """Record an agent's report for delivery as a PDF in the thread and start the run that
    renders and uploads it (the research function: only it carries fpdf2); its run id.
    Raises :class:`ResearchError`. A report run does not count as the thread's research (it
    is short, and an agent may hand one over while a study runs)."""
    try:
        run = runs.create_run(kind="report", team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
                              user_id=user_id, subject=document.title, question=question, document=document)
    except runs.DocumentTooLargeError as error:
        raise ResearchError(str(error), user_message=TOO_LARGE_MESSAGE) from error
    return _launch(run)


def cancel_in_thread(team_id: str, channel_id: str, thread_ts: str, user_id: str) -> int:
    """Ask the thread's active runs to stop (the workflow ends ``cancelled`` at its next step
    boundary); how many were asked. One Query, then one UpdateItem per active run."""
    active = runs.active_runs_in_thread(team_id, channel_id, thread_ts)
    return sum(1 for run in active if runs.request_cancel(run.run_id, user_id))


__all__ = [
    "BUSY_MESSAGE", "NOT_STARTED_MESSAGE", "ResearchBusyError", "ResearchError", "ResearchNotStartedError",
    "cancel_in_thread", "start_report", "start_research",
]
