"""The Slack sandbox's fault injection scoped to one channel (used by benchmarks/chaos.py to send
one thread to the dead-letter queue while every other thread is served), through slack_sdk."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh_local import local_auth
from insightmesh_local.slack_sandbox import SlackSandbox

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sandbox():
    server = SlackSandbox(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sandbox):
    return WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5, retry_handlers=[])


def test_a_rule_with_a_channel_fails_only_that_channels_calls(sandbox, client):
    sandbox.fail("chat.postMessage", "error", 2, status=500, channel="D0DOOMED")
    assert client.chat_postMessage(channel="C0FINE", text="served")["ok"]
    for _ in range(2):
        with pytest.raises(SlackApiError) as failed:
            client.chat_postMessage(channel="D0DOOMED", text="refused")
        assert failed.value.response.status_code == 500
        assert client.chat_postMessage(channel="C0FINE", text="still served")["ok"]
    assert client.chat_postMessage(channel="D0DOOMED", text="the rule is spent")["ok"]
    assert [m["text"] for m in sandbox.messages(channel="D0DOOMED")] == ["the rule is spent"]
    assert len(sandbox.messages(channel="C0FINE")) == 3


def test_the_control_endpoint_takes_a_channel(sandbox, client):
    with httpx.Client(base_url=sandbox.root, timeout=5, headers={local_auth.HEADER: sandbox.secret}) as control:
        rule = control.post("_sandbox/fail", json={"method": "chat.update", "mode": "ratelimit", "count": 1,
                                                   "channel": "C0SLOW"}).json()["rule"]
        assert rule["channel"] == "C0SLOW"
        posted = client.chat_postMessage(channel="C0FAST", text="a")
        assert client.chat_update(channel="C0FAST", ts=posted["ts"], text="b")["ok"]
        assert [r["channel"] for r in control.get("_sandbox/fail").json()["pending"]] == ["C0SLOW"]
