"""The console's Dashboard in-process (moto), and the admin routes it reads: readiness, queues,
task runs, usage and feedback per agent, the knowledge base — each section failing on its own."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.integration.conftest import DYNAMO_CALLS
from tests.integration.test_console import ADMIN_ID, MEMBER_ID, Browser, sign_in
from tests.integration.test_console import console as console  # the fixture, shared by name
from tests.integration.test_slack_access import env as env  # the Slack sandbox fixture, shared by name

QUEUES = {"CONVERSATION_QUEUE_URL": "dash-conversations.fifo", "CONVERSATION_DLQ_URL": "dash-conversations-dlq.fifo",
          "JOB_QUEUE_URL": "dash-jobs", "JOB_DLQ_URL": "dash-jobs-dlq"}


@pytest.fixture
def dashboard(console: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The console with the template's four queues in moto and the readiness cache empty. The checks
    get the longest timeout the settings allow: on a loaded machine, 2 s for ~20 moto calls in 8
    threads is not always enough, and a check that times out is down."""
    from insightmesh.config import get_settings
    from insightmesh.health.checks import clear_cache

    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "10")
    get_settings.cache_clear()
    sqs = boto3.client("sqs", region_name="us-east-1")
    urls = {}
    for variable, name in QUEUES.items():
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        urls[variable] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        monkeypatch.setenv(variable, urls[variable])
    clear_cache()
    yield urls
    clear_cache()
    get_settings.cache_clear()


def admin_browser(console: ModuleType) -> Browser:
    return sign_in(console, ADMIN_ID)


def section(html: str, title_id: str) -> str:
    """The HTML of one dashboard section (from its heading to the section's end)."""
    start = html.index(f'id="{title_id}"')
    return html[start:html.index("</section>", start)]


def save_run(run_id: str, status: str, *, minutes_ago: int, error: str | None = None) -> None:
    from insightmesh.jobs.models import RunError, TaskRun, created_sort

    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    TaskRun(run_id, job_id="job-dash", job_type="slack_user_sync", created_sort=created_sort(created, run_id),
            status=status, trigger="manual", created_at=created, started_at=created,
            error=RunError(type="SlackApiError", message=error) if error else None).save()


def save_document(document_id: str, status: str, chunks: int, error: str | None = None) -> None:
    from insightmesh.knowledge.models import KnowledgeDocument

    KnowledgeDocument(document_id, title=f"Doc {document_id}", source="local:/docs", mime_type="text/plain",
                      acl=["anyone"], status=status, chunk_count=chunks, error=error,
                      updated_at=datetime.now(UTC)).save()


def record(agent: str, user: str, prompt: int, completion: int, *, days_ago: int = 0) -> None:
    from insightmesh.llm.base import Usage
    from insightmesh.llm.usage import record_usage

    record_usage(agent=agent, user_id=user, usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
                 when=datetime.now(UTC) - timedelta(days=days_ago))


# -- the page ---------------------------------------------------------------------------------------


def test_the_dashboard_shows_every_section(dashboard: dict[str, str], console: ModuleType) -> None:
    from insightmesh.llm.usage import record_feedback

    boto3.client("sqs", region_name="us-east-1").send_message(QueueUrl=dashboard["JOB_DLQ_URL"], MessageBody="{}")
    save_run("run-ok", "succeeded", minutes_ago=1)
    save_run("run-failed", "failed", minutes_ago=30, error="channel_not_found")
    save_run("run-going", "running", minutes_ago=5)
    record("help", "U1", 100, 20)
    record("help", "U2", 10, 5, days_ago=3)
    record("meddic", "U1", 1000, 500, days_ago=6)
    record("meddic", "U1", 999, 999, days_ago=7)  # outside the 7 days
    record_feedback(agent="help", vote="up")
    record_feedback(agent="help", vote="down")
    record_feedback(agent="meddic", vote="up")
    save_document("a", "indexed", 4)
    save_document("b", "indexed", 6)
    save_document("c", "failed", 0, error="the PDF is encrypted")

    page = admin_browser(console).request("GET", "/console/dashboard")

    assert page.status == 200
    assert 'href="/console/dashboard" aria-current="page"' in page.body
    ready = section(page.body, "ready-title")
    for variable in ("USERS_TABLE", "USAGE_TABLE", "KNOWLEDGE_DOCUMENTS_TABLE", "CONVERSATION_QUEUE_URL"):
        assert f"<code>{variable}</code>" in ready
    assert '<span class="dep ok">ok</span>' in ready
    assert '<span class="dep degraded">degraded</span>' in ready  # the job DLQ holds a message
    queues = section(page.body, "queues-title")
    assert re.search(r'<tr class="dlq-full">\s*<th scope="row">Job <span class="badge">DLQ</span>\s*'
                     r'<span class="resource">dash-jobs-dlq</span></th>\s*<td class="num">1</td>', queues)
    assert "dash-conversations-dlq.fifo" in queues and "dash-conversations.fifo" in queues
    runs = section(page.body, "runs-title")
    order = [runs.index(f'href="/console/runs/{run_id}"') for run_id in ("run-going", "run-failed", "run-ok")]
    assert order == sorted(order)  # running and failed first, the latest others after
    assert "SlackApiError: channel_not_found" in runs and 'href="/console/jobs"' in runs
    usage = section(page.body, "usage-title")
    assert '<svg class="usage-chart"' in usage and 'role="img"' in usage and "<title id=" in usage
    assert "1,500 tok · 1 req" in usage and "135 tok · 2 req" in usage
    rows = re.findall(r'<tr><th scope="row">(\w+)</th><td class="num">(\d+)</td>\s*<td class="num">([\d,]+)</td>'
                      r'<td class="num">([$\d.,]+)</td>\s*<td class="num">(\d+)</td><td class="num">(\d+)</td></tr>',
                      usage)
    assert rows == [("help", "2", "135", "$0.00", "1", "1"), ("meddic", "1", "1,500", "$0.00", "1", "0")]  # no model
    assert re.search(r'All agents</th><td class="num">3</td>\s*<td class="num">1,635</td><td class="num">\$0.00</td>',
                     usage)
    knowledge = section(page.body, "knowledge-title")
    assert re.search(r"<dt>Documents</dt><dd>3</dd>.*<dt>Chunks</dt><dd>10</dd>.*<dt>Failures</dt>"
                     r'<dd class="dep down">1</dd>', knowledge, re.S)
    assert "Doc c" in knowledge and "the PDF is encrypted" in knowledge
    assert 'href="/console/knowledge?status=failed"' in knowledge
    assert 'role="alert"' not in page.body


def test_the_cost_per_agent_the_unpriced_models_and_each_budgets_state(
    dashboard: dict[str, str], console: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from insightmesh.budgets.models import BUDGET_SUBJECT, BudgetItem, budget_key
    from insightmesh.llm.base import Usage
    from insightmesh.llm.pricing import PRICES_SUBJECT, ModelPrice, forget_prices, pricing_settings
    from insightmesh.llm.usage import record_usage

    for variable in ("LLM_DEFAULT_INPUT_USD_PER_MILLION", "LLM_DEFAULT_OUTPUT_USD_PER_MILLION"):
        monkeypatch.delenv(variable, raising=False)
    pricing_settings.cache_clear()
    ModelPrice(PRICES_SUBJECT, "gpt-4o-mini", input_usd_per_million=0.15, output_usd_per_million=0.6).save()
    forget_prices()
    million = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)  # $0.75 at that price
    record_usage(agent="help", user_id="U1", usage=million, model="gpt-4o-mini")
    record_usage(agent="meddic", user_id="U1", usage=million, model="gpt-4o-mini")
    record_usage(agent="meddic", user_id="U2", usage=Usage(prompt_tokens=500, completion_tokens=20),
                 model="local-llm")  # no price: the default, 0 here
    for scope, value, limit in (("agent", "help", 1.0), ("agent", "meddic", 0.5), ("user", "U2", 20.0)):
        BudgetItem(BUDGET_SUBJECT, budget_key(scope, value), scope=scope, value=value,  # type: ignore[arg-type]
                   limit_micros=int(limit * 1_000_000), period_kind="month", warn_at=0.5, version=1).save()
    browser = admin_browser(console)
    api_calls: list[str] = []
    real_call = browser.handler.app.api.call

    def counted(method: str, path: str, **kwargs: Any) -> Any:
        api_calls.append(path)
        return real_call(method, path, **kwargs)

    monkeypatch.setattr(browser.handler.app.api, "call", counted)

    pages: list[Any] = []
    calls = DYNAMO_CALLS.operations_during(lambda: pages.append(browser.request("GET", "/console/dashboard")))
    page = pages[0]
    forget_prices()
    # The page's API calls: one each for the budgets and (with usage shown) the model prices, beyond
    # the session, readiness, usage, queues, the four task-run lists and the knowledge summary.
    assert sorted(api_calls) == sorted(["/auth/session", "/api/readiness", "/api/usage", "/api/models",
                                        "/api/queues", *["/api/task-runs"] * 4, "/api/budgets",
                                        "/api/knowledge/summary"])

    assert page.status == 200
    usage = section(page.body, "usage-title")
    rows = re.findall(r'<tr><th scope="row">(\w+)</th>.*?<td class="num">([$\d.,]+)</td>\s*<td class="num">\d+</td>',
                      usage, re.S)
    assert rows == [("meddic", "$0.75"), ("help", "$0.75")]
    assert re.search(r'All agents</th>.*?<td class="num">\$1.50</td>', usage, re.S)
    assert "<strong>Unpriced:</strong> <code>local-llm</code>" in usage and "gpt-4o-mini</code>" not in usage
    budgets = section(page.body, "budgets-title")
    found = re.findall(r'<tr class="budget-(\w+)"><th scope="row">(\w+) <code>(\w+)</code></th>.*?'
                       r'<td class="num">(\d+)%</td><td class="num">([$\d.,]+)</td><td class="num">([$\d.,]+)</td>\s*'
                       r'<td>month</td>', budgets, re.S)
    assert found == [("over", "agent", "meddic", "150", "$0.75", "$0.50"),
                     ("warning", "agent", "help", "75", "$0.75", "$1.00"),
                     ("ok", "user", "U2", "0", "$0.00", "$20.00")]
    assert '<span class="budget-state over">over limit</span>' in budgets
    assert '<span class="budget-state warning">warning</span> <span class="muted">(past 50%)</span>' in budgets
    assert "No budget is set." not in budgets and 'role="alert"' not in page.body
    assert "Scan" not in calls


def test_an_empty_stack_shows_empty_states(dashboard: dict[str, str], console: ModuleType) -> None:
    page = admin_browser(console).request("GET", "/console/dashboard")
    assert page.status == 200
    assert "No job has run yet." in page.body
    assert "No agent was used in the last 7 days." in page.body and "<svg" not in page.body
    assert "The knowledge base is empty" in page.body
    assert "<dt>Failures</dt><dd>0</dd>" in page.body
    budgets = section(page.body, "budgets-title")
    assert "No budget is set." in budgets and "<code>PUT /api/budgets/{scope}/{value}</code>" in budgets
    assert "Unpriced" not in page.body  # no usage: the model prices are not read
    assert 'role="alert"' not in page.body


def test_one_failing_source_shows_its_error_in_place_and_the_rest_render(
    dashboard: dict[str, str], console: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    record("help", "U1", 100, 20)
    boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=os.environ["USAGE_TABLE"])
    page = admin_browser(console).request("GET", "/console/dashboard")
    assert page.status == 200
    usage = section(page.body, "usage-title")
    assert 'role="alert"' in usage and "Could not read the usage:" in usage and "<svg" not in usage
    assert "Could not read the budgets:" in section(page.body, "budgets-title")  # kept in the same table
    assert page.body.count('role="alert"') == 2  # only those sections
    ready = section(page.body, "ready-title")
    assert re.search(r'<code>USAGE_TABLE</code></th>\s*<td><span class="dep down">down</span>', ready)
    assert ready.index("USAGE_TABLE") < ready.index("USERS_TABLE") and "<details class=\"checks\" open>" in ready
    assert "dash-jobs-dlq" in section(page.body, "queues-title")
    assert "No job has run yet." in section(page.body, "runs-title")

    from insightmesh.health.checks import clear_cache

    clear_cache()
    monkeypatch.setenv("JOB_DLQ_URL", dashboard["JOB_DLQ_URL"] + "-gone")  # a queue that cannot be read
    queues = section(admin_browser(console).request("GET", "/console/dashboard").body, "queues-title")
    assert '<span class="dep down">unreadable</span> AWS.SimpleQueueService.NonExistentQueue' in queues \
        or '<span class="dep down">unreadable</span> QueueDoesNotExist' in queues
    assert re.search(r'dash-jobs</span></th>\s*<td class="num">0</td>', queues)  # the other queues still shown


def test_the_task_runs_section_fails_in_place(dashboard: dict[str, str], console: ModuleType,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=os.environ["TASK_RUNS_TABLE"])
    boto3.client("dynamodb", region_name="us-east-1").delete_table(
        TableName=os.environ["KNOWLEDGE_DOCUMENTS_TABLE"])
    page = admin_browser(console).request("GET", "/console/dashboard")
    assert page.status == 200
    assert "Could not read the task runs:" in section(page.body, "runs-title")
    assert "Could not read the knowledge base:" in section(page.body, "knowledge-title")
    assert page.body.count('role="alert"') == 2
    assert "No agent was used in the last 7 days." in page.body


def test_a_member_gets_the_403_page_and_no_dashboard_link(dashboard: dict[str, str],
                                                          console: ModuleType) -> None:
    member = sign_in(console, MEMBER_ID)
    assert 'href="/console/dashboard"' not in member.request("GET", "/console").body
    refused = member.request("GET", "/console/dashboard")
    assert refused.status == 403 and "Not allowed" in refused.body and "Dependencies" not in refused.body
    assert Browser(console).request("GET", "/console/dashboard").status == 401


# -- the API routes it reads ------------------------------------------------------------------------


def api(browser: Browser, path: str, **query: str) -> Any:
    """Call an /api route as the signed-in browser, through the console's own in-process API."""
    from insightmesh.console.api import Caller

    app = browser.handler.app
    caller = Caller(cookie="; ".join(f"{k}={v}" for k, v in browser.cookies.items()), source_ip="203.0.113.20",
                    user_agent="pytest", request_id="dash-test")
    return app.api.call("GET", path, caller=caller, context=None, query=query)


def test_usage_is_per_agent_and_day_with_totals_and_never_scanned(dashboard: dict[str, str],
                                                                   console: ModuleType) -> None:
    from insightmesh.llm.usage import record_feedback

    browser = admin_browser(console)
    record("help", "U1", 100, 20)
    record("help", "U1", 1, 2, days_ago=1)
    record_feedback(agent="help", vote="down", when=datetime.now(UTC) - timedelta(days=1))
    answers = []
    calls = DYNAMO_CALLS.operations_during(lambda: answers.append(api(browser, "/api/usage", days="3",
                                                                      group_by="agent")))
    answer = answers[0]
    assert answer.status == 200, answer.body
    report = answer.body
    today = datetime.now(UTC).date()
    assert report["group_by"] == "agent" and report["period"] == "day"
    assert report["start"] == (today - timedelta(days=2)).isoformat() and report["end"] == today.isoformat()
    help_ = next(group for group in report["items"] if group["key"] == "help")
    assert report["items"][0]["key"] == "help"  # most requests first
    assert [(day["requests"], day["tokens"], day["feedback_down"]) for day in help_["periods"]] == [
        (0, 0, 0), (1, 3, 1), (1, 120, 0)]
    assert help_["totals"] == {"requests": 2, "prompt_tokens": 101, "completion_tokens": 22, "tokens": 123,
                               "cost_micros": 0, "cost_usd": 0.0, "feedback_up": 0, "feedback_down": 1}
    assert report["totals"]["tokens"] == 123
    assert {group["key"] for group in report["items"]} >= {"help", "meddic"}  # every agent, used or not
    assert "Scan" not in calls and calls.count("BatchGetItem") == 3  # the index, the usage and the feedback counters
    for bad in ({"days": "0"}, {"days": "32"}, {"group_by": "team"}, {"period": "year"}):
        assert api(browser, "/api/usage", **bad).status == 422


def test_queues_readiness_and_knowledge_summary_are_admin_only(dashboard: dict[str, str],
                                                                console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry

    save_document("a", "indexed", 3)
    save_document("b", "failed", 2, error="too big")
    admin, member = admin_browser(console), sign_in(console, MEMBER_ID)
    queues = api(admin, "/api/queues").body["items"]
    assert [(queue["name"], queue["kind"], queue["visible"]) for queue in queues] == [
        ("CONVERSATION_DLQ_URL", "dlq", 0), ("CONVERSATION_QUEUE_URL", "queue", 0), ("JOB_DLQ_URL", "dlq", 0),
        ("JOB_QUEUE_URL", "queue", 0)]
    readiness = api(admin, "/api/readiness").body
    assert readiness["status"] == "ok"
    assert {"name", "kind", "resource", "status", "detail"} <= set(readiness["checks"][0])
    summaries: list[Any] = []
    calls = DYNAMO_CALLS.during(lambda: summaries.append(api(admin, "/api/knowledge/summary").body))
    assert summaries == [{"documents": 2, "indexed": 1, "failed": 1, "chunks": 5, "complete": True}]
    knowledge_table = os.environ["KNOWLEDGE_DOCUMENTS_TABLE"]
    assert [call for call in calls if knowledge_table in call] == [f"Query:{knowledge_table}"] * 2  # one per status
    for path in ("/api/queues", "/api/readiness", "/api/usage", "/api/knowledge/summary"):
        refused = api(member, path)
        assert refused.status == 403, path
    denied = [entry.action for entry in AuditEntry.by_day.query(datetime.now(UTC).strftime("%Y-%m-%d"))
              if entry.outcome == "denied"]
    assert {"queue.read", "health.read", "usage.read", "knowledge.read"} <= set(denied)


# -- feedback is counted per agent and day -------------------------------------------------------------


def test_a_vote_on_a_reply_is_counted_for_the_agent_that_answered_once(dashboard: dict[str, str]) -> None:
    from insightmesh.conversation.feedback import record_vote
    from insightmesh.conversation.models import FeedbackRecord, RequestRecord, request_sk, thread_pk
    from insightmesh.conversation.requests import ConversationRequest, RequestKind, thread_key
    from insightmesh.llm.usage import FeedbackCounts, feedback_subject, period_of

    key = thread_key("T1", "C1", "100.1")
    RequestRecord(thread_pk(key), request_sk("req-1"), status="answered", agent="meddic").save()

    def vote(action: str, user: str = "U1", value: str = "req-1") -> None:
        record_vote(ConversationRequest(kind=RequestKind.ACTION, request_id=f"act-{action}-{user}", team_id="T1",
                                        channel_id="C1", user_id=user, ts="100.2", thread_ts="100.1",
                                        action_id=action, action_value=value))

    def counts() -> tuple[int, int]:
        try:
            found = FeedbackCounts.get(feedback_subject("meddic"), period_of())
        except FeedbackCounts.DoesNotExist:
            return 0, 0
        return int(found.up), int(found.down)

    calls = DYNAMO_CALLS.operations_during(lambda: vote("feedback_up"))
    assert calls == ["GetItem", "GetItem", "PutItem", "UpdateItem"]  # the earlier vote, the agent; store, count
    assert counts() == (1, 0)
    vote("feedback_up")  # the same click again counts nothing
    assert counts() == (1, 0)
    vote("feedback_down")  # a changed vote moves
    assert counts() == (0, 1)
    vote("feedback_up", user="U2")
    assert counts() == (1, 1)
    assert FeedbackRecord.get("reply#T1#C1#100.2", "user#U1").agent == "meddic"
    vote("feedback_up", user="U3", value="req-unknown")  # stored, but no agent to count it for
    assert FeedbackRecord.get("reply#T1#C1#100.2", "user#U3").vote == "up" and counts() == (1, 1)


# -- the functions that serve these routes may read what they read --------------------------------------


@pytest.mark.parametrize("function", ["AdminApiFunction", "ConsoleFunction"])
def test_the_functions_serving_the_dashboard_routes_may_read_their_sources(function: str) -> None:
    from insightmesh_local.template import load_template
    from tests.integration.conftest import ROOT

    template = load_template(ROOT / "infra" / "template.yaml")
    policies = template.resources[function]["Properties"]["Policies"]
    allowed: dict[str, set[str]] = {}
    for policy in policies:
        for statement in policy.get("Statement", []):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in statement["Action"]:
                allowed.setdefault(action, set()).update(entry["Fn::GetAtt"][0] for entry in resources
                                                         if "Fn::GetAtt" in entry)
    assert allowed["dynamodb:DescribeTable"] == set(template.of_type("AWS::DynamoDB::Table"))
    assert allowed["sqs:GetQueueAttributes"] == set(template.of_type("AWS::SQS::Queue"))
    readable = {policy[kind]["TableName"]["Ref"] for policy in policies
                for kind in ("DynamoDBReadPolicy", "DynamoDBCrudPolicy") if kind in policy}
    assert {"UsageTable", "KnowledgeDocumentsTable", "AgentsTable"} <= readable


def test_the_worker_counts_a_click_on_a_reply_for_its_agent(env: Any) -> None:
    from insightmesh.agents.catalog import seed_agents
    from insightmesh.agents.registry import builtin_definitions
    from insightmesh.conversation import worker
    from insightmesh.conversation.requests import ConversationRequest, RequestKind
    from insightmesh.llm.usage import FeedbackCounts, feedback_subject, period_of
    from tests.integration.test_slack_access import CHANNEL, TEAM, message, new_ts

    seed_agents(builtin_definitions())
    env.add_users({"id": "U0ALICE01", "name": "alice"})
    asked = message("U0ALICE01", "meddic Call with Acme: Dana the CFO owns the budget.", channel=CHANNEL)
    worker.process(asked)
    worker.process(ConversationRequest(kind=RequestKind.ACTION, request_id=f"act:alice:{new_ts()}", team_id=TEAM,
                                       channel_id=CHANNEL, user_id="U0ALICE01", ts=new_ts(),
                                       thread_ts=asked.thread_ts, action_id="feedback_down",
                                       action_value=asked.request_id))
    counted = FeedbackCounts.get(feedback_subject("meddic"), period_of())
    assert (int(counted.up), int(counted.down)) == (0, 1)
