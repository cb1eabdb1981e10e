"""The console's Jobs pages in Chromium through ``insightmesh dev`` (issue 13, scenario 4): an admin
creates a ``slack_user_sync`` job from the form generated from its parameter schema, previews its
schedule, runs it now and watches the run page (which refreshes itself) reach ``succeeded``; a
bad parameter is the API's 422 in place; pause and resume; the pages fit 390 px."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import ADMIN, NARROW, WIDE, Tab
from tests.e2e.dev_server import DevServer
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(600)
DOMAIN = "consolejobs.example"  # this module's people in the Slack sandbox; no other module uses it
JOB = "Console jobs: Slack directory"
ENDED = ("succeeded", "failed", "cancelled", "timed_out", "skipped")
RUN_WAIT = 120  # seconds for the run to end (job_runner in-process, on a loaded machine)


def sandbox_people(server: DevServer, count: int) -> None:
    """People in ``insightmesh dev``'s Slack sandbox, for users.list to list."""
    found = re.search(r"Slack Web API sandbox \(.*?\) on (\S+)", server.output())
    assert found, server.output()
    answer = httpx.post(urljoin(found.group(1), "/_sandbox/users/generate"), timeout=30,
                        headers={"X-InsightMesh-Local-Token": server.secret},
                        json={"count": count, "domain": DOMAIN, "id_prefix": "UCJ"})
    assert answer.status_code == 200, answer.text


def fits_390(tab: Tab) -> None:
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390


def test_scenario_4_create_a_slack_user_sync_job_from_the_form_and_watch_its_run_succeed(tab: Tab) -> None:
    sandbox_people(tab.server, 3)
    tab.sign_in(ADMIN)
    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Jobs").click()
    tab.page.wait_for_url(tab.url("/console/jobs"))
    assert tab.page.get_by_role("heading", name="Jobs", exact=True).is_visible()
    tab.page.get_by_role("link", name="New job").click()
    tab.page.get_by_label("Job type").select_option("slack_user_sync")
    tab.page.get_by_role("button", name="Continue").click()
    tab.page.wait_for_url(tab.url("/console/jobs/new?type=slack_user_sync"))

    form = tab.page.get_by_role("form", name="New job")
    form.get_by_label("Name").fill(JOB)
    form.get_by_label("Expression").fill("cron(0 7 ? * MON-FRI *)")
    form.get_by_label("Time zone").select_option("Europe/Paris")
    # A bad parameter: the API's 422 is shown in place, the values kept.
    form.get_by_label("Email Domains").fill(f"{DOMAIN}\nnot a domain!")
    form.get_by_label("Page Size").fill("50")
    form.get_by_label("Deactivate Missing").uncheck()
    form.get_by_role("button", name="Create job").click()
    alert = tab.page.get_by_role("alert")
    assert "parameters.email_domains" in alert.inner_text()
    form = tab.page.get_by_role("form", name="New job")
    assert form.get_by_label("Name").input_value() == JOB
    assert form.get_by_label("Email Domains").input_value() == f"{DOMAIN}\nnot a domain!"
    assert not form.get_by_label("Deactivate Missing").is_checked()
    tab.shot("job-new-refused")

    form.get_by_label("Email Domains").fill(DOMAIN)
    form.get_by_role("button", name="Preview the next runs").click()
    preview = tab.page.locator(".preview li")
    assert preview.count() == 3 and all("07:00 CE" in text for text in preview.all_inner_texts())
    tab.shot("job-new")
    fits_390(tab)
    tab.shot("job-new-390")
    tab.page.set_viewport_size(WIDE)
    tab.page.get_by_role("form", name="New job").get_by_role("button", name="Create job").click()
    tab.page.wait_for_url(re.compile(r".*/console/jobs/[a-f0-9]{32}\?notice=job-created$"))
    job_url = tab.page.url.split("?")[0]
    assert tab.page.get_by_role("status").inner_text() == "The job is created."
    assert tab.page.locator("ol.upcoming li").count() == 3

    # Pause and resume.
    tab.page.get_by_role("button", name="Pause job").click()
    tab.page.wait_for_url(f"{job_url}?notice=job-paused")
    assert tab.page.locator(".lead .state").inner_text() == "paused"
    tab.page.get_by_role("button", name="Resume job").click()
    tab.page.wait_for_url(f"{job_url}?notice=job-resumed")
    assert tab.page.locator(".lead .state").inner_text() == "active"
    tab.shot("job")

    # Run now: the run's page refreshes itself until the run ends.
    tab.page.get_by_role("button", name="Run now").click()
    tab.page.wait_for_url(re.compile(r".*/console/runs/[a-f0-9]{32}\?notice=run-queued$"))
    status = tab.page.locator("#run-status")

    def shown_status() -> str:
        try:
            return str(status.inner_text(timeout=5000))
        except PlaywrightError:  # caught mid-reload: the page refreshes itself every 3 s
            return ""

    wait_for(lambda: shown_status() in ENDED, timeout=RUN_WAIT, interval=1, what="the run to end")
    tab.page.wait_for_load_state()
    assert status.inner_text() == "succeeded", tab.page.locator("main").inner_text()
    assert tab.page.locator('meta[http-equiv="refresh"]').count() == 0  # it stops refreshing once it ends
    facts = tab.page.locator("main").inner_text()
    assert "manual by you" in facts and "Processed" in facts
    tab.shot("run")
    fits_390(tab)
    tab.shot("run-390")

    tab.page.set_viewport_size(WIDE)
    tab.goto("/console/jobs")
    row = tab.page.get_by_role("row").filter(has=tab.page.get_by_role("link", name=JOB))
    assert "succeeded" in row.inner_text() and "active" in row.inner_text()
    tab.shot("jobs")
    fits_390(tab)
    tab.shot("jobs-390")
    tab.goto(job_url.removeprefix(tab.url("")))
    fits_390(tab)
    tab.shot("job-390")

    # Delete, after confirming: the job leaves the list.
    tab.page.get_by_role("link", name="Delete job…").click()
    tab.page.get_by_role("button", name="Delete job").click()
    tab.page.wait_for_url(tab.url("/console/jobs?notice=job-deleted"))
    assert tab.page.get_by_role("link", name=JOB).count() == 0
