"""The Dashboard in a real Chromium, through `insightmesh dev` (issue 13's scenario 5): every
dependency `ok`, every dead-letter queue at 0, a question and its 👍 in the usage chart and table,
and the page fits 390 px."""

from __future__ import annotations

import re
import subprocess

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


def usage_totals(tab: Tab) -> list[str]:
    """The usage table's "All agents" row: requests, tokens, 👍, 👎 (reloading the page)."""
    tab.page.reload()
    footer = tab.page.get_by_role("region", name="Usage, last 7 days").locator("tfoot td")
    return footer.all_inner_texts() if footer.count() else []


def test_scenario_5_the_dashboard_shows_every_dependency_ok_and_dlq_0(tab: Tab) -> None:
    ask_and_vote(tab)
    tab.sign_in(ADMIN)
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
    wait_for(lambda: (totals := usage_totals(tab)) and int(totals[0]) >= 1 and int(totals[2]) >= 1, timeout=120,
             interval=2, what="the question and its vote on the dashboard")
    usage = tab.page.get_by_role("region", name="Usage, last 7 days")
    chart = usage.get_by_role("img", name="Tokens per agent over the last 7 days (figures in the table below)")
    assert chart.is_visible()
    assert usage.locator(".chart-bar").count() >= 1
    for region in ("Task runs", "Usage, last 7 days", "Knowledge base"):
        section = tab.page.get_by_role("region", name=region)
        assert section.is_visible() and section.get_by_role("alert").count() == 0, region
    tab.shot("dashboard")

    tab.page.set_viewport_size(NARROW)
    tab.page.reload()
    assert tab.page.get_by_role("heading", name="Dashboard", exact=True).is_visible()
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll inside .scroll
    tab.shot("dashboard-390")
