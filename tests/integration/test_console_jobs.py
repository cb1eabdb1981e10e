"""The console's Jobs pages in-process (moto, EventBridge Scheduler and SQS included): the list, the
form generated from a job type's parameter schema (values converted to the schema's types, the
API's 422 and 409 in place with the values kept), the schedule preview the API computes, pause and
resume, run now, delete after confirming, and a run's page that refreshes while the run is active.
Also the API route the preview needs, GET /api/jobs/schedule-preview."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import boto3
import pytest

from insightmesh.console.job_pages import controls, parameters
from insightmesh.jobs.schedule_expressions import parse_schedule_expression
from tests.integration.test_console import ADMIN_ID, MEMBER_ID, Browser, Page, console, sign_in

pytestmark = pytest.mark.timeout(180)
__all__ = ["console"]  # the fixture, imported for this module's tests
GROUP = "console-jobs"
REFRESH = '<meta http-equiv="refresh" content="3; url=/console/runs/'


@pytest.fixture
def jobs(console: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The console, with the jobs' schedule group and queue in moto."""
    boto3.client("scheduler").create_schedule_group(Name=GROUP)
    monkeypatch.setenv("JOB_SCHEDULE_GROUP", GROUP)
    monkeypatch.setenv("JOB_RUNNER_ARN", "arn:aws:lambda:us-east-1:123456789012:function:runner")
    monkeypatch.setenv("JOB_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    monkeypatch.setenv("JOB_QUEUE_URL", boto3.client("sqs").create_queue(QueueName="console-jobs")["QueueUrl"])
    yield console


def schedules() -> list[dict[str, Any]]:
    return list(boto3.client("scheduler").list_schedules(GroupName=GROUP)["Schedules"])


def stored_jobs() -> list[Any]:
    from insightmesh.jobs.models import JOB_KIND, Job

    return list(Job.by_kind.query(JOB_KIND))


def new_job_form(browser: Browser, job_type: str = "slack_user_sync", **fields: str) -> dict[str, str]:
    page = browser.request("GET", "/console/jobs/new", query={"type": job_type})
    assert page.status == 200, page.body
    form = {"csrf_token": browser.csrf(page), "job_type": job_type, "name": "Directory from Slack",
            "description": "", "expression": "cron(0 6 ? * MON-FRI *)", "timezone": "Europe/Paris",
            "enabled": "true", "action": "save", "param.page_size": "200", "param.deactivate_missing": "true",
            "param.max_deactivate_percent": "20"}
    form.update(fields)
    return form


def create(browser: Browser, **fields: str) -> str:
    done = browser.request("POST", "/console/jobs/new", form=new_job_form(browser, **fields))
    assert done.status == 303, done.body
    found = re.fullmatch(r"/console/jobs/([a-f0-9]{32})\?notice=job-created", done.headers["Location"])
    assert found, done.headers["Location"]
    return found.group(1)


def alert(page: Page) -> str:
    found = re.search(r'<div class="error" role="alert"[^>]*>(.*?)</div>', page.body, re.S)
    assert found, page.body
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


# -- the form, from the schema ------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "properties": {
        "domains": {"type": "array", "items": {"type": "string"}, "title": "Domains"},
        "sizes": {"type": "array", "items": {"type": "integer"}, "title": "Sizes"},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200, "title": "Page Size"},
        "percent": {"type": "number", "minimum": 0, "maximum": 100, "default": 20.0, "description": "At most."},
        "dry_run": {"type": "boolean", "default": True},
        "mode": {"type": "string", "enum": ["fast", "full"], "default": "fast"},
        "level": {"enum": [1, 2, 3], "type": "integer"},
        "folder": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}], "default": None},
        "credential_id": {"type": "string", "title": "Credential Id"},
    },
    "required": ["credential_id"],
}


def test_the_controls_follow_the_schema_and_the_values_are_converted_to_its_types() -> None:
    shown = {control.name: control for control in controls(SCHEMA)}
    assert {name: control.kind for name, control in shown.items()} == {
        "domains": "lines", "sizes": "lines", "page_size": "integer", "percent": "number", "dry_run": "checkbox",
        "mode": "select", "level": "select", "folder": "text", "credential_id": "text"}
    assert shown["page_size"].minimum == 1 and shown["page_size"].maximum == 1000 and shown["page_size"].value == "200"
    assert shown["percent"].value == "20" and "At most." in shown["percent"].help and "From 0 to 100" in shown[
        "percent"].help
    assert "per line" in shown["domains"].help and shown["dry_run"].checked
    assert shown["credential_id"].required and not shown["folder"].required and shown["folder"].max_length == 200
    assert shown["mode"].options == ("fast", "full") and shown["level"].options == ("1", "2", "3")

    posted = {"param.domains": "example.com\r\n\r\n example.org ", "param.sizes": "5\n6", "param.page_size": "50",
              "param.percent": "12.5", "param.mode": "full", "param.level": "2", "param.folder": "",
              "param.credential_id": "cred-1"}
    assert parameters(SCHEMA, posted) == {"domains": ["example.com", "example.org"], "sizes": [5, 6], "page_size": 50,
                                          "percent": 12.5, "dry_run": False, "mode": "full", "level": 2,
                                          "credential_id": "cred-1"}
    # What is not of the schema's type is sent as typed, for the API's 422 to name it.
    assert parameters(SCHEMA, {"param.page_size": "many", "param.percent": "20"})["page_size"] == "many"
    kept = {control.name: control.value for control in controls(SCHEMA, posted=posted)}
    assert kept["domains"] == posted["param.domains"] and kept["page_size"] == "50"


# -- the pages ----------------------------------------------------------------------------------------


def test_the_list_is_empty_then_shows_a_job_created_from_the_form(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    empty = browser.request("GET", "/console/jobs")
    assert empty.status == 200 and "There are no jobs yet" in empty.body and 'href="/console/jobs/new"' in empty.body
    assert '<a href="/console/jobs" aria-current="page">Jobs</a>' in empty.body

    picker = browser.request("GET", "/console/jobs/new")
    assert picker.status == 200 and '<select id="job-type" name="type"' in picker.body
    assert 'value="slack_user_sync"' in picker.body and 'value="gdrive_ingest"' in picker.body
    form = browser.request("GET", "/console/jobs/new", query={"type": "slack_user_sync"})
    assert form.status == 200
    for control in ('<textarea id="param-email_domains" name="param.email_domains"',
                    'name="param.page_size" type="number" step="1" min="1" max="1000"',
                    'type="checkbox" id="param-deactivate_missing" name="param.deactivate_missing" value="true"',
                    'name="param.max_deactivate_percent" type="number" step="any" min="0" max="100"'):
        assert control in form.body
    assert "One value per line." in form.body and 'for="param-email_domains"' in form.body

    job_id = create(browser, **{"param.email_domains": "Example.com\nexample.org", "param.page_size": "150",
                                "param.deactivate_missing": ""})
    [job] = stored_jobs()
    assert job.job_id == job_id and job.schedule_timezone == "Europe/Paris"
    assert job.parameters["email_domains"] == ["example.com", "example.org"]
    assert job.parameters["page_size"] == 150 and job.parameters["deactivate_missing"] is False
    assert job.parameters["max_deactivate_percent"] == 20
    assert len(schedules()) == 1

    listed = browser.request("GET", "/console/jobs")
    assert f'href="/console/jobs/{job_id}">Directory from Slack</a>' in listed.body
    assert "cron(0 6 ? * MON-FRI *)" in listed.body and '<span class="state active">active</span>' in listed.body
    assert "never" in listed.body  # no run yet


def test_the_api_422_is_shown_in_place_with_the_values_kept(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    form = new_job_form(browser, **{"param.email_domains": "example.com\nnot a domain!", "name": "Kept name"})
    refused = browser.request("POST", "/console/jobs/new", form=form)
    assert refused.status == 200  # the form, with the API's 422 in place
    message = alert(refused)
    assert "parameters are not valid" in message and "parameters.email_domains" in message
    assert 'value="Kept name"' in refused.body and "example.com\nnot a domain!</textarea>" in refused.body
    assert 'name="param.email_domains" aria-invalid="true" aria-errormessage="job-form-error"' in refused.body
    assert refused.body.count('aria-invalid="true"') == 1
    assert '<option selected>Europe/Paris</option>' in refused.body
    assert stored_jobs() == [] and schedules() == []

    bad_schedule = browser.request("POST", "/console/jobs/new", form=new_job_form(browser, expression="cron(1 2)"))
    assert bad_schedule.status == 200 and "schedule.expression" in alert(bad_schedule)
    assert 'value="cron(1 2)"' in bad_schedule.body and 'name="expression" aria-invalid="true"' in bad_schedule.body


def test_the_preview_is_the_apis_next_three_runs_in_the_chosen_time_zone(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    form = new_job_form(browser, expression="cron(0 9 ? * MON-FRI *)", timezone="America/New_York",
                        action="preview", name="Not saved yet")
    page = browser.request("POST", "/console/jobs/new", form=form)
    assert page.status == 200 and stored_jobs() == []  # a preview saves nothing
    assert 'value="Not saved yet"' in page.body
    expected = parse_schedule_expression("cron(0 9 ? * MON-FRI *)", "America/New_York")
    moment, times = datetime.now(UTC), []
    for _ in range(3):
        fire = expected.next_fire(moment)
        assert fire is not None
        times.append(fire)
        moment = fire
    shown = re.findall(r"<li>([^<]+) <span class=\"muted\">\(your time: <time datetime=\"([^\"]+)\"", page.body)
    assert [datetime.fromisoformat(iso) for _, iso in shown] == times
    assert all(text.split()[-2] == "09:00" and text.split()[-1] in ("EST", "EDT") for text, _ in shown)

    wrong = browser.request("POST", "/console/jobs/new", form={**form, "timezone": "Mars/Olympus"})
    assert wrong.status == 200 and "timezone" in alert(wrong) and "Mars/Olympus" in alert(wrong)
    assert 'name="timezone" aria-invalid="true"' in wrong.body and 'name="expression" aria-invalid' not in wrong.body


def test_the_job_page_shows_the_stored_schedules_next_runs_and_pause_resume(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser, expression="cron(30 7 * * ? *)", timezone="Asia/Tokyo")
    page = browser.request("GET", f"/console/jobs/{job_id}", query={"notice": "job-created"})
    assert page.status == 200 and "The job is created." in page.body
    upcoming = re.findall(r"<li>([^<]+) <span class=\"muted\">\(your time", page.body)
    assert len(upcoming) == 3 and all("07:30 JST" in text for text in upcoming)
    assert "This job has not run yet." in page.body

    csrf = browser.csrf(page)
    paused = browser.request("POST", f"/console/jobs/{job_id}/pause", form={"csrf_token": csrf})
    assert paused.status == 303 and paused.headers["Location"] == f"/console/jobs/{job_id}?notice=job-paused"
    [schedule] = schedules()
    assert schedule["State"] == "DISABLED"
    page = browser.request("GET", f"/console/jobs/{job_id}")
    assert '<span class="state paused">paused</span>' in page.body and "Resume job" in page.body
    assert "the schedule does not fire until the job is resumed" in page.body
    resumed = browser.request("POST", f"/console/jobs/{job_id}/resume", form={"csrf_token": csrf})
    assert resumed.status == 303 and schedules()[0]["State"] == "ENABLED"

    forged = browser.request("POST", f"/console/jobs/{job_id}/pause", form={"csrf_token": "forged"})
    assert forged.status == 403 and schedules()[0]["State"] == "ENABLED"


def test_an_edit_keeps_the_version_and_a_concurrent_change_is_the_409_in_place(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser)
    edit = browser.request("GET", f"/console/jobs/{job_id}/edit")
    assert edit.status == 200 and 'name="version" value="1"' in edit.body
    assert 'value="Directory from Slack"' in edit.body and '<option selected>Europe/Paris</option>' in edit.body
    form = {"csrf_token": browser.csrf(edit), "version": "1", "name": "Renamed", "description": "nightly",
            "expression": "rate(6 hours)", "timezone": "UTC", "action": "save", "param.page_size": "300",
            "param.max_deactivate_percent": "5.5", "param.email_domains": "example.com"}
    saved = browser.request("POST", f"/console/jobs/{job_id}/edit", form=form)
    assert saved.status == 303 and saved.headers["Location"] == f"/console/jobs/{job_id}?notice=job-updated"
    [job] = stored_jobs()
    assert (job.name, job.schedule_expression, job.version) == ("Renamed", "rate(6 hours)", 2)
    assert job.parameters["max_deactivate_percent"] == 5.5 and job.parameters["deactivate_missing"] is False

    stale = browser.request("POST", f"/console/jobs/{job_id}/edit", form={**form, "name": "Stale write"})
    assert stale.status == 200 and "changed since you read it" in alert(stale)
    assert 'value="Stale write"' in stale.body and 'name="version" value="2"' in stale.body
    assert stored_jobs()[0].name == "Renamed"


def test_run_now_opens_the_runs_page_which_refreshes_until_the_run_ends(jobs: ModuleType) -> None:
    from insightmesh.jobs.models import TaskRun

    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser)
    csrf = browser.csrf(browser.request("GET", f"/console/jobs/{job_id}"))
    started = browser.request("POST", f"/console/jobs/{job_id}/run", form={"csrf_token": csrf})
    assert started.status == 303
    found = re.fullmatch(r"/console/runs/([a-f0-9]{32})\?notice=run-queued", started.headers["Location"])
    assert found
    run_id = found.group(1)
    queued = browser.request("GET", f"/console/runs/{run_id}")
    assert queued.status == 200 and f'{REFRESH}{run_id}">' in queued.body and ">queued</strong>" in queued.body
    assert "manual by you" in queued.body

    run = TaskRun.get(run_id)
    moment = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    run.update(actions=[TaskRun.status.set("failed"), TaskRun.started_at.set(moment),
                        TaskRun.finished_at.set(moment.replace(minute=2, second=5)),
                        TaskRun.duration_ms.set(125_000), TaskRun.records_processed.set(7),
                        TaskRun.records_succeeded.set(5), TaskRun.records_failed.set(2),
                        TaskRun.error.set({"type": "SlackApiError", "message": "users.list said <ratelimited>",
                                           "step": "list_users", "traceback": None})])
    ended = browser.request("GET", f"/console/runs/{run_id}")
    assert REFRESH not in ended.body and ">failed</strong>" in ended.body
    assert "2 min 5 s" in ended.body and "users.list said &lt;ratelimited&gt;" in ended.body
    assert "<code>list_users</code>" in ended.body and "<dt>Failed</dt><dd>2</dd>" in ended.body
    run.update(actions=[TaskRun.summary.set({"complete": False, "listed": 7})])
    summary = browser.request("GET", f"/console/runs/{run_id}").body
    assert "<dt>complete</dt><dd>no</dd>" in summary and "<dt>listed</dt><dd>7</dd>" in summary

    job_page = browser.request("GET", f"/console/jobs/{job_id}")
    assert f'href="/console/runs/{run_id}"' in job_page.body and "run-status failed" in job_page.body
    assert "This job has not run yet." not in job_page.body


def test_delete_asks_first_then_removes_the_job_and_its_schedule(jobs: ModuleType) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser)
    ask = browser.request("GET", f"/console/jobs/{job_id}/delete")
    assert ask.status == 200 and "Delete the job “Directory from Slack”" in ask.body and stored_jobs()
    done = browser.request("POST", f"/console/jobs/{job_id}/delete", form={"csrf_token": browser.csrf(ask)})
    assert done.status == 303 and done.headers["Location"] == "/console/jobs?notice=job-deleted"
    assert stored_jobs() == [] and schedules() == []
    assert browser.request("GET", f"/console/jobs/{job_id}").status == 404


def test_the_list_paginates_with_the_apis_cursor(jobs: ModuleType) -> None:
    from insightmesh.console import app as console_app

    browser = sign_in(jobs, ADMIN_ID)
    for index in range(console_app.PAGE_SIZE + 1):
        create(browser, name=f"Job {index:02d}")
    first = browser.request("GET", "/console/jobs")
    cursor = re.search(r'href="/console/jobs\?cursor=([^"]+)">Next page', first.body)
    assert cursor and first.body.count('<th scope="row">') == console_app.PAGE_SIZE
    second = browser.request("GET", "/console/jobs", query={"cursor": unquote(html.unescape(cursor.group(1)))})
    assert second.status == 200 and second.body.count('<th scope="row">') == 1 and "First page" in second.body


def test_a_member_gets_the_403_page_for_every_jobs_page(jobs: ModuleType) -> None:
    browser = sign_in(jobs, MEMBER_ID)
    for path in ("/console/jobs", "/console/jobs/new", f"/console/jobs/{'a' * 32}", f"/console/runs/{'b' * 32}"):
        page = browser.request("GET", path)
        assert page.status == 403 and "Not allowed" in page.body, path


# -- the API route the preview uses -----------------------------------------------------------------


def test_the_schedule_preview_route_is_admin_only_and_refuses_what_post_refuses(jobs: ModuleType) -> None:
    from insightmesh.console.api import Caller

    admin, member = sign_in(jobs, ADMIN_ID), sign_in(jobs, MEMBER_ID)
    api = jobs.app.api

    def call(browser: Browser, **query: str) -> Any:
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
        return api.call("GET", "/api/jobs/schedule-preview", query=query, context=None,  # type: ignore[arg-type]
                        caller=Caller(cookie=cookie, source_ip="203.0.113.9", user_agent="t", request_id="r"))

    answer = call(admin, expression="cron(0 12 1 * ? *)", timezone="Europe/Paris", count="4")
    assert answer.status == 200 and len(answer.body["upcoming"]) == 4
    for text in answer.body["upcoming"]:
        local = datetime.fromisoformat(text).astimezone(ZoneInfo("Europe/Paris"))
        assert (local.day, local.hour, local.minute) == (1, 12, 0)
    once = call(admin, expression="at(2099-01-01T00:00:00)")
    assert once.status == 200 and [datetime.fromisoformat(t) for t in once.body["upcoming"]] == [
        datetime(2099, 1, 1, tzinfo=UTC)]
    past = call(admin, expression="at(2020-01-01T00:00:00)")
    assert past.status == 422 and "is in the past" in past.body["error"]["details"][0]["msg"]
    assert call(admin, expression="rate(1 day)", count="11").status == 422
    assert call(member, expression="rate(1 day)").status == 403
    assert call(Browser(jobs), expression="rate(1 day)").status == 401


def test_a_refused_action_is_shown_on_the_jobs_page(jobs: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser)
    monkeypatch.delenv("JOB_QUEUE_URL")  # the run cannot be queued: the API's 503
    csrf = browser.csrf(browser.request("GET", f"/console/jobs/{job_id}"))
    page = browser.request("POST", f"/console/jobs/{job_id}/run", form={"csrf_token": csrf})
    assert page.status == 200 and "could not be queued" in alert(page)
    assert "run-status failed" in page.body  # recorded failed, listed among the job's runs


def test_the_job_pages_runs_with_the_apis_cursor_newest_first(jobs: ModuleType) -> None:
    from insightmesh.console.job_pages import RUNS_SHOWN

    browser = sign_in(jobs, ADMIN_ID)
    job_id = create(browser)
    csrf = browser.csrf(browser.request("GET", f"/console/jobs/{job_id}"))
    for _ in range(RUNS_SHOWN + 1):
        assert browser.request("POST", f"/console/jobs/{job_id}/run", form={"csrf_token": csrf}).status == 303
    newest = browser.request("GET", f"/console/jobs/{job_id}").body
    older = re.search(rf'href="/console/jobs/{job_id}\?cursor=([^"]+)">Older runs</a>', newest)
    assert older and newest.count('href="/console/runs/') == RUNS_SHOWN and "Newest runs" not in newest
    assert '<nav class="pager" aria-label="Pages of runs">' in newest
    rest = browser.request("GET", f"/console/jobs/{job_id}", query={"cursor": unquote(html.unescape(older.group(1)))})
    assert rest.status == 200 and rest.body.count('href="/console/runs/') == 1
    assert f'href="/console/jobs/{job_id}">Newest runs</a>' in rest.body and "Older runs" not in rest.body
