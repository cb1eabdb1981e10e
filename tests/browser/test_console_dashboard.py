"""The Dashboard in a real Chromium, through `insightmesh dev` (issue 13's scenario 5): every
dependency `ok`, every dead-letter queue at 0, a question and its 👍 in the usage chart and table
with its cost at a model price set through the API, a budget set through the API shown over its
limit and another ok, and the page fits 390 px."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.browser.conftest import ADMIN, NARROW, Tab
from tests.e2e.dev_server import CLI, ROOT, _env
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def ask_and_vote(tab: Tab) -> None:
    """One question through `insightmesh chat` (signed as Slack would send it), and a 👍 on the answer."""
    # The sandbox is on the dev port + 1 unless that was taken: the dev server's log names it.
    found = re.search(r"Slack Web API sandbox \(a development stand-in, not Slack\) on (http://\S+)",
                      tab.server.output())
    assert found, tab.server.output()
    result = subprocess.run([*CLI, "chat", "--port", str(tab.server.port), "--sandbox-url", found.group(1),
                             "--user", "UDASHBOARD1", "--settle", "1", "--timeout", "120"], cwd=ROOT, env=_env(),
                            input="hello\n/click feedback_up\n/quit\n", capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def api(tab: Tab, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """An /api call with the browser's own session (and its CSRF token, as the console's pages send it)."""
    csrf = tab.page.request.get(tab.url("/auth/session")).json()["csrf_token"]
    answer = tab.page.request.fetch(tab.url(path), method=method, data=body, headers={"X-CSRF-Token": csrf})
    assert answer.ok, (method, path, answer.status, answer.text())
    return answer.json()


def usage_totals(tab: Tab) -> list[str]:
    """The usage table's "All agents" row: requests, tokens, cost, 👍, 👎 (reloading the page)."""
    tab.page.reload()
    footer = tab.page.get_by_role("region", name="Usage, last 7 days").locator("tfoot td")
    return footer.all_inner_texts() if footer.count() else []


def test_scenario_5_the_dashboard_shows_every_dependency_ok_and_dlq_0(tab: Tab) -> None:
    tab.sign_in(ADMIN)
    # The configured model gets a price before the question, so its cost is counted: $0.01 a token.
    model = next(item["model"] for item in api(tab, "GET", "/api/models")["items"] if "configured" in item["sources"])
    api(tab, "PUT", f"/api/models/{model}", {"input_usd_per_million": 10_000, "output_usd_per_million": 10_000})
    ask_and_vote(tab)
    tab.page.get_by_role("link", name="Dashboard").click()
    tab.page.wait_for_url(tab.url("/console/dashboard"))
    assert tab.page.get_by_role("heading", name="Dashboard", exact=True).is_visible()
    assert tab.page.get_by_role("link", name="Dashboard").get_attribute("aria-current") == "page"

    dependencies = tab.page.get_by_role("region", name="Dependencies")
    dependencies.get_by_text("Each check").click()  # all ok: the checks are folded
    names = dependencies.locator("tbody th").all_inner_texts()
    statuses = dependencies.locator("tbody td:nth-child(2)").all_inner_texts()
    assert "USERS_TABLE" in names and "CONVERSATION_DLQ_URL" in names and "JOB_QUEUE_URL" in names
    assert statuses and set(statuses) == {"ok"}, dict(zip(names, statuses, strict=True))
    overall = dependencies.get_by_text("Overall:").inner_text()
    assert overall == f"Overall: ok — {len(names)} of {len(names)} checks ok", overall

    queues = tab.page.get_by_role("region", name="Queues")
    dead_letter_rows = queues.locator("tbody tr", has=tab.page.locator(".badge", has_text="DLQ"))
    assert dead_letter_rows.count() == 3  # the conversation, job and usage DLQs
    for index in range(dead_letter_rows.count()):
        assert dead_letter_rows.nth(index).locator("td").first.inner_text() == "0"
    assert queues.locator("tbody tr").count() == 6  # each with its DLQ

    # The question and its vote reach the counters through the queue and the worker: bounded wait.
    wait_for(lambda: (totals := usage_totals(tab)) and int(totals[0]) >= 1 and int(totals[3]) >= 1, timeout=120,
             interval=2, what="the question and its vote on the dashboard")
    usage = tab.page.get_by_role("region", name="Usage, last 7 days")
    chart = usage.get_by_role("img", name="Tokens per agent over the last 7 days (figures in the table below)")
    assert chart.is_visible()
    assert usage.locator(".chart-bar").count() >= 1
    tokens, cost = usage_totals(tab)[1:3]
    assert cost == f"${int(tokens.replace(',', '')) / 100:,.2f}" and cost != "$0.00", (tokens, cost)
    assert usage.get_by_role("columnheader", name="Cost").is_visible()

    # Budgets through the API: the agent that answered, over a $0.01 limit; another agent, well under its own.
    budgets = tab.page.get_by_role("region", name="Budgets")
    assert budgets.get_by_text("No budget is set.").is_visible()
    answered = usage.locator("tbody th").first.inner_text()
    other = next(item["key"] for item in api(tab, "GET", "/api/usage?days=7&group_by=agent")["items"]
                 if item["key"] != answered)
    api(tab, "PUT", f"/api/budgets/agent/{answered}", {"limit_usd": 0.01, "period": "month", "warn_at": 0.5})
    api(tab, "PUT", f"/api/budgets/agent/{other}", {"limit_usd": 25, "period": "day"})
    tab.page.reload()
    rows = budgets.locator("tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("th").inner_text() == f"agent {answered}"
    assert rows.nth(0).locator("td").all_inner_texts()[:5] == [
        "over limit", f"{int(tokens.replace(',', '')) * 100}%", cost, "$0.01", "month"]
    assert rows.nth(1).locator("td").all_inner_texts()[:5] == ["ok", "0%", "$0.00", "$25.00", "day"]
    for region in ("Task runs", "Usage, last 7 days", "Budgets", "Knowledge base"):
        section = tab.page.get_by_role("region", name=region)
        assert section.is_visible() and section.get_by_role("alert").count() == 0, region
    tab.shot("dashboard")

    tab.page.set_viewport_size(NARROW)
    tab.page.reload()
    assert tab.page.get_by_role("heading", name="Dashboard", exact=True).is_visible()
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll inside .scroll
    tab.shot("dashboard-390")
