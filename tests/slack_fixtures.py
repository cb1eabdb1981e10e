"""The local Slack sandbox with the layer's Slack client pointed at it: one set-up for every tier's
tests that talk to Slack (the integration ``slack`` fixture and the modules that need their own token)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from insightmesh.conversation import workspaces
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id
from insightmesh.slack import client as slack_client
from insightmesh.slack import profiles
from insightmesh_local.slack_sandbox import SlackSandbox


@contextmanager
def pointed_sandbox(monkeypatch: pytest.MonkeyPatch, token: str) -> Iterator[SlackSandbox]:
    """A sandbox on a free loopback port; SLACK_API_URL and SLACK_BOT_TOKEN (``token``) point the
    Slack client at it, and the client is rebuilt before and after."""
    sandbox = SlackSandbox(port=0).start()
    monkeypatch.setenv("SLACK_API_URL", sandbox.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", token)
    slack_client.reset_for_tests()
    try:
        yield sandbox
    finally:
        sandbox.stop()
        slack_client.reset_for_tests()


@contextmanager
def conversation_sandbox(monkeypatch: pytest.MonkeyPatch, token: str) -> Iterator[SlackSandbox]:
    """``pointed_sandbox`` for a conversation test: the offline LLM, and the Slack profile and
    workspace caches empty before and after."""
    monkeypatch.setenv("LLM_PROVIDER", "offline")
    with pointed_sandbox(monkeypatch, token) as sandbox:
        profiles.clear_cache()
        workspaces.clear_cache()
        try:
            yield sandbox
        finally:
            profiles.clear_cache()
            workspaces.clear_cache()


def message_request(team_id: str, user: str, text: str, *, channel: str, ts: str,
                    thread_ts: str | None = None) -> ConversationRequest:
    """A Slack message as the conversation worker receives it (a DM when ``channel`` starts with D)."""
    return ConversationRequest(
        kind=RequestKind.MESSAGE, request_id=message_request_id(team_id, channel, ts), event_id=f"Ev{ts}",
        team_id=team_id, channel_id=channel, channel_type="im" if channel.startswith("D") else "channel",
        user_id=user, text=text, ts=ts, thread_ts=thread_ts or ts)
