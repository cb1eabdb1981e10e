"""conversation_worker: one queued request → exactly one final reply in its Slack thread.

Nothing at all for a workspace that uninstalled the app (conversation.workspaces). For a message
or a command: claim the request (dedupe), admit the asker (conversation.gate: never bots or apps;
guests and outsiders by policy; a per-person rate limit), resolve the user (created on first
contact), route to an agent (sticky → first word → default), check permission (fail closed),
post a "thinking" placeholder, run the agent (progress updates the placeholder), replace the
placeholder with the answer (chat.update), then save the thread (memory, sticky agent, agent
state) and mark the request answered. A redelivery of an answered request posts nothing; one
that crashed after posting reuses its placeholder. For a button: leave agent mode (only whoever
started it: conversation.agent_mode), or store feedback.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from slack_sdk.errors import SlackApiError

from insightmesh.agents.base import AgentContext, AgentSummary, AgentThread, AgentUser
from insightmesh.agents.catalog import AgentRecord, list_agents
from insightmesh.agents.registry import DEFAULT_AGENT, builtin_definitions, implementation
from insightmesh.conversation import agent_mode, gate, replies, threads, workspaces
from insightmesh.conversation.attachments import read_shared_files, shared_documents
from insightmesh.conversation.audience import AudienceRetriever, private_follow_up_text
from insightmesh.conversation.memory import as_messages, remember
from insightmesh.conversation.models import FeedbackRecord
from insightmesh.conversation.requests import ConversationRequest, RequestKind, thread_key
from insightmesh.conversation.routing import route_message
from insightmesh.directory.models import User
from insightmesh.directory.permissions import agents_usable_by, evaluate
from insightmesh.directory.users import SlackProfile, resolve_slack_user
from insightmesh.llm import get_llm_client
from insightmesh.llm.base import Completion, LlmClient, LlmError
from insightmesh.llm.usage import record_usage
from insightmesh.observability import get_logger
from insightmesh.slack.client import bot_identity, call_slack
from insightmesh.slack.formatting import escape, to_mrkdwn
from insightmesh.slack.urls import is_slack_response_url

logger = get_logger("conversation_worker")

THINKING: Final = "_Thinking…_"
REPLY_EVENT_TYPE: Final = "insightmesh_reply"
PROGRESS_INTERVAL: Final = 1.0
SECTION_LIMIT: Final = 2900


class RecordingLlm:
    """The LLM client given to agents: records token usage per agent and per user."""

    def __init__(self, inner: LlmClient, agent: str, user_id: str) -> None:
        self.inner, self.agent, self.user_id = inner, agent, user_id

    @property
    def name(self) -> str:
        return self.inner.name

    def complete(self, messages: Sequence[Any], **kwargs: Any) -> Completion:
        completion = self.inner.complete(messages, **kwargs)
        record_usage(agent=self.agent, user_id=self.user_id, usage=completion.usage)
        return completion


def strip_mention(text: str, bot_user_id: str) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return " ".join(text.split()) if "\n" not in text else text.strip()


def fetch_profile(team_id: str, slack_user_id: str) -> SlackProfile | None:
    """users.info as a SlackProfile (guest, external, bot and app flags included; cached by the gate)."""
    return gate.slack_profile(team_id, slack_user_id)


def user_name(user: User) -> str:
    return str(user.display_name or user.real_name or "there")


def agent_record(name: str, agents: Sequence[AgentRecord]) -> AgentRecord | None:
    for agent in agents:
        if agent.name == name:
            return agent
    if name == DEFAULT_AGENT:  # the registry has not been seeded: the default is public by definition
        definition = next(d for d in builtin_definitions() if d.name == DEFAULT_AGENT)
        return definition.to_record(now=datetime.now(UTC))
    return None


def reply_blocks(text: str, request_id: str, *, agent_mode: str | None) -> list[dict[str, Any]]:
    chunks = [text[i:i + SECTION_LIMIT] for i in range(0, len(text), SECTION_LIMIT)] or [" "]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
                                    for chunk in chunks[:20]]
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": "feedback_up", "text": {"type": "plain_text", "text": "👍"},
         "value": request_id[:2000]},
        {"type": "button", "action_id": "feedback_down", "text": {"type": "plain_text", "text": "👎"},
         "value": request_id[:2000]},
    ]
    if agent_mode:
        elements.append({"type": "button", "action_id": "exit_agent", "style": "danger",
                         "text": {"type": "plain_text", "text": "Exit agent mode"}, "value": agent_mode})
    blocks.append({"type": "actions", "block_id": "insightmesh_reply_actions", "elements": elements})
    return blocks


class Progress:
    """Updates the placeholder while an agent works, at most once a second."""

    def __init__(self, channel: str, ts: str) -> None:
        self.channel, self.ts, self.last = channel, ts, 0.0
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            if time.monotonic() - self.last < PROGRESS_INTERVAL:
                return
            self.last = time.monotonic()
        try:
            call_slack(lambda c: c.chat_update(channel=self.channel, ts=self.ts, text=f"_{escape(text)}_"))
        except SlackApiError as error:
            logger.warning("progress update failed", extra={"error": error.response.get("error")})


def process(request: ConversationRequest) -> None:
    if not workspaces.is_active(request.team_id, request_id=request.request_id):
        logger.info("workspace inactive (uninstalled or token revoked); nothing done",
                    extra={"request_id": request.request_id})
        return
    if request.kind is RequestKind.ACTION:
        process_action(request)
    else:
        process_message(request)


def _find_posted_placeholder(channel: str, thread_ts: str | None, request_id: str) -> str | None:
    """After a crash between posting and recording: find our placeholder by its metadata."""
    if not thread_ts:
        return None
    response = call_slack(lambda c: c.conversations_replies(channel=channel, ts=thread_ts,
                                                            include_all_metadata=True, limit=200))
    for message in response.get("messages") or []:
        metadata = message.get("metadata") or {}
        if metadata.get("event_type") == REPLY_EVENT_TYPE and \
                (metadata.get("event_payload") or {}).get("request_id") == request_id:
            return str(message["ts"])
    return None


def _placeholder(request: ConversationRequest, claim: replies.Claim) -> tuple[str, str | None]:
    """(channel, ts) of this request's placeholder: recorded, recovered, or posted now.
    ts is None when a command cannot post in its channel (the answer goes to response_url)."""
    record = claim.record
    channel = request.channel_id
    if record.placeholder_ts:
        return channel, str(record.placeholder_ts)
    if record.status == replies.Status.POSTING:
        found = _find_posted_placeholder(channel, request.thread_ts, request.request_id)
        if found:
            replies.set_placeholder(record, found)
            return channel, found
    replies.set_posting(record)
    metadata = {"event_type": REPLY_EVENT_TYPE,
                "event_payload": {"request_id": request.request_id, "status": "placeholder"}}
    try:
        response = call_slack(lambda c: c.chat_postMessage(channel=channel, thread_ts=request.thread_ts,
                                                           text=THINKING, metadata=metadata))
    except SlackApiError as error:
        if request.kind is RequestKind.COMMAND and is_slack_response_url(request.response_url) and \
                error.response.get("error") in ("not_in_channel", "channel_not_found"):
            return channel, None
        raise
    ts = str(response["ts"])
    replies.set_placeholder(record, ts)
    return str(response.get("channel") or channel), ts


def process_message(request: ConversationRequest) -> None:
    claim = replies.claim(request)
    if claim.record.status == replies.Status.ANSWERED:
        logger.info("already answered; nothing posted", extra={"request_id": request.request_id})
        return
    if gate.admit(request).verdict is not gate.Verdict.ADMIT:  # bots: nothing; guests, over the limit: a note
        replies.set_answered(claim.record, None, None)
        return
    identity = bot_identity()
    text = strip_mention(request.text, identity.user_id)
    user = resolve_slack_user(request.team_id, request.user_id,
                              profile=lambda: fetch_profile(request.team_id, request.user_id))
    channel, placeholder_ts = _placeholder(request, claim)
    # A command's answer starts a thread: its placeholder's ts is the thread from now on.
    thread_ts = request.thread_ts or placeholder_ts
    key = thread_key(request.team_id, request.channel_id, thread_ts) if thread_ts else None
    thread = threads.load_thread(key) if key else threads.ThreadState(key="")
    if key and not thread.bot_replied:
        threads.mark_bot_replied(key)
    thread.bot_replied = True
    file_problems: list[str] = []
    if request.files:
        progress = Progress(channel, placeholder_ts) if placeholder_ts else (lambda _text: None)
        file_problems = read_shared_files(request.files, thread.files, progress)
    agents = list_agents()
    route = route_message(text, thread.sticky_agent, agents)
    llm = get_llm_client()
    agent_used: str | None = None
    retriever: AudienceRetriever | None = None
    if route.exit and not agent_mode.may_end(thread, request.user_id):  # only its starter ends agent mode
        agent_mode.refuse_exit(request, thread, channel=channel, placeholder_ts=placeholder_ts)
        replies.set_answered(claim.record, None, None)
        return
    if route.exit:
        left = thread.sticky_agent
        thread.sticky_agent = None
        answer = f"Left **{left}** mode — back to the assistant." if left else "You are talking to the assistant."
    else:
        record = agent_record(route.agent_name, agents)
        decision = evaluate(record, user)
        if record is None or not decision.allowed:
            display = record.display_name if record is not None else route.agent_name
            answer = (f"Sorry {user_name(user)}, you don't have access to **{display}** ({decision.reason}). "
                      "Ask an InsightMesh admin to grant you access, or say `help` to see the agents you may use.")
            logger.info("denied", extra={"agent": route.agent_name, "reason": decision.reason})
        else:
            agent_used = record.name
            # Who reads the reply decides what it may use: only the asker when it is answered
            # ephemerally (no placeholder), else everyone in the conversation (conversation.audience).
            retriever = AudienceRetriever(request, str(user.user_id), private=placeholder_ts is None)
            answer = _run_agent(request, route, record, user, thread, llm, channel, placeholder_ts, agents,
                                retriever)
    if file_problems:
        answer += "\n\n" + "\n".join(f"_{problem}_" for problem in file_problems)
    final = to_mrkdwn(answer)
    if placeholder_ts is None:
        _respond(request.response_url, final)
    else:
        answered = {"event_type": REPLY_EVENT_TYPE,
                    "event_payload": {"request_id": request.request_id, "status": "answered"}}
        call_slack(lambda c: c.chat_update(channel=channel, ts=placeholder_ts, text=final, metadata=answered,
                                           blocks=reply_blocks(final, request.request_id,
                                                               agent_mode=thread.sticky_agent)))
    if key:
        if not route.exit:
            thread.history, thread.summary = remember(thread.history, thread.summary, route.text or text,
                                                      answer, llm)
        thread.key = key
        threads.save_thread_after_reply(thread)  # the reply is posted: a failed save is logged, not raised
    replies.set_answered(claim.record, placeholder_ts, agent_used)
    logger.info("answered", extra={"agent": agent_used, "route": route.by, "request_id": request.request_id})
    if retriever is not None:
        _offer_privately(request, channel, thread_ts, retriever)


def _offer_privately(request: ConversationRequest, channel: str, thread_ts: str | None,
                     retriever: AudienceRetriever) -> None:
    """After a shared answer: tell the asker alone (ephemeral) which documents only they could
    have used. Optional, and after the reply is recorded: a failure here never repeats the reply."""
    extras = retriever.private_extras()
    if not extras:
        return
    try:
        call_slack(lambda c: c.chat_postEphemeral(channel=channel, user=request.user_id, thread_ts=thread_ts,
                                                  text=private_follow_up_text(extras)))
    except SlackApiError as error:
        logger.warning("private follow-up not posted", extra={"error": error.response.get("error")})


def _run_agent(request: ConversationRequest, route: Any, record: AgentRecord, user: User,
               thread: threads.ThreadState, llm: LlmClient, channel: str, placeholder_ts: str | None,
               agents: Sequence[AgentRecord], retriever: AudienceRetriever) -> str:
    agent = implementation(record.name)
    if agent is None:
        return f"The agent **{record.display_name or record.name}** has no implementation in this deployment."

    def usable() -> list[AgentSummary]:
        return [AgentSummary(a.name, a.display_name or a.name, a.description, tuple(a.aliases or ()))
                for a in agents_usable_by(user, agents)]

    context = AgentContext(
        user=AgentUser(id=str(user.user_id), name=user_name(user), is_admin=bool(user.is_admin)),
        thread=AgentThread(key=thread.key, team_id=request.team_id, channel_id=request.channel_id,
                           thread_ts=request.thread_ts),
        text=route.text,
        history=as_messages(thread.history),
        summary=thread.summary,
        state=dict(thread.agent_state.get(record.name) or {}),
        llm=RecordingLlm(llm, record.name, str(user.user_id)),
        progress=Progress(channel, placeholder_ts) if placeholder_ts else (lambda _text: None),
        usable_agents=usable,
        documents=shared_documents(thread.files),
        retrieve=retriever,
    )
    try:
        reply = agent.handle(context)
    except LlmError as error:
        logger.warning("LLM unavailable", extra={"error": type(error).__name__, "agent": record.name})
        return error.user_message
    if reply.state:
        thread.agent_state[record.name] = reply.state
    else:
        thread.agent_state.pop(record.name, None)
    thread.sticky_agent = record.name if reply.stay and record.name != DEFAULT_AGENT else None
    thread.sticky_by = agent_mode.owner_after_turn(thread, route.by, request.user_id)
    return reply.text


def _respond(response_url: str | None, text: str) -> None:
    if not is_slack_response_url(response_url):  # only Slack's hooks.slack.com (a forged one: nowhere)
        logger.warning("response_url is not Slack's; the answer is not sent there")
        return
    # Ephemeral: the bot could not post in this conversation, so it cannot know who is there; the
    # answer used the asker's access and only the asker sees it (conversation.audience).
    httpx.post(response_url, json={"response_type": "ephemeral", "text": text}, timeout=10).raise_for_status()


def process_action(request: ConversationRequest) -> None:
    claim = replies.claim(request)
    if claim.record.status == replies.Status.ANSWERED:
        return
    key = request.thread_key
    if request.action_id == "exit_agent" and key and not agent_mode.may_end(owner := agent_mode.load_owner(key),
                                                                            request.user_id):
        agent_mode.refuse_exit(request, owner)
    elif request.action_id == "exit_agent" and key:
        threads.clear_sticky_agent(key)
        call_slack(lambda c: c.chat_postMessage(channel=request.channel_id, thread_ts=request.thread_ts,
                                                text="Left agent mode — back to the assistant."))
    elif request.action_id in ("feedback_up", "feedback_down") and request.ts:
        now = datetime.now(UTC)
        FeedbackRecord(
            f"reply#{request.team_id}#{request.channel_id}#{request.ts}", f"user#{request.user_id}",
            vote="up" if request.action_id == "feedback_up" else "down",
            request_id=request.action_value, created_at=now, expires_at=now + timedelta(days=365),
        ).save()
        call_slack(lambda c: c.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                  thread_ts=request.thread_ts, text="Thanks for the feedback!"))
    replies.set_answered(claim.record, None, None)
