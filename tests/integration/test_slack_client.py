"""The Slack Web API client against the sandbox: which failures it retries in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from insightmesh import resilience
from insightmesh.slack import client as slack_client
from insightmesh.slack.client import call_slack
from insightmesh_local.slack_sandbox import SlackSandbox


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-client-test")
    slack_client.reset_for_tests()
    resilience._breakers.clear()
    with SlackSandbox(port=0) as stand_in:
        monkeypatch.setenv("SLACK_API_URL", stand_in.url)
        yield stand_in
    slack_client.reset_for_tests()
    resilience._breakers.clear()


def test_a_5xx_on_an_idempotent_method_is_retried(sandbox: SlackSandbox) -> None:
    posted = call_slack(lambda c: c.chat_postMessage(channel="C1", text="draft"))
    sandbox.fail("chat.update", "error", count=2, status=503, error="service_unavailable")
    updated = call_slack(lambda c: c.chat_update(channel="C1", ts=posted["ts"], text="final"))
    assert updated["ok"]
    assert [call["status"] for call in sandbox.calls("chat.update")] == [503, 503, 200]
    assert sandbox.messages(channel="C1")[-1]["text"] == "final"


def test_a_5xx_on_a_post_is_not_retried(sandbox: SlackSandbox) -> None:
    """A 5xx may hide a message Slack did post: a retry could show it twice."""
    sandbox.fail("chat.postMessage", "error", count=1, status=500, error="internal_error")
    with pytest.raises(SlackApiError):
        call_slack(lambda c: c.chat_postMessage(channel="C1", text="once"))
    assert len(sandbox.calls("chat.postMessage")) == 1


def test_retries_are_bounded(sandbox: SlackSandbox) -> None:
    sandbox.fail("users.info", "error", count=5, status=500, error="internal_error")
    with pytest.raises(SlackApiError):
        call_slack(lambda c: c.users_info(user="U1"))
    assert len(sandbox.calls("users.info")) == 3  # the call and two retries
