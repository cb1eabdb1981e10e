"""Usage and cost analytics (issue 16) on moto DynamoDB in-process: counters per dimension and
day/week/month, prices and their API, the usage reports (never a Scan), the worker's recording client."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from insightmesh.llm import OfflineClient
from insightmesh.llm.base import ChatMessage, Usage
from insightmesh.llm.pricing import PRICES_SUBJECT, ModelPrice, cost_micros, forget_prices, pricing_settings
from insightmesh.llm.usage import UsageCall, UsageIndex, UsageRecord, drain_usage, forget_indexed, record_usage
from insightmesh.llm.usage_report import periods_ending, usage_of_user, usage_report
from insightmesh.observability import get_logger
from tests.integration.conftest import DYNAMO_CALLS, save_user
from tests.integration.test_admin_api import ADMIN_ID, MEMBER_ID, Api, assert_envelope, audit_entries
from tests.integration.test_admin_api import api as api
from tests.integration.test_llm_usage import atomic_moto_updates
from tests.integration.test_slack_access import env as env  # the Slack sandbox fixture, shared by name

NOV_30 = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # a Monday: ISO week 2026-W49 ...
DEC_1 = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # ... which goes on into December


@pytest.fixture
def fresh(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The template's tables, nothing indexed or priced in this process's caches, default prices unset."""
    for variable in ("LLM_DEFAULT_INPUT_USD_PER_MILLION", "LLM_DEFAULT_OUTPUT_USD_PER_MILLION", "LLM_FALLBACK_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    forget_indexed()
    forget_prices()
    pricing_settings.cache_clear()
    yield tables
    forget_prices()
    pricing_settings.cache_clear()


def price(model: str, input_usd: float, output_usd: float) -> None:
    ModelPrice(PRICES_SUBJECT, model, input_usd_per_million=input_usd, output_usd_per_million=output_usd).save()
    forget_prices()


def counter(subject: str, period: str) -> tuple[int, int, int, int]:
    """(calls, prompt tokens, completion tokens, cost micros) of one counter; zeros when absent."""
    try:
        item = UsageRecord.get(subject, period, consistent_read=True)
    except UsageRecord.DoesNotExist:
        return 0, 0, 0, 0
    return int(item.calls), int(item.prompt_tokens), int(item.completion_tokens), int(item.cost_micros)


def record(user: str, usage: Usage, when: datetime, *, agent: str = "help", model: str = "gpt-4o-mini",
           channel: str | None = "C1", groups: tuple[str, ...] = (), workspace: str | None = "T1",
           request_id: str | None = None) -> None:
    record_usage(agent=agent, user_id=user, usage=usage, model=model, channel=channel, groups=groups,
                 workspace=workspace, request_id=request_id, when=when)


# -- recording ------------------------------------------------------------------------------------


def test_a_completion_counts_for_every_dimension_and_period_across_a_month_boundary(fresh: dict[str, str]) -> None:
    price("gpt-4o-mini", 0.15, 0.6)  # USD per 1M tokens: 0.15 and 0.6 micro-USD per token
    record("u-1", Usage(1000, 100), NOV_30, groups=("sales", "emea"), request_id="req-1")
    record("u-1", Usage(2000, 300), DEC_1, groups=("sales",), channel="C2")
    record("u-2", Usage(10, 10), DEC_1, agent="meddic", model="unpriced-model", workspace=None)

    first, second = 1000 * 0.15 + 100 * 0.6, 2000 * 0.15 + 300 * 0.6  # 210 and 480 micro-USD
    assert cost_micros("gpt-4o-mini", Usage(1000, 100)) == first == 210
    assert counter("user#u-1", "2026-11-30") == (1, 1000, 100, 210)
    assert counter("user#u-1", "2026-12-01") == (1, 2000, 300, 480)
    assert counter("user#u-1", "2026-W49") == (2, 3000, 400, first + second)  # the week spans both months
    assert counter("user#u-1", "2026-11") == (1, 1000, 100, 210)
    assert counter("user#u-1", "2026-12") == (1, 2000, 300, 480)
    assert counter("group#sales", "2026-W49") == (2, 3000, 400, 690)
    assert counter("group#emea", "2026-W49") == (1, 1000, 100, 210)
    assert counter("channel#C1", "2026-11") == (1, 1000, 100, 210)
    assert counter("channel#C2", "2026-12") == (1, 2000, 300, 480)
    assert counter("workspace#T1", "2026-W49") == (2, 3000, 400, 690)
    assert counter("model#gpt-4o-mini", "2026-W49") == (2, 3000, 400, 690)
    assert counter("agent#help", "2026-12") == (1, 2000, 300, 480)
    assert counter("agent#meddic", "2026-12-01") == (1, 10, 10, 0)  # no price, default 0: counted, free
    assert counter("model#unpriced-model", "2026-12") == (1, 10, 10, 0)
    assert counter("workspace#None", "2026-12") == (0, 0, 0, 0)  # no workspace: no counter

    def members(dimension: str, period: str) -> set[str]:
        return set(UsageIndex.get(f"index#{dimension}", period).members or ())

    assert members("user", "2026-W49") == {"u-1", "u-2"}
    assert members("user", "2026-11") == {"u-1"}
    assert members("group", "2026-12-01") == {"sales"}
    assert members("channel", "2026-12") == {"C1", "C2"}
    assert members("model", "2026-12") == {"gpt-4o-mini", "unpriced-model"}

    calls = list(UsageCall.query("request#req-1"))
    assert len(calls) == 1
    call = calls[0]
    assert (call.agent, call.user_id, call.groups, call.channel, call.workspace, call.model) == (
        "help", "u-1", ["emea", "sales"], "C1", "T1", "gpt-4o-mini")
    assert (int(call.prompt_tokens), int(call.completion_tokens), int(call.cost_micros)) == (1000, 100, 210)
    assert call.expires_at is not None and (call.expires_at - NOV_30).days == 90


def test_one_completion_is_one_update_per_dimension_value_and_period(fresh: dict[str, str]) -> None:
    record("u-1", Usage(5, 5), DEC_1, groups=("sales", "emea"))  # indexes every value once
    operations = DYNAMO_CALLS.operations_during(
        lambda: record("u-1", Usage(5, 5), DEC_1, groups=("sales", "emea")))

    # workspace, agent, user, 2 groups, channel, model: 7 values x (day, week, month); the record;
    # the prices come from the cache, the index items were written by the first call.
    assert operations.count("UpdateItem") == 7 * 3
    assert operations.count("PutItem") == 1
    assert len(operations) == 7 * 3 + 1
    assert "Query" not in operations and "GetItem" not in operations


def test_background_recording_is_written_by_the_drain_and_fails_soft(fresh: dict[str, str]) -> None:
    for _ in range(3):
        record_usage(agent="help", user_id="u-bg", usage=Usage(1, 2), model="m", when=DEC_1, background=True)
    drain_usage()
    assert counter("user#u-bg", "2026-12") == (3, 3, 6, 0)
    drain_usage()  # nothing pending: nothing to do

    import boto3

    boto3.client("dynamodb").delete_table(TableName=fresh["USAGE_TABLE"])
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        record_usage(agent="help", user_id="u-bg", usage=Usage(1, 2), when=DEC_1, background=True)  # no raise
        drain_usage()  # logged, not raised
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "llm usage not recorded; storage unavailable"]


def test_concurrent_completions_lose_nothing(fresh: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_moto_updates(monkeypatch)
    price("gpt-4o-mini", 1.0, 2.0)

    def work(user: str) -> None:
        for _ in range(5):
            record(user, Usage(3, 2), NOV_30, groups=("sales",))

    threads = [threading.Thread(target=work, args=(f"u-{n % 2}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    each = 3 * 1 + 2 * 2  # 7 micro-USD
    for subject in ("workspace#T1", "agent#help", "group#sales", "channel#C1", "model#gpt-4o-mini"):
        for period in ("2026-11-30", "2026-W49", "2026-11"):
            assert counter(subject, period) == (20, 60, 40, 20 * each), (subject, period)
    assert counter("user#u-0", "2026-W49") == (10, 30, 20, 10 * each)
    assert counter("user#u-1", "2026-11") == (10, 30, 20, 10 * each)
    assert set(UsageIndex.get("index#user", "2026-11").members) == {"u-0", "u-1"}


def test_an_unpriced_model_costs_the_configured_default_and_warns_once(fresh: dict[str, str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_DEFAULT_INPUT_USD_PER_MILLION", "2")
    monkeypatch.setenv("LLM_DEFAULT_OUTPUT_USD_PER_MILLION", "8")
    pricing_settings.cache_clear()
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        assert cost_micros("mystery-model-1", Usage(100, 10)) == 100 * 2 + 10 * 8
        assert cost_micros("mystery-model-1", Usage(1, 1)) == 10
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["model"]) for line in warnings] == [
        ("model has no price; the default price is used", "mystery-model-1")]


def test_each_completion_prints_one_emf_line_by_model(fresh: dict[str, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    price("gpt-4o-mini", 0.15, 0.6)
    capsys.readouterr()
    record("u-1", Usage(1000, 100), DEC_1)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(lines) == 1
    emf = lines[0]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "InsightMesh" and directive["Dimensions"] == [["Model"]]
    assert {(m["Name"], m["Unit"]) for m in directive["Metrics"]} == {
        ("LlmInputTokens", "Count"), ("LlmOutputTokens", "Count"), ("LlmCostUSD", "None")}
    assert (emf["Model"], emf["LlmInputTokens"], emf["LlmOutputTokens"], emf["LlmCostUSD"]) == (
        "gpt-4o-mini", 1000, 100, 0.00021)


def test_the_workers_recording_client_passes_every_dimension(fresh: dict[str, str]) -> None:
    from insightmesh.conversation.requests import ConversationRequest, RequestKind
    from insightmesh.conversation.worker import recording_llm

    save_user("u-rec", groups=("all_users", "sales"))
    request = ConversationRequest(kind=RequestKind.MESSAGE, request_id="req-9", team_id="T9", channel_id="C9",
                                  user_id="U9", text="How do I reset my VPN token?")
    llm = recording_llm(OfflineClient(), "help", "u-rec", request)
    completion = llm.complete([ChatMessage.user("How do I reset my VPN token?")])
    drain_usage()  # the worker records in the background and drains when the request is done

    month = datetime.now(UTC).strftime("%Y-%m")
    expected = (1, completion.usage.prompt_tokens, completion.usage.completion_tokens, 0)
    for subject in ("workspace#T9", "agent#help", "user#u-rec", "group#sales", "group#all_users", "channel#C9",
                    f"model#{completion.model}"):
        assert counter(subject, month) == expected, subject
    assert [call.request_id for call in UsageCall.query("request#req-9")] == ["req-9"]


def test_a_slack_message_through_the_worker_is_counted_by_channel_workspace_and_model(fresh: dict[str, str],
                                                                                     env: Any) -> None:
    from insightmesh.agents.catalog import seed_agents
    from insightmesh.agents.registry import builtin_definitions
    from insightmesh.conversation import worker
    from insightmesh.directory.models import User
    from tests.integration.test_slack_access import CHANNEL, TEAM, message

    seed_agents(builtin_definitions())
    env.add_users({"id": "U0ALICE01", "name": "alice"})
    asked = message("U0ALICE01", "What does our VPN policy say about travel?", channel=CHANNEL)
    worker.process(asked)  # the assistant asks the (offline) model; recorded in the background, drained

    [call] = UsageCall.query(f"request#{asked.request_id}")
    assert (call.agent, call.channel, call.workspace) == ("assistant", CHANNEL, TEAM)
    user_id = str(call.user_id)
    assert User.get(user_id).slack_ids == {TEAM: "U0ALICE01"}  # the directory user id, as budgets read it
    month = datetime.now(UTC).strftime("%Y-%m")
    for subject in (f"channel#{CHANNEL}", f"workspace#{TEAM}", f"model#{call.model}", "agent#assistant",
                    f"user#{user_id}", "group#all_users"):
        assert counter(subject, month)[0] == 1, subject


def test_a_turn_that_summarises_the_thread_counts_the_answer_and_the_summary_alike(
        fresh: dict[str, str], env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from insightmesh.agents.catalog import seed_agents
    from insightmesh.agents.registry import builtin_definitions
    from insightmesh.conversation import threads, worker
    from insightmesh.conversation.memory import SUMMARY_PROMPT, WINDOW_MESSAGES
    from insightmesh.conversation.requests import thread_key
    from insightmesh.llm import offline
    from tests.integration.test_slack_access import CHANNEL, TEAM, message, new_ts

    seed_agents(builtin_definitions())
    env.add_users({"id": "U0ALICE01", "name": "alice"})
    parent = new_ts()
    key = thread_key(TEAM, CHANNEL, parent)
    threads.save_thread(threads.ThreadState(key=key, bot_replied=True, history=[  # a full window: the next turn folds
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n // 2} about VPN travel"}
        for n in range(WINDOW_MESSAGES)]))
    asked = message("U0ALICE01", "And what about hotel Wi-Fi?", channel=CHANNEL, thread_ts=parent)
    systems: list[str | None] = []
    complete = offline.OfflineClient.complete

    def seen(self: Any, messages: Any, **kwargs: Any) -> Any:
        systems.append(kwargs.get("system"))
        return complete(self, messages, **kwargs)

    monkeypatch.setattr(offline.OfflineClient, "complete", seen)
    worker.process(asked)

    assert [system == SUMMARY_PROMPT for system in systems] == [False, True]  # the answer, then the summary
    assert threads.load_thread(key).summary  # the summary was made and kept
    calls = sorted(UsageCall.query(f"request#{asked.request_id}"), key=lambda call: call.prompt_tokens)
    assert len(calls) == 2 and calls[0].user_id and calls[0].model  # the answer's and the summary's, drained
    assert {(c.agent, c.user_id, c.channel, c.workspace, tuple(c.groups or ()), c.model) for c in calls} == {
        ("assistant", calls[0].user_id, CHANNEL, TEAM, ("all_users",), calls[0].model)}
    month = datetime.now(UTC).strftime("%Y-%m")
    prompt = sum(int(c.prompt_tokens) for c in calls)
    for subject in (f"channel#{CHANNEL}", f"workspace#{TEAM}", f"model#{calls[0].model}", "agent#assistant",
                    f"user#{calls[0].user_id}", "group#all_users"):
        assert counter(subject, month)[:2] == (2, prompt), subject


# -- reports -----------------------------------------------------------------------------------------


def test_periods_end_with_the_current_one() -> None:
    today = date(2026, 12, 1)
    assert periods_ending("day", today, 3) == ["2026-11-29", "2026-11-30", "2026-12-01"]
    assert periods_ending("week", today, 2) == ["2026-W48", "2026-W49"]
    assert periods_ending("month", today, 3) == ["2026-10", "2026-11", "2026-12"]
    assert periods_ending("month", date(2027, 1, 15), 2) == ["2026-12", "2027-01"]
    assert periods_ending("week", date(2027, 1, 1), 1) == ["2026-W53"]  # ISO: the old year's week


def test_reports_by_user_group_and_model_per_week_and_month_never_scan(fresh: dict[str, str]) -> None:
    price("gpt-4o-mini", 0.15, 0.6)
    price("gpt-4o", 2.5, 10)
    record("u-1", Usage(1000, 100), NOV_30, groups=("sales",))
    record("u-1", Usage(2000, 300), DEC_1, groups=("sales",))
    record("u-2", Usage(100, 100), DEC_1, model="gpt-4o", groups=("support",))

    reports: list[Any] = []
    calls = DYNAMO_CALLS.operations_during(lambda: reports.append(
        usage_report("user", period="month", count=2, today=DEC_1.date())))
    report = reports[0]
    assert "Scan" not in calls and calls == ["BatchGetItem", "BatchGetItem"]  # the index items, the counters
    assert (report.start, report.end) == ("2026-11", "2026-12")
    assert [(group.key, [row.requests for row in group.periods]) for group in report.items] == [
        ("u-1", [1, 1]), ("u-2", [0, 1])]
    assert report.items[0].totals.cost_micros == 210 + 480
    assert report.items[1].totals.cost_micros == 100 * 2.5 + 100 * 10
    assert report.totals.requests == 3 and report.totals.cost_micros == 690 + 1250
    assert report.totals.cost_usd == pytest.approx(0.00194)

    weekly = usage_report("group", period="week", count=2, today=DEC_1.date())
    assert [(group.key, group.periods[-1].period, group.periods[-1].tokens) for group in weekly.items] == [
        ("sales", "2026-W49", 3400), ("support", "2026-W49", 200)]
    assert [row.tokens for row in weekly.items[0].periods] == [0, 3400]  # W48: nothing

    by_model = usage_report("model", period="day", count=2, today=DEC_1.date())
    assert {group.key: [row.cost_micros for row in group.periods] for group in by_model.items} == {
        "gpt-4o-mini": [210, 480], "gpt-4o": [0, 1250]}

    mine: list[Any] = []
    calls = DYNAMO_CALLS.operations_during(lambda: mine.append(
        usage_of_user("u-1", period="week", count=3, today=DEC_1.date())))
    assert calls == ["BatchGetItem"]
    assert [(row.period, row.requests, row.cost_micros) for row in mine[0].periods] == [
        ("2026-W47", 0, 0), ("2026-W48", 0, 0), ("2026-W49", 2, 690)]


# -- the API ---------------------------------------------------------------------------------------------


def test_the_usage_api_groups_by_any_dimension_and_period(fresh: dict[str, str], api: Api) -> None:
    now = datetime.now(UTC)
    record("u-api", Usage(10, 5), now, model="gpt-4o-mini", groups=("sales",))
    record("u-api", Usage(1, 1), now, model="gpt-4o", channel="C7")

    answers: list[Any] = []
    calls = DYNAMO_CALLS.operations_during(lambda: answers.append(
        api.ok("GET", "/api/usage", query={"group_by": "channel", "period": "month", "periods": "3"})))
    body = answers[0]
    assert body["group_by"] == "channel" and body["period"] == "month" and body["end"] == now.strftime("%Y-%m")
    assert {group["key"]: group["totals"]["tokens"] for group in body["items"]} == {"C1": 15, "C7": 2}
    assert all(len(group["periods"]) == 3 for group in body["items"])
    assert {"cost_micros", "cost_usd", "requests", "tokens"} <= set(body["totals"])
    assert "Scan" not in calls
    by_agent = api.ok("GET", "/api/usage", query={"period": "week", "periods": "1"})
    assert next(group for group in by_agent["items"] if group["key"] == "help")["totals"]["requests"] == 2
    for bad in ({"period": "year"}, {"periods": "27"}, {"periods": "0"}, {"group_by": "team"}, {"days": "32"}):
        assert_envelope(api.call("GET", "/api/usage", query=bad), 422, "validation_error")
    assert api.call("GET", "/api/usage", as_="member").status == 403


def test_me_usage_is_the_callers_own_and_never_scans(fresh: dict[str, str], api: Api) -> None:
    now = datetime.now(UTC)
    price("gpt-4o-mini", 1, 1)
    record(MEMBER_ID, Usage(100, 20), now)
    record(ADMIN_ID, Usage(5000, 5000), now)

    answers: list[Any] = []
    calls = DYNAMO_CALLS.operations_during(lambda: answers.append(
        api.ok("GET", "/api/me/usage", as_="member", query={"period": "month", "periods": "2"})))
    mine = answers[0]
    assert mine["user_id"] == MEMBER_ID and mine["period"] == "month"
    assert mine["periods"][-1] == {"period": now.strftime("%Y-%m"), "requests": 1, "prompt_tokens": 100,
                                   "completion_tokens": 20, "tokens": 120, "cost_micros": 120, "cost_usd": 0.00012,
                                   "feedback_up": 0, "feedback_down": 0}
    assert mine["totals"]["tokens"] == 120
    assert "Scan" not in calls and calls.count("BatchGetItem") == 1
    daily = api.ok("GET", "/api/me/usage", as_="member")
    assert len(daily["periods"]) == 7 and daily["totals"]["requests"] == 1
    assert_envelope(api.call("GET", "/api/me/usage", as_="member", query={"days": "0"}), 422, "validation_error")
    assert api.call("GET", "/api/me/usage", as_=None).status == 401


def test_model_prices_are_set_listed_and_removed_by_admins_with_an_audit_trail(
        fresh: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_FALLBACK_MODEL", "cheap-model")
    pricing_settings.cache_clear()
    record("u-1", Usage(1, 1), datetime.now(UTC), model="used-model")

    listed = {item["model"]: item for item in api.ok("GET", "/api/models")["items"]}
    configured = next(name for name, item in listed.items() if "configured" in item["sources"])
    assert listed[configured]["input_usd_per_million"] is None  # listed without a price
    assert listed["cheap-model"]["sources"] == ["fallback"]
    assert listed["used-model"]["sources"] == ["used"]

    created = api.ok("PUT", "/api/models/gpt-4o-mini", 201,
                     body={"input_usd_per_million": 0.15, "output_usd_per_million": 0.6})
    assert created["input_usd_per_million"] == 0.15 and created["sources"] == ["priced"]
    assert cost_micros("gpt-4o-mini", Usage(1000, 100)) == 210  # this container sees it at once
    changed = api.ok("PUT", "/api/models/gpt-4o-mini", body={"input_usd_per_million": 0.3,
                                                             "output_usd_per_million": 1.2})
    assert changed["output_usd_per_million"] == 1.2
    assert cost_micros("gpt-4o-mini", Usage(1000, 100)) == 420
    listed = {item["model"]: item for item in api.ok("GET", "/api/models")["items"]}
    assert listed["gpt-4o-mini"]["input_usd_per_million"] == 0.3 and listed["gpt-4o-mini"]["updated_by"]

    for bad in ({"input_usd_per_million": -1, "output_usd_per_million": 1},
                {"input_usd_per_million": 1, "output_usd_per_million": 10_001},
                {"input_usd_per_million": 1},
                {"input_usd_per_million": 1, "output_usd_per_million": 1, "currency": "EUR"},
                {"input_usd_per_million": "lots", "output_usd_per_million": 1}):
        assert_envelope(api.call("PUT", "/api/models/gpt-4o-mini", body=bad), 422, "validation_error")
    assert api.call("PUT", "/api/models/bad name!", body={"input_usd_per_million": 1,
                                                          "output_usd_per_million": 1}).status in (404, 422)
    assert api.call("PUT", "/api/models/gpt-4o-mini", as_="member",
                    body={"input_usd_per_million": 0, "output_usd_per_million": 0}).status == 403

    removed = api.ok("DELETE", "/api/models/gpt-4o-mini")
    assert removed["input_usd_per_million"] is None
    assert cost_micros("gpt-4o-mini", Usage(1000, 100)) == 0  # the default again
    assert_envelope(api.call("DELETE", "/api/models/gpt-4o-mini"), 404, "not_found")

    entries = audit_entries("model:gpt-4o-mini")
    allowed = [(entry.action, entry.outcome) for entry in reversed(entries) if entry.outcome == "allowed"]
    assert allowed == [("model.price.put", "allowed"), ("model.price.put", "allowed"),
                       ("model.price.delete", "allowed")]
    latest_put = next(entry for entry in entries if entry.action == "model.price.put" and entry.outcome == "allowed")
    assert latest_put.before is not None and latest_put.after is not None
    assert any(entry.outcome == "denied" and entry.action == "model.price.put" for entry in entries)
    assert api.call("GET", "/api/models", as_="member").status == 403
