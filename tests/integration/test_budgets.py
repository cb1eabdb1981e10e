"""Budgets (issue 16): the check on the worker's path and ``/api/budgets``, against every table of
the template in moto, Slack as the sandbox and the LLM as the OpenAI stand-in over loopback.

The check reads with one ``BatchGetItem`` (counted through botocore's hooks) and a cached decision
makes no call; near the limit the request moves to the fallback model (the stand-in sees it
asked); at the limit the person gets a reply that names the budget and its reset, and the
stand-in gets no call; the admins are told once per budget and period, however many workers see
it. The API validates (scope, value, limit) and audits every change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from insightmesh.agents.catalog import seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.budgets import alerts
from insightmesh.budgets import check as budgets
from insightmesh.budgets.models import ALERT_SUBJECT, BUDGET_SUBJECT, BudgetAlert, BudgetItem, budget_key
from insightmesh.budgets.settings import budget_settings
from insightmesh.conversation import worker
from insightmesh.directory.models import Group, Membership
from insightmesh.directory.permissions import groups_of
from insightmesh.llm import get_llm_client
from insightmesh.llm.pricing import pricing_settings
from insightmesh.llm.usage import UsageRecord, period_key, subject_of
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.integration.conftest import DynamoCalls, save_user
from tests.integration.test_admin_api import Api, assert_envelope, audit_entries, latest_audit
from tests.integration.test_admin_api import api as api
from tests.slack_fixtures import conversation_sandbox, message_request
from tests.standins.openai_server import OpenAIStandin
from tests.standins.openai_server import start as start_openai

pytestmark = pytest.mark.timeout(120)
TEAM = "TLOCAL0001"
USER = "u-budget"
AGENT = "assistant"
MICROS = 1_000_000


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LLM_FALLBACK_MODEL", raising=False)
    monkeypatch.delenv("BUDGET_ALERT_CHANNEL", raising=False)
    monkeypatch.delenv("BUDGET_CACHE_SECONDS", raising=False)
    _clear()
    yield
    alerts.wait_for_alerts()
    _clear()


def _clear() -> None:
    budget_settings.cache_clear()
    pricing_settings.cache_clear()
    budgets.reset_cache()
    alerts.forget()


def set_budget(scope: budgets.Scope, value: str, limit_usd: float, period: str = "month", *,
               warn_at: float = 0.8, fallback_model: str | None = None) -> None:
    BudgetItem(BUDGET_SUBJECT, budget_key(scope, value), scope=scope, value=value,
               limit_micros=int(limit_usd * MICROS), period_kind=period, warn_at=warn_at,
               fallback_model=fallback_model, version=1).save()


def spend(scope: str, value: str, usd: float, period: str = "month", when: datetime | None = None) -> None:
    UsageRecord(subject_of(scope, value), period_key(period, when)).update(  # type: ignore[arg-type]
        actions=[UsageRecord.cost_micros.add(int(usd * MICROS))])


def decide(**kwargs: Any) -> budgets.BudgetDecision:
    return budgets.check(workspace=TEAM, user_id=USER, agent=AGENT, **kwargs)


# -- the check -------------------------------------------------------------------------------------


def test_the_check_is_one_batch_get_and_a_cached_one_makes_no_call(
    tables: dict[str, str], dynamo_calls: DynamoCalls
) -> None:
    save_user(USER, groups=("all_users", "sales"))
    set_budget("group", "sales", 100)
    spend("group", "sales", 10)
    assert groups_of(USER) == {"all_users", "sales"}  # the shared 30 s cache, warm as the usage recording leaves it

    first: list[budgets.BudgetDecision] = []
    assert dynamo_calls.during(lambda: first.append(decide())) == ["BatchGetItem:-"]
    assert [(s.budget.scope, s.budget.value, s.spent_micros) for s in first[0].standings] == \
        [("group", "sales", 10 * MICROS)]
    assert first[0].refusal is None and first[0].fallback_model is None

    assert dynamo_calls.during(decide) == []  # every definition and counter cached


def test_without_any_budget_a_request_goes_on_and_the_next_reads_nothing(
    tables: dict[str, str], dynamo_calls: DynamoCalls
) -> None:
    calls = dynamo_calls.during(lambda: decide(groups=("all_users",)))
    assert calls == ["BatchGetItem:-"]
    assert dynamo_calls.during(lambda: decide(groups=("all_users",))) == []
    decision = decide(groups=("all_users",))
    assert decision.standings == () and decision.checked and decision.refusal is None


def test_without_a_cache_every_request_reads_once(
    tables: dict[str, str], dynamo_calls: DynamoCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", "0")
    _clear()
    set_budget("user", USER, 10, "day")
    assert dynamo_calls.during(lambda: (decide(groups=()), decide(groups=()))) == ["BatchGetItem:-"] * 2


def test_a_used_up_budget_opens_again_in_the_next_period_with_one_read(
    tables: dict[str, str], dynamo_calls: DynamoCalls
) -> None:
    today, tomorrow = datetime(2026, 12, 7, 23, 59, tzinfo=UTC), datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    set_budget("user", USER, 1, "day")
    spend("user", USER, 1, "day", today)
    assert decide(groups=(), now=today, alert=False).refusal is not None

    # The definition is cached; only the new day's counter is read (it does not exist yet: no spend).
    calls = dynamo_calls.during(lambda: decide(groups=(), now=tomorrow, alert=False))
    assert calls == ["BatchGetItem:-"]
    decision = decide(groups=(), now=tomorrow, alert=False)
    assert decision.refusal is None and [s.spent_micros for s in decision.standings] == [0]


def test_near_the_limit_the_budgets_fallback_model_is_chosen_and_the_global_one_otherwise(
    tables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_budget("agent", AGENT, 10, warn_at=0.5, fallback_model="cheap-model")
    spend("agent", AGENT, 4.99)
    assert decide(groups=(), alert=False).fallback_model is None  # under warn_at

    spend("agent", AGENT, 0.01)
    budgets.reset_cache()
    decision = decide(groups=(), alert=False)
    assert decision.fallback_model == "cheap-model" and decision.refusal is None

    set_budget("agent", AGENT, 10, warn_at=0.5)  # no fallback of its own: LLM_FALLBACK_MODEL's
    monkeypatch.setenv("LLM_FALLBACK_MODEL", "global-cheap")
    _clear()
    assert decide(groups=(), alert=False).fallback_model == "global-cheap"


def test_at_the_limit_the_reply_names_the_budget_and_its_reset(tables: dict[str, str]) -> None:
    now = datetime(2026, 12, 30, 15, 0, tzinfo=UTC)
    set_budget("workspace", TEAM, 50, "month")
    spend("workspace", TEAM, 50, when=now)
    decision = decide(groups=(), now=now, alert=False)
    refusal = decision.refusal
    assert refusal is not None
    assert "the workspace budget for TLOCAL0001 ($50.00 per month) is used up" in refusal
    assert "It resets on 2027-01-01 at 00:00 UTC" in refusal


def test_of_several_used_up_budgets_the_one_that_resets_last_is_named(tables: dict[str, str]) -> None:
    now = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # a Wednesday
    set_budget("user", USER, 1, "day")
    set_budget("group", "sales", 5, "week")
    spend("user", USER, 1, "day", now)
    spend("group", "sales", 6, "week", now)
    decision = decide(groups=("sales",), now=now, alert=False)
    assert decision.exhausted is not None and decision.exhausted.budget.scope == "group"
    assert "It resets on 2026-12-14 at 00:00 UTC" in (decision.refusal or "")  # the next Monday


@pytest.mark.parametrize(("kind", "now", "resets"), [
    ("day", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("week", datetime(2026, 12, 27, 8, 0, tzinfo=UTC), datetime(2026, 12, 28, tzinfo=UTC)),  # a Sunday
    ("week", datetime(2026, 12, 28, 0, 0, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),  # a Monday
    ("month", datetime(2026, 12, 1, 0, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("month", datetime(2027, 1, 31, 12, 0, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
])
def test_a_period_resets_at_the_next_periods_start(kind: Any, now: datetime, resets: datetime) -> None:
    assert budgets.next_period_start(kind, now) == resets


def test_an_unreadable_usage_table_fails_open(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_TABLE", "no-such-table")
    decision = decide(groups=())
    assert not decision.checked and decision.refusal is None and decision.fallback_model is None


# -- the alert -------------------------------------------------------------------------------------


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    with conversation_sandbox(monkeypatch, "xoxb-budgets") as sandbox:
        yield sandbox


def admin_with_slack(user_id: str, slack_id: str) -> None:
    user = save_user(user_id, f"{user_id}@example.com", is_admin=True)
    user.update(actions=[type(user).slack_ids.set({TEAM: slack_id})])


def test_the_admins_are_told_once_per_budget_and_period(slack: SlackSandbox) -> None:
    admin_with_slack("u-admin1", "U0ADMIN1")
    admin_with_slack("u-admin2", "U0ADMIN2")
    save_user("u-member", "member@example.com")  # not an admin: not told
    set_budget("user", USER, 10)
    spend("user", USER, 9)

    for _ in range(3):  # three requests, each in a "new container"
        decide(groups=())
        alerts.wait_for_alerts()
        _clear()

    told = [m for m in slack.messages() if "budget alert" in m["text"]]
    assert sorted(m["channel"] for m in told) == ["DU0ADMIN1", "DU0ADMIN2"]  # a DM each
    assert "the user budget for u-budget ($10.00 per month) has reached 90%" in told[0]["text"]
    marker = BudgetAlert.get(ALERT_SUBJECT, f"user#{USER}#{period_key('month')}")
    assert int(marker.spent_micros) == 9 * MICROS


def test_concurrent_workers_send_one_alert(slack: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_ALERT_CHANNEL", "C0BUDGETS")
    budget_settings.cache_clear()
    alert = alerts.Alert(key="agent#assistant#2026-12", text="budget alert: assistant", team_id=TEAM,
                         spent_micros=8, limit_micros=10)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(alerts.send_once(alert))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert [m["channel"] for m in slack.messages() if "budget alert" in m["text"]] == ["C0BUDGETS"]


def test_an_alert_nobody_received_is_tried_again_later(slack: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_ALERT_CHANNEL", "C0BUDGETS")
    budget_settings.cache_clear()
    alert = alerts.Alert(key="group#sales#2026-12", text="budget alert: sales", team_id=TEAM, spent_micros=9,
                         limit_micros=10)
    slack.fail("chat.postMessage", "error", count=1, error="channel_not_found")
    assert alerts.send_once(alert) is False  # not delivered: the marker is released
    assert alerts.send_once(alert) is True
    assert alerts.send_once(alert) is False
    assert len([m for m in slack.messages(channel="C0BUDGETS") if "budget alert" in m["text"]]) == 1


# -- the worker --------------------------------------------------------------------------------------


@pytest.fixture
def llm(slack: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStandin]:
    server, base_url = start_openai(port=0)
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_BASE_URL", base_url)
    monkeypatch.setenv("LLM_API_KEY", "sk-budget-test-0000")
    monkeypatch.setenv("LLM_MODEL", "usual-model")
    get_llm_client.cache_clear()
    seed_agents(builtin_definitions())
    slack.add_users({"id": "U0ALICE01", "name": "alice", "real_name": "Alice Archer"})
    yield server
    server.stop()
    get_llm_client.cache_clear()


def ask(sandbox: SlackSandbox, text: str) -> list[dict[str, Any]]:
    channel = "DU0ALICE01"
    ts = str(sandbox.add_user_message(channel=channel, user="U0ALICE01", text=text)["ts"])
    worker.process(message_request(TEAM, "U0ALICE01", text, channel=channel, ts=ts))
    return [m for m in sandbox.messages(channel, ts) if m["is_bot"] and not m["ephemeral"] and not m.get("deleted")]


def user_id_of_alice() -> str:
    return next(str(m.user_id) for m in Membership.query("all_users") if m.user_id not in ("u-admin",))


def test_the_worker_moves_to_the_fallback_model_then_refuses_without_calling_the_llm(
    slack: SlackSandbox, llm: OpenAIStandin
) -> None:
    assert len(ask(slack, "hello there")) == 1  # first contact: the user exists now
    alice = user_id_of_alice()
    assert llm.chat_requests()[-1].body["model"] == "usual-model"

    set_budget("user", alice, 1, "day", fallback_model="cheap-model")
    spend("user", alice, 0.85, "day")
    budgets.reset_cache()
    ask(slack, "and now?")
    assert llm.chat_requests()[-1].body["model"] == "cheap-model"

    spend("user", alice, 0.15, "day")
    budgets.reset_cache()
    before = len(llm.chat_requests())
    replies = ask(slack, "one more")
    assert len(llm.chat_requests()) == before  # no LLM call at all
    assert len(replies) == 1  # exactly one reply: the placeholder, replaced
    assert f"the user budget for {alice} ($1.00 per day) is used up" in replies[0]["text"]
    assert "It resets on" in replies[0]["text"]


def test_a_refused_turn_in_a_full_thread_makes_no_summary_call_and_counts_nothing(
    slack: SlackSandbox, llm: OpenAIStandin
) -> None:
    from insightmesh.conversation import threads
    from insightmesh.conversation.memory import WINDOW_MESSAGES
    from insightmesh.conversation.requests import thread_key
    from insightmesh.llm.usage import UsageCall

    ask(slack, "hello there")
    alice = user_id_of_alice()
    set_budget("user", alice, 1, "day")
    spend("user", alice, 1.0, "day")
    budgets.reset_cache()
    channel = "DU0ALICE01"
    parent = str(slack.add_user_message(channel=channel, user="U0ALICE01", text="the trip")["ts"])
    key = thread_key(TEAM, channel, parent)
    window = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n // 2}"}
              for n in range(WINDOW_MESSAGES)]
    threads.save_thread(threads.ThreadState(key=key, bot_replied=True, history=list(window)))  # the next turn folds
    ts = str(slack.add_user_message(channel=channel, user="U0ALICE01", text="and hotels?", thread_ts=parent)["ts"])
    asked = message_request(TEAM, "U0ALICE01", "and hotels?", channel=channel, ts=ts, thread_ts=parent)
    before = len(llm.chat_requests())
    worker.process(asked)

    assert len(llm.chat_requests()) == before  # neither the answer nor the thread's summary called the model
    assert list(UsageCall.query(f"request#{asked.request_id}")) == []
    thread = threads.load_thread(key)
    assert thread.summary is None and len(thread.history) == WINDOW_MESSAGES  # older turns dropped, as on a failure
    assert "is used up" in thread.history[-1]["content"]


# -- /api/budgets ----------------------------------------------------------------------------------


def test_put_list_delete_are_stored_and_audited(api: Api) -> None:
    Group("sales").save()
    created = api.ok("PUT", "/api/budgets/group/sales", 201,
                     body={"limit_usd": 25, "period": "week", "fallback_model": "gpt-4o-mini"})
    assert (created["scope"], created["value"], created["limit_usd"], created["period"], created["warn_at"],
            created["version"]) == ("group", "sales", 25.0, "week", 0.8, 1)
    entry = latest_audit("budget:group:sales")
    assert entry.action == "budget.put" and entry.before is None and entry.after["limit_usd"] == 25.0

    spend("group", "sales", 3.5, "week")
    listed = api.ok("GET", "/api/budgets")
    assert [(b["scope"], b["value"], b["spent_usd"]) for b in listed["items"]] == [("group", "sales", 3.5)]

    replaced = api.ok("PUT", "/api/budgets/group/sales", body={"limit_usd": 30, "period": "month", "warn_at": 0.9,
                                                               "version": 1})
    assert (replaced["limit_usd"], replaced["period"], replaced["version"]) == (30.0, "month", 2)
    assert latest_audit("budget:group:sales").before["limit_usd"] == 25.0
    stale = api.call("PUT", "/api/budgets/group/sales", body={"limit_usd": 1, "period": "day", "version": 1})
    assert_envelope(stale, 409, "conflict")

    removed = api.ok("DELETE", "/api/budgets/group/sales")
    assert removed["limit_usd"] == 30.0
    assert [e.action for e in audit_entries("budget:group:sales")] == ["budget.delete", "budget.put", "budget.put"]
    assert api.ok("GET", "/api/budgets")["items"] == []
    assert_envelope(api.call("DELETE", "/api/budgets/group/sales"), 404, "not_found")


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/api/budgets/group/ghosts", {"limit_usd": 5, "period": "day"}, "no group named 'ghosts'"),
    ("/api/budgets/user/u-nobody", {"limit_usd": 5, "period": "day"}, "no user named 'u-nobody'"),
    ("/api/budgets/agent/no-such-agent", {"limit_usd": 5, "period": "day"}, "no agent named"),
    ("/api/budgets/workspace/not-a-team", {"limit_usd": 5, "period": "day"}, "is not a workspace"),
    ("/api/budgets/agent/meddic", {"limit_usd": 0, "period": "day"}, None),
    ("/api/budgets/agent/meddic", {"limit_usd": -3, "period": "day"}, None),
    ("/api/budgets/agent/meddic", {"limit_usd": 5, "period": "year"}, None),
    ("/api/budgets/agent/meddic", {"limit_usd": 5, "period": "day", "warn_at": 1.5}, None),
    ("/api/budgets/agent/meddic", {"limit_usd": 5, "period": "day", "extra": 1}, None),
    ("/api/budgets/channel/C0SALES", {"limit_usd": 5, "period": "day"}, None),
])
def test_invalid_budgets_are_422_and_nothing_is_written_or_audited(
    api: Api, path: str, body: dict[str, Any], message: str | None
) -> None:
    result = api.call("PUT", path, body=body)
    assert_envelope(result, 422, "validation_error")
    if message:
        assert message in result.body["error"]["message"]
    assert api.ok("GET", "/api/budgets")["items"] == []
    _, _, scope, value = path.split("/")[1:]
    assert audit_entries(f"budget:{scope}:{value}") == []


def test_an_agent_and_a_user_budget_are_accepted(api: Api) -> None:
    assert api.ok("PUT", "/api/budgets/agent/meddic", 201, body={"limit_usd": 2.5, "period": "day"})["limit_usd"] == 2.5
    assert api.ok("PUT", "/api/budgets/user/u-member", 201, body={"limit_usd": 1, "period": "week"})["version"] == 1
    assert api.ok("PUT", f"/api/budgets/workspace/{TEAM}", 201, body={"limit_usd": 100, "period": "month"})
    assert len(api.ok("GET", "/api/budgets")["items"]) == 3
