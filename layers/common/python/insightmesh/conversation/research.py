"""The worker's side of research runs: start one for an agent, stop one, hand a report over.

* **start** — :func:`starter` is the ``AgentContext.start_research`` the worker gives agents: it
  records the run and invokes the durable research function (``research.service.start_research``)
  for this thread, and turns a failure into :class:`ResearchStartFailed` (a ``RuntimeError``, what
  an agent catches) with a sentence the agent can show.
* **stop by word** — "stop" or "cancel" in a thread with an active run (:func:`stop_in_thread`,
  asked before the router's exit words take "stop"): the run is asked to cancel and ends at its
  next step; the board says "stopping…". Costs one Query, and only for a message that is one of
  those words.
* **stop by button** — the board's **Stop** button (``research_stop``, value the run id):
  :func:`stop_by_button`. Only the asker or an admin may stop a run; anyone else is told so
  privately (ephemeral), and nothing changes.
* **report** — an agent's ``AgentReply.document``: :func:`deliver_document` starts a ``report``
  run, which renders the PDF and uploads it into the thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException
from slack_sdk.errors import SlackApiError

from insightmesh.agents.base import ReportDocument, ResearchRequest
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.directory.models import User
from insightmesh.knowledge.base import Audience
from insightmesh.observability import get_logger
from insightmesh.research import runs
from insightmesh.research.progress import STOP_ACTION, board_for
from insightmesh.slack.client import call_slack

STOP_WORDS: Final = frozenset({"stop", "cancel"})
STOPPING: Final = "Stopping the research — it ends at its next step."
ALREADY_STOPPING: Final = "The research is already stopping — it ends at its next step."
NOT_ACTIVE: Final = "That research has already finished."
NOT_YOURS: Final = "Only the person who asked for this research, or an admin, can stop it."
# What starting a run can fail with: the table or Lambda (botocore, pynamodb) and the service's
# own refusals (a report too large, no research function configured: ValueError / RuntimeError).
_START_FAILURES: Final = (BotoCoreError, ClientError, PynamoDBException, ValueError, RuntimeError)

logger = get_logger("conversation_worker")


class ResearchStartFailed(RuntimeError):
    """The run could not be started; ``user_message`` is the whole answer for the asker (the
    service's words: busy, unavailable, too large), ``str()`` the short reason."""

    def __init__(self, reason: str, *, user_message: str | None = None) -> None:
        super().__init__(reason)
        self.user_message = user_message


def starter(*, team_id: str, channel_id: str, thread_ts: str | None, user_id: str,
            tools: frozenset[str] | None = None,
            audience: Callable[[], Audience] | None = None) -> Callable[[ResearchRequest], str]:
    """``AgentContext.start_research`` for this thread: the new run's id, or :class:`ResearchStartFailed`.

    ``tools``: the agent's tools narrowed by the channel's (None: the agent has none set, and the
    workflow uses its own web tools). ``audience``: who reads this thread, resolved only when a run
    starts (in a channel it lists the members); the run's knowledge search sees only what all of
    them may see, as every answer in the thread does."""

    def start(request: ResearchRequest) -> str:
        if not thread_ts:
            raise ResearchStartFailed("research reports into a thread, and this conversation has none")
        from insightmesh.research import service  # the launcher (Lambda) is loaded only when a run starts

        try:
            return service.start_research(request, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
                                          user_id=user_id, tools=tools,
                                          audience=audience() if audience is not None else None)
        except service.ResearchError as error:  # refused or not started: the service says why
            logger.warning("research run not started", extra={"kind": request.kind, "error": type(error).__name__})
            raise ResearchStartFailed(str(error), user_message=error.user_message) from error
        except _START_FAILURES as error:
            logger.error("research run not started", extra={"kind": request.kind, "error": type(error).__name__})
            raise ResearchStartFailed("the research service is not available right now") from error

    return start


def deliver_document(document: ReportDocument, *, team_id: str, channel_id: str, thread_ts: str | None,
                     user_id: str) -> str:
    """Hand an agent's report to the research function (it posts the PDF in the thread). Returns a
    line to add to the answer when that could not be done ('' when it was)."""
    if not thread_ts:
        return "\n\n_The PDF is only delivered in a thread._"
    from insightmesh.research import service

    try:
        service.start_report(document, team_id=team_id, channel_id=channel_id, thread_ts=thread_ts, user_id=user_id)
    except service.ResearchError as error:
        logger.warning("report run not started", extra={"error": type(error).__name__})
        return f"\n\n_{error.user_message}_"
    except _START_FAILURES as error:
        logger.error("report run not started", extra={"error": type(error).__name__})
        return "\n\n_The PDF of this report could not be prepared; the analysis above is complete._"
    return ""


def is_stop_word(text: str) -> bool:
    return text.strip().casefold().strip(" .!") in STOP_WORDS


def may_stop(run: runs.ResearchRun, user: User) -> bool:
    return bool(user.is_admin) or run.user_id == str(user.user_id)


def _stop(run: runs.ResearchRun, user: User, slack_user_id: str, *, whole_thread: bool = False) -> str:
    """Ask the run to stop (the asker or an admin); what to tell whoever asked. ``whole_thread``:
    every active run of its thread (research.service.cancel_in_thread), else this one."""
    if not may_stop(run, user):
        logger.info("research stop refused", extra={"run_id": run.run_id})
        return NOT_YOURS
    if run.cancel_requested:
        return ALREADY_STOPPING
    if whole_thread:
        from insightmesh.research import service

        asked = service.cancel_in_thread(run.team_id, run.channel_id, run.thread_ts, str(user.user_id))
    else:
        asked = int(runs.request_cancel(run.run_id, str(user.user_id)))
    if not asked:
        return NOT_ACTIVE
    logger.info("research stop requested", extra={"run_id": run.run_id})
    board_for(run).stopping(slack_user_id)
    return STOPPING


def stop_in_thread(request: ConversationRequest, text: str, thread_ts: str | None, user: User) -> str | None:
    """"stop"/"cancel" (``text``: the message without the bot's mention) in a thread: the reply when
    the thread has an active run, else None (the word then means what it always meant: leave agent
    mode)."""
    if not thread_ts or not is_stop_word(text):
        return None
    run = runs.active_run_in_thread(request.team_id, request.channel_id, thread_ts)
    if run is None:
        return None
    return _stop(run, user, request.user_id, whole_thread=True)


def is_stop_button(request: ConversationRequest) -> bool:
    return request.action_id == STOP_ACTION


def stop_by_button(request: ConversationRequest, user: User) -> None:
    """The board's Stop button: the run named by its value, if the presser may stop it. Whoever
    pressed it is answered privately (ephemeral): stopping, already finished, or not theirs."""
    run = runs.get_run(request.action_value or "") if request.action_value else None
    if run is None or run.channel_id != request.channel_id:
        text = NOT_ACTIVE
    elif run.status not in runs.ACTIVE:
        text = NOT_ACTIVE
    else:
        text = _stop(run, user, request.user_id)
    try:
        call_slack(lambda c: c.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                  thread_ts=request.thread_ts, text=text))
    except SlackApiError as error:
        logger.warning("stop answer not posted", extra={"error": error.response.get("error")})
