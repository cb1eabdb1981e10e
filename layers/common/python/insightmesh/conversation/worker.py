"""conversation_worker: one queued request → exactly one final reply in its Slack thread.

Nothing at all for a workspace that uninstalled the app (conversation.workspaces). For a message
or a command: claim the request (dedupe), admit the asker (conversation.gate: never bots or apps;
guests and outsiders by policy; a per-person rate limit), resolve the user (created on first
contact), route to an agent (sticky → first word → default), check permission (fail closed),
post a "thinking" placeholder, run the agent (progress updates the placeholder), replace the
placeholder with the answer (chat.update), then save the thread (memory, sticky agent, agent
state) and mark the request answered. A redelivery of an answered request posts nothing; one
that crashed after posting reuses its placeholder. For a button: leave agent mode (only whoever
started it: conversation.agent_mode), store feedback, or stop a research run. Research runs
(conversation.research): agents start them through ``AgentContext.start_research``, "stop" in a
thread with an active run cancels it before the router reads "stop" as an exit word, and an
agent's ``AgentReply.document`` is handed to the research function, which posts it as a PDF.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from slack_sdk.errors import SlackApiError

from insightmesh import tracing
from insightmesh.agents.base import AgentContext, AgentSummary, AgentThread, AgentUser
from insightmesh.agents.catalog import AgentRecord, list_agents
from insightmesh.agents.registry import DEFAULT_AGENT, builtin_definitions, implementation
from insightmesh.budgets.check import check as check_budgets
from insightmesh.conversation import agent_mode, app_home, feedback, gate, provenance, replies, threads, workspaces
from insightmesh.conversation import assistant as assistant_surface
from insightmesh.conversation import channel_settings as channel_settings
from insightmesh.conversation import research as research_runs
from insightmesh.conversation.attachments import read_shared_files, shared_documents
from insightmesh.conversation.audience import AudienceRetriever, private_follow_up_text
from insightmesh.conversation.memory import as_messages, remember
from insightmesh.conversation.requests import ConversationRequest, RequestKind, thread_key
from insightmesh.conversation.routing import Route, route_message
from insightmesh.conversation.streaming import ReplyStream
from insightmesh.conversation.thread_context import for_prompt
from insightmesh.conversation.tool_access import research_tools, tool_context
from insightmesh.directory.models import User
from insightmesh.directory.permissions import Decision, agents_usable_by, evaluate, groups_for_usage
from insightmesh.directory.users import resolve_slack_user
from insightmesh.llm import get_llm_client
from insightmesh.llm.base import LlmClient, LlmError, TextSink
from insightmesh.llm.recording import RecordingLlm, recording
from insightmesh.llm.usage import drain_usage
from insightmesh.observability import get_logger
from insightmesh.slack import thread_reply
from insightmesh.slack.assistant import ThreadStatus
from insightmesh.slack.client import bot_identity, call_slack
from insightmesh.slack.formatting import to_mrkdwn
from insightmesh.slack.profiles import slack_profile
from insightmesh.slack.urls import is_slack_response_url

logger = get_logger("conversation_worker")


def recording_llm(llm: LlmClient, agent: str, user_id: str, request: ConversationRequest) -> RecordingLlm:
    """The client of one turn's LLM calls (the agent's and the thread summary's): each completion
    recorded by workspace, agent, user, the user's groups, channel, model and request id, in the
    background while the reply goes out (``process`` drains it)."""
    return recording(llm, agent, user_id, channel=request.channel_id, workspace=request.team_id,
                     request_id=request.request_id, groups=groups_for_usage, background=True)


def strip_mention(text: str, bot_user_id: str) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return " ".join(text.split()) if "\n" not in text else text.strip()


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


def process(request: ConversationRequest) -> None:
    try:
        _process(request)
    finally:
        drain_usage()  # the usage recording_llm recorded in the background, written before the invocation ends


def _process(request: ConversationRequest) -> None:
    if not workspaces.is_active(request.team_id, request_id=request.request_id):
        logger.info("workspace inactive (uninstalled or token revoked); nothing done",
                    extra={"request_id": request.request_id})
        return
    if request.kind is RequestKind.ACTION:
        process_action(request)
    elif request.kind is RequestKind.ASSISTANT_THREAD:
        assistant_surface.process_event(request)
    elif request.kind is RequestKind.HOME:
        app_home.publish(request)
    else:
        process_message(request)


def _placeholder(request: ConversationRequest, claim: replies.Claim) -> tuple[str, str | None]:
    """(channel, ts) of this request's placeholder: recorded, recovered, or posted now.
    ts is None when a command cannot post in its channel (the answer goes to response_url)."""
    record = claim.record
    channel = request.channel_id
    if record.placeholder_ts:
        return channel, str(record.placeholder_ts)
    if record.status == replies.Status.POSTING:
        found = thread_reply.find_placeholder(channel, request.thread_ts, request.request_id)
        if found:
            replies.set_placeholder(record, found)
            return channel, found
    replies.set_posting(record)
    try:
        channel, ts = thread_reply.post_placeholder(channel, request.thread_ts, request.request_id)
    except SlackApiError as error:
        if request.kind is RequestKind.COMMAND and is_slack_response_url(request.response_url) and \
                error.response.get("error") in ("not_in_channel", "channel_not_found"):
            return channel, None
        raise
    replies.set_placeholder(record, ts)
    return channel, ts


@dataclass
class Turn:
    """One message's way through the worker: what each step found, for the steps after it."""

    request: ConversationRequest
    claim: replies.Claim
    text: str = ""
    user: User | None = None
    channel: str = ""
    placeholder_ts: str | None = None
    thread_ts: str | None = None
    key: str | None = None
    thread: threads.ThreadState = field(default_factory=lambda: threads.ThreadState(key=""))
    file_problems: list[str] = field(default_factory=list)
    agents: list[AgentRecord] = field(default_factory=list)
    route: Route | None = None
    llm: LlmClient | None = None
    agent_used: str | None = None
    retriever: AudienceRetriever | None = None
    answer: str = ""
    reply: ReplyStream | None = None  # the answer shown as it streams (conversation.streaming)
    status: ThreadStatus | None = None  # in an assistant thread: its status (conversation.assistant)

    def progress(self) -> Callable[[str], None]:
        """Where every step reports progress: the placeholder and, in the AI app container, the status."""
        placeholder = thread_reply.Progress(self.channel, self.placeholder_ts) if self.placeholder_ts else None
        return assistant_surface.Reporter(placeholder, status=self.status)


def process_message(request: ConversationRequest) -> None:
    if not channel_settings.admits(request):  # an "off" channel, or a question where only mentions are answered
        logger.info("not answered: the channel's settings", extra={"request_id": request.request_id})
        if request.kind is RequestKind.COMMAND:
            _respond(request.response_url, channel_settings.OFF_TEXT)
        return
    turn = _claim(request)
    if turn is None or not _gate(turn):
        return
    _resolve_user(turn)
    _post_placeholder(turn)
    _open_thread(turn)
    turn.status = assistant_surface.begin(request, turn.thread, turn.text)  # title, "is thinking…"
    if _stopped_research(turn):  # "stop" with a research run going: before the exit words take it
        return
    _read_files(turn)
    _route(turn)
    if not _may_route(turn):
        return
    _answer(turn)  # permission, then the agent
    _reply(turn)
    assistant_surface.finished(turn.status)
    _remember(turn)
    _answered(turn)


def _claim(request: ConversationRequest) -> Turn | None:
    """The request claimed (dedupe); None when a previous delivery already answered it."""
    claim = replies.claim(request)
    if claim.record.status == replies.Status.ANSWERED:
        logger.info("already answered; nothing posted", extra={"request_id": request.request_id})
        return None
    return Turn(request, claim)


def _gate(turn: Turn) -> bool:
    """Bots: nothing; guests, over the limit: a note (conversation.gate). Refused is answered."""
    if gate.admit(turn.request).verdict is not gate.Verdict.ADMIT:
        replies.set_answered(turn.claim.record, None, None)
        return False
    return True


def _resolve_user(turn: Turn) -> None:
    request = turn.request
    turn.text = strip_mention(request.text, bot_identity().user_id)
    turn.user = resolve_slack_user(request.team_id, request.user_id,
                                   profile=lambda: slack_profile(request.team_id, request.user_id))


def _post_placeholder(turn: Turn) -> None:
    if channel_settings.replies_ephemerally(turn.request):  # no placeholder: only the asker sees the answer
        turn.channel, turn.placeholder_ts = turn.request.channel_id, None
        return
    turn.channel, turn.placeholder_ts = _placeholder(turn.request, turn.claim)


def _open_thread(turn: Turn) -> None:
    """Load the thread (a command's answer starts one: its placeholder's ts is the thread from now on)."""
    request = turn.request
    turn.thread_ts = request.thread_ts or turn.placeholder_ts
    turn.key = thread_key(request.team_id, request.channel_id, turn.thread_ts) if turn.thread_ts else None
    turn.thread = threads.load_thread(turn.key) if turn.key else threads.ThreadState(key="")
    if turn.key and not turn.thread.bot_replied:
        threads.mark_bot_replied(turn.key)
    turn.thread.bot_replied = True


def _stopped_research(turn: Turn) -> bool:
    """"stop"/"cancel" in a thread with an active research run stops the run (conversation.research)."""
    assert turn.user is not None
    answer = research_runs.stop_in_thread(turn.request, turn.text, turn.thread_ts, turn.user)
    if answer is None:
        return False
    turn.answer = answer
    _reply(turn)
    assistant_surface.finished(turn.status)
    _answered(turn)
    return True


def _read_files(turn: Turn) -> None:
    if turn.request.files:
        turn.file_problems = read_shared_files(turn.request.files, turn.thread.files, turn.progress())


def _route(turn: Turn) -> None:
    with tracing.span("route") as span:
        turn.agents = list_agents()
        turn.route = channel_settings.with_default(route_message(turn.text, turn.thread.sticky_agent, turn.agents),
                                                   turn.request)
        if span.is_recording():  # the agent chosen and how: sticky, name, channel, default or exit
            span.set_attributes({"gen_ai.agent.name": turn.route.agent_name, "insightmesh.route.by": turn.route.by,
                                 "insightmesh.route.exit": turn.route.exit})
    turn.llm = get_llm_client()


def _may_route(turn: Turn) -> bool:
    """Only whoever started agent mode ends it: anyone else is told so, and the request is answered."""
    assert turn.route is not None
    if turn.route.exit and not agent_mode.may_end(turn.thread, turn.request.user_id):
        agent_mode.refuse_exit(turn.request, turn.thread, channel=turn.channel, placeholder_ts=turn.placeholder_ts)
        replies.set_answered(turn.claim.record, None, None)
        return False
    return True


def _answer(turn: Turn) -> None:
    """Leave agent mode, or check permission (fail closed) and run the agent."""
    route, user, llm = turn.route, turn.user, turn.llm
    assert route is not None and user is not None and llm is not None
    if route.exit:
        left = turn.thread.sticky_agent
        turn.thread.sticky_agent = None
        turn.answer = f"Left **{left}** mode — back to the assistant." if left else "You are talking to the assistant."
    elif (permission := _permission(turn, route.agent_name, user)).refused:
        turn.answer = permission.refused  # not among the channel's allowed agents
    else:
        record, decision = permission.record, permission.decision
        assert decision is not None
        if record is None or not decision.allowed:
            display = record.display_name if record is not None else route.agent_name
            turn.answer = (f"Sorry {user_name(user)}, you don't have access to **{display}** ({decision.reason}). "
                           "Ask an InsightMesh admin to grant you access, or say `help` to see the agents you may use.")
            logger.info("denied", extra={"agent": route.agent_name, "reason": decision.reason})
        elif (budget := check_budgets(workspace=turn.request.team_id, user_id=str(user.user_id),
                                      agent=record.name)).refusal:
            turn.answer, turn.llm = budget.refusal or "", budget.client(llm)  # a budget is used up: no LLM call
            logger.info("budget used up", extra={"agent": record.name, "budget": budget.exhausted_label})
        else:
            turn.agent_used = record.name
            turn.llm = llm = budget.client(llm)  # the budget's fallback model past its warn_at (insightmesh.budgets)
            # Who reads the reply decides what it may use: only the asker when it is answered
            # ephemerally (no placeholder), else everyone in the conversation (conversation.audience).
            turn.retriever = AudienceRetriever(turn.request, str(user.user_id), private=turn.placeholder_ts is None)
            if turn.placeholder_ts:
                turn.reply = ReplyStream(turn.request, turn.claim.record, turn.channel, turn.placeholder_ts)
            with tracing.span(f"invoke_agent {record.name}") as span:
                if span.is_recording():
                    span.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": record.name})
                turn.answer = _run_agent(turn.request, route, record, user, turn.thread, llm, turn.progress(),
                                         turn.agents, turn.retriever, stream=turn.reply or (lambda _text: None),
                                         thread_ts=turn.thread_ts)
    if turn.file_problems:
        turn.answer += "\n\n" + "\n".join(f"_{problem}_" for problem in turn.file_problems)


@dataclass(frozen=True)
class Permission:
    refused: str | None  # the channel's refusal (the agent is not among its allowed ones)
    record: AgentRecord | None = None
    decision: Decision | None = None  # the user's access, when the channel allows the agent


def _permission(turn: Turn, agent: str, user: User) -> Permission:
    """The channel's refusal, else the user's access to ``agent`` (fail closed), in one
    ``permission`` span that records whether it is allowed and why."""
    with tracing.span("permission") as span:
        permission = Permission(refused=channel_settings.refused_here(turn.request, agent))
        if permission.refused is None:
            record = agent_record(agent, turn.agents)
            permission = Permission(None, record, evaluate(record, user))
        if span.is_recording():
            decision = permission.decision
            span.set_attributes({
                "gen_ai.agent.name": agent,
                "insightmesh.permission.allowed": bool(permission.record is not None and decision and decision.allowed),
                "insightmesh.permission.reason": decision.reason if decision is not None
                else "not among the channel's allowed agents"})
    return permission


def _reply(turn: Turn) -> None:
    """The answer in place of the placeholder, or through the command's response_url."""
    final = to_mrkdwn(turn.answer)
    if turn.placeholder_ts is None and channel_settings.replies_ephemerally(turn.request):
        channel_settings.post_ephemeral(turn.request, final)
    elif turn.placeholder_ts is None:
        _respond(turn.request.response_url, final)
    else:
        if turn.reply is not None:  # stops the stream, then the final formatting on its message
            turn.reply.finish(final, agent_mode=turn.thread.sticky_agent)
        else:
            thread_reply.show_answer(turn.channel, turn.placeholder_ts, final, turn.request.request_id,
                                     agent_mode=turn.thread.sticky_agent)


def _remember(turn: Turn) -> None:
    """Thread memory, sticky agent and agent state; the reply is posted, so a failed save is logged.
    The summary's LLM call is counted as the agent's were: under the agent that answered (the one
    routed to when none did: a refusal), the asker and the request (a used-up budget's client
    refuses it, so none is made)."""
    route, llm, user = turn.route, turn.llm, turn.user
    assert route is not None and llm is not None and user is not None
    if turn.key and not channel_settings.replies_ephemerally(turn.request):  # memory: only what the thread saw
        thread = turn.thread
        if not route.exit:
            counted = recording_llm(llm, turn.agent_used or route.agent_name, str(user.user_id), turn.request)
            thread.history, thread.summary = remember(thread.history, thread.summary, route.text or turn.text,
                                                      turn.answer, counted)
        thread.key = turn.key
        threads.save_thread_after_reply(thread)


def _answered(turn: Turn) -> None:
    reply_ts = turn.reply.reply_ts if turn.reply else turn.placeholder_ts  # a streamed answer's own message
    replies.set_answered(turn.claim.record, reply_ts, turn.agent_used,  # with what produced it
                         provenance.of_answer(turn.agent_used, turn.retriever, turn.text, turn.answer))
    logger.info("answered", extra={"agent": turn.agent_used, "route": turn.route.by if turn.route else None,
                                   "request_id": turn.request.request_id})
    if turn.retriever is not None:
        _offer_privately(turn.request, turn.channel, turn.thread_ts, turn.retriever)


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


def _run_agent(request: ConversationRequest, route: Route, record: AgentRecord, user: User,
               thread: threads.ThreadState, llm: LlmClient, progress: Callable[[str], None],
               agents: Sequence[AgentRecord], retriever: AudienceRetriever,
               stream: TextSink = lambda _text: None, thread_ts: str | None = None) -> str:
    agent = implementation(record.name)
    if agent is None:
        return f"The agent **{record.display_name or record.name}** has no implementation in this deployment."
    around = for_prompt(request, thread, private=retriever.private)  # the thread above, or a channel's day
    if around.refusal:
        return around.refusal

    def usable() -> list[AgentSummary]:
        return [AgentSummary(a.name, a.display_name or a.name, a.description, tuple(a.aliases or ()))
                for a in agents_usable_by(user, agents)]

    context = AgentContext(
        user=AgentUser(id=str(user.user_id), name=user_name(user), is_admin=bool(user.is_admin)),
        thread=AgentThread(key=thread.key, team_id=request.team_id, channel_id=request.channel_id,
                           thread_ts=request.thread_ts, context_channel_id=thread.context_channel),
        text=route.text,
        history=as_messages(thread.history),
        summary=around.summary,
        state=dict(thread.agent_state.get(record.name) or {}),
        llm=recording_llm(llm, record.name, str(user.user_id), request),
        progress=progress,
        stream=stream,
        usable_agents=usable,
        documents=shared_documents(thread.files),
        retrieve=(retrieve := assistant_surface.searching(retriever, assistant_surface.status_of(progress))),
        tools=tool_context(request, record, user_id=str(user.user_id), is_admin=bool(user.is_admin),
                           retrieve=retrieve, progress=progress),  # agent ∩ channel tools, or None
        start_research=research_runs.starter(team_id=request.team_id, channel_id=request.channel_id,
                                             thread_ts=thread_ts or request.thread_ts, user_id=str(user.user_id),
                                             tools=research_tools(request, record),
                                             audience=lambda: retriever.audience),
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
    if reply.document is not None:  # the PDF too: rendered and uploaded by the research function
        return reply.text + research_runs.deliver_document(
            reply.document, team_id=request.team_id, channel_id=request.channel_id,
            thread_ts=thread_ts or request.thread_ts, user_id=str(user.user_id))
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
        feedback.record_vote(request)  # stored per reply, counted per agent and day
        call_slack(lambda c: c.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                  thread_ts=request.thread_ts, text="Thanks for the feedback!"))
    elif research_runs.is_stop_button(request):  # the research board's Stop (asker or admin only)
        research_runs.stop_by_button(request, resolve_slack_user(
            request.team_id, request.user_id, profile=lambda: slack_profile(request.team_id, request.user_id)))
    elif request.action_id == "feedback_reason" and request.ts:  # the 👎 modal (conversation.feedback_modal)
        feedback.record_vote(request, reason=request.feedback_reason, comment=request.text or None)
    replies.set_answered(claim.record, None, None)
