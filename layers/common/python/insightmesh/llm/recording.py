"""An LLM client that counts every completion it makes (:func:`insightmesh.llm.usage.record_usage`).

Every caller of the model goes through one: the conversation worker gives one to the agent and to
the thread memory's summary (both under the agent that answered the turn, with its asker, their
groups, channel, workspace and request id: ``conversation.worker.recording_llm``), and the nightly
quality check counts its answers and its judge under its job type, with no user
(:mod:`insightmesh.evaluation.job`). Research runs count on their own (they also add the tokens to
the run's cap: :mod:`insightmesh.research.workflow`).

``recording(inner, ...)`` wraps a client as it is: a provider that calls tools keeps
``complete_with_tools`` (:class:`ToolRecordingLlm`), and a refusing client (a used-up budget)
raises before anything is counted. With ``background``, the writes (when there is no usage
queue) run while the caller goes on: it calls :func:`insightmesh.llm.usage.drain_usage` before
its invocation ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from insightmesh.llm.base import Completion, LlmClient, TextSink, stream_or_complete
from insightmesh.llm.tools import ToolCallingLlmClient, ToolCompletion

GroupsOf = Callable[[str], Iterable[str]]
"""The groups a user's usage is also counted under (the worker: the directory's, cached 30 s)."""


def no_groups(_user_id: str) -> Iterable[str]:
    return ()


class RecordingLlm:
    """``inner``, with each completion's tokens and cost recorded by workspace, agent, user, the
    user's groups, channel and model (the one that answered: ``Completion.model``)."""

    def __init__(self, inner: LlmClient, agent: str, user_id: str | None, *, channel: str | None = None,
                 workspace: str | None = None, request_id: str | None = None, groups: GroupsOf = no_groups,
                 background: bool = False) -> None:
        self.inner, self.agent, self.user_id = inner, agent, user_id
        self.channel, self.workspace, self.request_id = channel, workspace, request_id
        self.groups, self.background = groups, background

    @property
    def name(self) -> str:
        return self.inner.name

    def _record(self, completion: Completion | ToolCompletion) -> None:
        from insightmesh.llm.usage import record_usage  # pynamodb: on the first completion, not at import

        groups = sorted(set(self.groups(self.user_id))) if self.user_id else []
        record_usage(agent=self.agent, user_id=self.user_id, usage=completion.usage, model=completion.model,
                     channel=self.channel, groups=groups, workspace=self.workspace, request_id=self.request_id,
                     background=self.background)

    def complete(self, messages: Sequence[Any], **kwargs: Any) -> Completion:
        completion = self.inner.complete(messages, **kwargs)
        self._record(completion)
        return completion

    def stream(self, messages: Sequence[Any], *, on_text: TextSink, **kwargs: Any) -> Completion:
        """The answer streamed to ``on_text`` when the provider streams (whole otherwise); usage recorded."""
        completion = stream_or_complete(self.inner, messages, on_text=on_text, **kwargs)
        self._record(completion)
        return completion


class ToolRecordingLlm(RecordingLlm):
    """``RecordingLlm`` of a provider that calls tools (insightmesh.tools.loop): each step's usage recorded."""

    def complete_with_tools(self, turns: Sequence[Any], **kwargs: Any) -> ToolCompletion:
        assert isinstance(self.inner, ToolCallingLlmClient)
        completion = self.inner.complete_with_tools(turns, **kwargs)
        self._record(completion)
        return completion


def recording(inner: LlmClient, agent: str, user_id: str | None, *, channel: str | None = None,
              workspace: str | None = None, request_id: str | None = None, groups: GroupsOf = no_groups,
              background: bool = False) -> RecordingLlm:
    """``inner`` counted (see :class:`RecordingLlm`), keeping its tool calling when it has it."""
    kind = ToolRecordingLlm if isinstance(inner, ToolCallingLlmClient) else RecordingLlm
    return kind(inner, agent, user_id, channel=channel, workspace=workspace, request_id=request_id, groups=groups,
                background=background)


__all__ = ["GroupsOf", "RecordingLlm", "ToolRecordingLlm", "no_groups", "recording"]
