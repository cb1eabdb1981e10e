"""The AI app surface (Slack's assistant container), in the worker.

* ``assistant_thread_started``: the thread is recorded as an assistant thread with the channel the
  user is looking at; the user is greeted in it (exactly once: claimed like any request, and a
  greeting posted before a crash is found again by its message metadata) and offered suggested
  prompts built from the agents *they* may use (``agents_usable_by``, the rule ``help`` and the
  console's My access follow).
* ``assistant_thread_context_changed``: the thread keeps the new channel (one UpdateItem; the
  worker reads it with the thread it loads anyway).
* A message in an assistant thread is answered as a DM is, through the worker's one reply path;
  :func:`begin` adds what the container shows: the title from the first question and a status
  (``assistant.threads.setStatus``) that follows the turn's progress — "Reading report.pdf…",
  "Searching the knowledge base…", the agent's own steps — through :func:`reporter`, the one
  progress callback every step reports to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final, TypeVar

from slack_sdk.errors import SlackApiError

from insightmesh.agents.catalog import AgentRecord, list_agents
from insightmesh.agents.registry import DEFAULT_AGENT
from insightmesh.conversation import gate, replies, threads
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.directory.models import User
from insightmesh.directory.permissions import agents_usable_by
from insightmesh.directory.users import resolve_slack_user
from insightmesh.observability import get_logger
from insightmesh.slack import assistant as slack_assistant
from insightmesh.slack import thread_reply
from insightmesh.slack.client import call_slack
from insightmesh.slack.profiles import slack_profile

THINKING: Final = "is thinking…"
SEARCHING: Final = "Searching the knowledge base…"
PROMPTS_TITLE: Final = "Try asking"
HELP_AGENT: Final = "help"

logger = get_logger("conversation_worker")
Progress = Callable[[str], None]
T = TypeVar("T")


def process_event(request: ConversationRequest) -> None:
    """An ``ASSISTANT_THREAD`` request: the container opened, or its context changed."""
    if request.action_id == slack_assistant.THREAD_STARTED:
        thread_started(request)
    else:
        remember_context(request)


def remember_context(request: ConversationRequest) -> None:
    """Mark the thread an assistant thread and keep the channel its user looks at (one UpdateItem)."""
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    key = request.thread_key
    if key is None:
        return
    now = datetime.now(UTC)
    record = ThreadRecord(thread_pk(key), "thread")
    context = ThreadRecord.context_channel.set(request.context_channel_id) if request.context_channel_id \
        else ThreadRecord.context_channel.remove()
    record.update(actions=[ThreadRecord.assistant.set(True), context, ThreadRecord.updated_at.set(now),
                           ThreadRecord.expires_at.set(now + threads.THREAD_TTL)])
    logger.info("assistant thread context", extra={"request_id": request.request_id,
                                                   "context_channel": request.context_channel_id})


def suggested_prompts(agents: Sequence[AgentRecord]) -> list[slack_assistant.Prompt]:
    """Up to four prompts from the agents the user may use: the assistant first, then the named
    agents (a message starting with an agent's name routes to it), then ``help``."""
    names = {agent.name for agent in agents}
    prompts: list[slack_assistant.Prompt] = []
    if DEFAULT_AGENT in names:
        prompts.append(slack_assistant.Prompt("Ask the knowledge base",
                                              "What does our knowledge base say about onboarding?"))
    for agent in agents:
        if agent.name in (DEFAULT_AGENT, HELP_AGENT):
            continue
        display = agent.display_name or agent.name
        prompts.append(slack_assistant.Prompt(f"Ask {display}", f"{agent.name} {agent.description}".strip()))
    if HELP_AGENT in names:
        prompts.append(slack_assistant.Prompt("What can you do?", HELP_AGENT))
    if len(prompts) > slack_assistant.MAX_PROMPTS:  # keep help, the way to the rest
        prompts = prompts[:slack_assistant.MAX_PROMPTS - 1] + prompts[-1:]
    return prompts


def greeting(user: User, prompts: Sequence[slack_assistant.Prompt]) -> str:
    name = str(user.display_name or user.real_name or "there")
    offer = " Pick a suggestion below, or ask me anything." if prompts else " Ask me anything."
    return f"Hi {name}! I answer from the company's knowledge and hand specialised requests to agents.{offer}"


def thread_started(request: ConversationRequest) -> None:
    """Greet the user once and set the suggested prompts built from the agents they may use."""
    claim = replies.claim(request)
    if claim.record.status == replies.Status.ANSWERED:
        return
    remember_context(request)
    if gate.admit(request).verdict is not gate.Verdict.ADMIT:
        replies.set_answered(claim.record, None, None)
        return
    user = resolve_slack_user(request.team_id, request.user_id,
                              profile=lambda: slack_profile(request.team_id, request.user_id))
    prompts = suggested_prompts(agents_usable_by(user, list_agents()))
    channel, thread_ts = request.channel_id, str(request.thread_ts)
    posted = thread_reply.posted_replies(channel, thread_ts, request.request_id) \
        if claim.record.status == replies.Status.POSTING else []
    if posted:
        ts = posted[0][1]
    else:
        replies.set_posting(claim.record)
        text = greeting(user, prompts)
        response = call_slack(lambda c: c.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text,
            metadata=thread_reply.reply_metadata(request.request_id, "answered")))
        ts = str(response["ts"])
    try:
        slack_assistant.set_suggested_prompts(channel, thread_ts, prompts, title=PROMPTS_TITLE)
    except SlackApiError as error:
        logger.warning("suggested prompts not set", extra={"error": error.response.get("error")})
    replies.set_answered(claim.record, ts, None)


def begin(request: ConversationRequest, thread: threads.ThreadState,
          question: str) -> slack_assistant.ThreadStatus | None:
    """A message in an assistant thread: the title from its first question, and "is thinking…";
    returns the status the turn's progress reports to. None outside the container."""
    if not thread.assistant or not request.thread_ts:
        return None
    if not thread.history and question.strip():
        try:
            slack_assistant.set_title(request.channel_id, request.thread_ts, question)
        except SlackApiError as error:
            logger.warning("assistant title not set", extra={"error": error.response.get("error")})
    status = slack_assistant.ThreadStatus(request.channel_id, request.thread_ts)
    status(THINKING)
    return status


class Reporter:
    """One progress callback for a turn's steps, told to every sink it has (the placeholder, the
    assistant thread's status, whatever comes next). ``status`` is the assistant thread's alone,
    for steps only the container shows."""

    def __init__(self, *sinks: Progress | None, status: Progress | None = None) -> None:
        self.sinks = [sink for sink in (*sinks, status) if sink is not None]
        self.status = status

    def __call__(self, text: str) -> None:
        for sink in self.sinks:
            sink(text)


def status_of(progress: Progress) -> Progress | None:
    """The assistant status a turn's progress reports to, if any."""
    return progress.status if isinstance(progress, Reporter) else None


def searching(retrieve: Callable[[str], T], progress: Progress | None) -> Callable[[str], T]:
    """``retrieve`` that first reports :data:`SEARCHING`."""
    if progress is None:
        return retrieve

    def search(question: str) -> T:
        progress(SEARCHING)
        return retrieve(question)

    return search


def finished(status: slack_assistant.ThreadStatus | None) -> None:
    """The reply is shown: clear the status (Slack clears it only for a new message, not an edit)."""
    if status is not None:
        status.clear()
