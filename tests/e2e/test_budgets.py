"""Budgets end to end (issue 16): `insightmesh dev` with the Slack sandbox and the OpenAI stand-in.

An admin sets a daily budget on a person through /api/budgets (warn at 50%, a fallback model).
Spend is seeded by writing the person's usage counter in the emulator, as record_usage ADDs it.
Past the warning threshold the LLM stand-in is asked for the fallback model, and the admin (an
admin with a Slack id) gets exactly one DM however many requests follow; at the limit the person
gets one reply that names the budget and its reset, and the stand-in gets no call at all.
The counters budgets read are written off the request path: an answered message is counted by
the usage aggregator (UsageQueue, a 5 s batching window) a few seconds after its reply."""

from __future__ import annotations

from itertools import count

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running, slack_llm_env
from tests.e2e.test_slack_conversations import is_final
from tests.helpers import wait_for

SECRET = "e2e-budgets-secret"
CHANNEL = "C0BUDGET"
ALICE, BOSS, CAROL = "U0ALICE", "U0BOSS", "U0CAROL"
ADMIN_EMAIL = "budget-admin@example.com"
TEAM = slack.DEFAULT_TEAM_ID
FALLBACK = "e2e-cheap-model"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
_ts = count(1)


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    # BUDGET_CACHE_SECONDS=0: every request reads the counters this test writes between requests.
    env = slack_llm_env(sandbox, llm, secret=SECRET, BUDGET_CACHE_SECONDS="0")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def admin(dev):
    token = dev.cli("token", "create", "--email", ADMIN_EMAIL, "--admin")
    assert token.returncode == 0, token.stderr
    with dev.http(headers={"Authorization": f"Bearer {token.stdout.strip()}"}) as client:
        yield client


def ask(dev, sandbox, user: str, text: str) -> dict:
    """A mention by ``user`` in the channel; its one final reply."""
    ts = f"{1798000000 + next(_ts)}.{next(_ts):06d}"
    with dev.http() as http:
        response = post_event(http, SECRET, slack.app_mention_event(user, CHANNEL, f"<@{slack.DEFAULT_BOT_USER_ID}> "
                                                                                   f"{text}", ts))
    assert response.status_code == 200, response.text

    def final():
        replies = [m for m in sandbox.messages(channel=CHANNEL, thread_ts=ts)
                   if m.get("is_bot") and not m.get("ephemeral") and not m.get("deleted")]
        return replies if replies and all(is_final(m) for m in replies) else None
    replies = wait_for(final, timeout=60, interval=0.25, what=f"the reply to {text!r}")
    assert len(replies) == 1, replies  # exactly one reply
    return replies[0]


def user_id(dev, slack_id: str) -> str:
    item = dev.aws("dynamodb").get_item(TableName="insightmesh-dev-IdentitiesTable",
                                        Key={"identity_key": {"S": f"slack#{TEAM}:{slack_id}"}})["Item"]
    return str(item["user_id"]["S"])


def spent_today(dev, alice: str, micros: int) -> None:
    """Alice's spend today is now ``micros`` (the counter record_usage ADDs cost_micros to)."""
    from datetime import UTC, datetime

    dev.aws("dynamodb").update_item(
        TableName="insightmesh-dev-UsageTable",
        Key={"subject": {"S": f"user#{alice}"}, "period": {"S": datetime.now(UTC).strftime("%Y-%m-%d")}},
        UpdateExpression="SET cost_micros = :c", ExpressionAttributeValues={":c": {"N": str(micros)}})


def alerts(sandbox) -> list[dict]:
    return [m for m in sandbox.messages() if "budget alert" in m.get("text", "")]


def test_fallback_near_the_limit_one_alert_and_a_refusal_without_an_llm_call(dev, sandbox, llm, admin):
    ask(dev, sandbox, BOSS, "hello")  # first contact: the boss is a directory user with a Slack id
    boss = user_id(dev, BOSS)
    assert admin.post(f"/api/users/{boss}/admin", json={"is_admin": True}).status_code == 200
    ask(dev, sandbox, ALICE, "hello")
    alice = user_id(dev, ALICE)
    assert llm.chat_requests()[-1].body["model"] == "e2e-model"

    put = admin.put(f"/api/budgets/user/{alice}", json={"limit_usd": 1, "period": "day", "warn_at": 0.5,
                                                         "fallback_model": FALLBACK})
    assert put.status_code == 201, put.text

    # Past 50%: the fallback model answers, and the boss is told once over three requests.
    spent_today(dev, alice, 600_000)
    for question in ("first", "second", "third"):
        before = len(llm.chat_requests())
        ask(dev, sandbox, ALICE, f"{question} question")
        asked = llm.chat_requests()[before:]
        assert asked and {request.body["model"] for request in asked} == {FALLBACK}
    told = wait_for(lambda: alerts(sandbox) or None, timeout=30, what="the budget alert")
    assert len(told) == 1 and told[0]["channel"].endswith(BOSS)
    assert f"the user budget for {alice} ($1.00 per day) has reached 60%" in told[0]["text"]
    assert FALLBACK in told[0]["text"]

    # At the limit: a clear reply, and the LLM is not asked at all.
    spent_today(dev, alice, 1_000_000)
    before = len(llm.chat_requests())
    reply = ask(dev, sandbox, ALICE, "one more question")
    assert f"the user budget for {alice} ($1.00 per day) is used up" in reply["text"]
    assert "It resets on" in reply["text"] and "00:00 UTC" in reply["text"]
    assert len(llm.chat_requests()) == before
    listed = admin.get("/api/budgets").json()["items"]
    assert [(b["scope"], b["value"], b["spent_usd"]) for b in listed] == [("user", alice, 1.0)]
    assert len(alerts(sandbox)) == 1  # still once


def test_an_answered_message_is_counted_by_the_usage_aggregator(dev, sandbox):
    ask(dev, sandbox, CAROL, "count this one")
    carol = user_id(dev, CAROL)
    from datetime import UTC, datetime

    month = datetime.now(UTC).strftime("%Y-%m")
    dynamodb = dev.aws("dynamodb")

    def counted() -> dict | None:
        item = dynamodb.get_item(TableName="insightmesh-dev-UsageTable", ConsistentRead=True,
                                 Key={"subject": {"S": f"user#{carol}"}, "period": {"S": month}}).get("Item")
        return item if item and int(item["calls"]["N"]) >= 1 else None
    # The reply is out before its usage is counted: the batching window (5 s) and the aggregator's run.
    counter = wait_for(counted, timeout=30, interval=0.5, what="the aggregator's counter of the answered message")
    assert int(counter["prompt_tokens"]["N"]) > 0 and int(counter["completion_tokens"]["N"]) > 0
    channel = dynamodb.get_item(TableName="insightmesh-dev-UsageTable", ConsistentRead=True,
                                Key={"subject": {"S": f"channel#{CHANNEL}"}, "period": {"S": month}})["Item"]
    assert int(channel["calls"]["N"]) >= int(counter["calls"]["N"])

    def indexed() -> bool:  # the same batch's index write, which may land after its counters
        item = dynamodb.get_item(TableName="insightmesh-dev-UsageTable", ConsistentRead=True,
                                 Key={"subject": {"S": "index#user"}, "period": {"S": month}}).get("Item")
        return bool(item) and carol in item["members"]["SS"]
    wait_for(indexed, timeout=10, interval=0.5, what="the user in the month's index of users")
