"""Input the jobs API refuses, through functions/tasks_api/handler.py with API Gateway HTTP API events,
every table of the template and EventBridge Scheduler in moto (issue 12, item 4): an ``at()`` in the
past (on the schedule's own wall clock), an unknown time zone (named on the ``timezone`` field), and
an Authorization header without its ``Bearer`` prefix. Also: a run's warnings are what the API shows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from insightmesh.auth.tokens import create_token
from insightmesh.jobs import schemas, service
from insightmesh.jobs.models import RUN_KIND, TaskRun, created_sort, retention
from tests.integration.conftest import ROOT, load_handler

pytestmark = pytest.mark.timeout(120)
GROUP = "refusal-jobs"


class Api:
    def __init__(self, app: Any, http_event: Callable[..., dict[str, Any]], token: str) -> None:
        self.app, self.http_event, self.token = app, http_event, token

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             token: str | None = "default") -> tuple[int, Any]:
        event = self.http_event(method, path, token=self.token if token == "default" else token, body=body,
                                headers=headers)
        response = self.app.resolve(event, None)
        text = response.get("body") or ""
        return response["statusCode"], json.loads(text) if text else None


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str], make_user: Callable[..., Any],
        http_event: Callable[..., dict[str, Any]]) -> Iterator[Api]:
    boto3.client("scheduler").create_schedule_group(Name=GROUP)
    monkeypatch.setenv("JOB_SCHEDULE_GROUP", GROUP)
    monkeypatch.setenv("JOB_RUNNER_ARN", "arn:aws:lambda:us-east-1:123456789012:function:runner")
    monkeypatch.setenv("JOB_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/scheduler")
    make_user("u-admin", "admin@example.com", is_admin=True)
    token, _ = create_token("u-admin", name="refusals", scopes=["admin:read", "admin:write"])
    yield Api(load_handler(ROOT / "functions" / "tasks_api" / "handler.py").app, http_event, token)


def job_body(expression: str, timezone: str | None = None) -> dict[str, Any]:
    schedule: dict[str, str] = {"expression": expression}
    if timezone is not None:
        schedule["timezone"] = timezone
    return {"name": "Refusals", "job_type": "slack_user_sync", "schedule": schedule}


def schedules() -> list[str]:
    return [item["Name"] for item in boto3.client("scheduler").list_schedules(GroupName=GROUP)["Schedules"]]


def detail(body: Any) -> dict[str, Any]:
    assert body["error"]["code"] == "validation_error", body
    [found] = body["error"]["details"]
    return dict(found)


def test_an_at_schedule_in_the_past_is_refused_naming_it(api: Api) -> None:
    status, body = api.call("POST", "/api/jobs", job_body("at(2020-01-01T00:00:00)"))

    assert status == 422, body
    found = detail(body)
    assert found["loc"][-2:] == ["schedule", "expression"]
    assert "at(2020-01-01T00:00:00) is in the past" in found["msg"]
    assert schedules() == []  # nothing was created
    assert api.call("GET", "/api/jobs")[1]["items"] == []


def test_an_at_time_is_judged_on_the_schedules_wall_clock(api: Api) -> None:
    # An hour ago on Tokyo's clock is still ahead of UTC's wall clock: past in Tokyo, future in UTC.
    tokyo_hour_ago = (datetime.now(ZoneInfo("Asia/Tokyo")) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    expression = f"at({tokyo_hour_ago})"

    status, body = api.call("POST", "/api/jobs", job_body(expression, "Asia/Tokyo"))
    assert status == 422 and f"{expression} is in the past" in detail(body)["msg"] and "Asia/Tokyo" in detail(
        body)["msg"]

    status, created = api.call("POST", "/api/jobs", job_body(expression, "UTC"))
    assert status == 201, created
    assert created["schedule"]["next_run"] is not None and len(schedules()) == 1


def test_a_patch_to_a_past_at_is_refused_and_the_schedule_kept(api: Api) -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
    status, job = api.call("POST", "/api/jobs", job_body(f"at({future})", "Europe/Paris"))
    assert status == 201, job

    status, body = api.call("PATCH", f"/api/jobs/{job['job_id']}",
                            {"version": job["version"], "schedule": {"expression": "at(2020-01-01T00:00:00)",
                                                                     "timezone": "Europe/Paris"}})
    assert status == 422 and "at(2020-01-01T00:00:00) is in the past" in detail(body)["msg"]
    assert api.call("GET", f"/api/jobs/{job['job_id']}")[1]["schedule"]["expression"] == f"at({future})"


def test_resuming_a_job_whose_at_has_passed_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    future = datetime.now(UTC) + timedelta(hours=2)
    status, job = api.call("POST", "/api/jobs", job_body(f"at({future.strftime('%Y-%m-%dT%H:%M:%S')})"))
    assert status == 201, job
    assert api.call("POST", f"/api/jobs/{job['job_id']}/pause")[0] == 200
    monkeypatch.setattr(service, "utc_now", lambda: future + timedelta(hours=1))  # the time has passed

    status, body = api.call("POST", f"/api/jobs/{job['job_id']}/resume")
    assert status == 422, body
    assert "is in the past" in body["error"]["message"] and "PATCH schedule" in body["error"]["message"]
    current = api.call("GET", f"/api/jobs/{job['job_id']}")[1]
    assert current["enabled"] is False
    [schedule] = boto3.client("scheduler").list_schedules(GroupName=GROUP)["Schedules"]
    assert schedule["State"] == "DISABLED"  # still paused: it never fires late


def test_an_unknown_time_zone_is_refused_on_the_timezone_field(api: Api) -> None:
    status, body = api.call("POST", "/api/jobs", job_body("cron(0 8 * * ? *)", "Mars/Olympus"))

    assert status == 422, body
    found = detail(body)
    assert found["loc"][-2:] == ["schedule", "timezone"]
    assert "timezone" in found["msg"] and "'Mars/Olympus'" in found["msg"]
    assert "cron(" not in found["msg"]  # the expression is fine
    assert schedules() == []


def test_a_token_without_the_bearer_prefix_is_told_how_to_send_it(api: Api) -> None:
    status, body = api.call("GET", "/api/jobs", token=None, headers={"authorization": api.token})

    assert status == 401
    assert "send Authorization: Bearer <token>" in body["error"]["message"]
    assert api.token not in json.dumps(body)
    status, body = api.call("GET", "/api/jobs", token=None, headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert status == 401 and "send Authorization: Bearer <token>" in body["error"]["message"]
    assert api.call("GET", "/api/jobs")[0] == 200  # with the prefix it works


def test_a_runs_warnings_are_returned_by_the_api(api: Api) -> None:
    now = datetime.now(UTC)
    run = TaskRun("a" * 32, job_id="b" * 32, job_type="slack_user_sync", kind=RUN_KIND,
                  created_sort=created_sort(now, "a" * 32), status="failed", trigger="manual", created_at=now,
                  expires_at=retention(now), summary={}, warnings=["listed 0 users"])
    run.save()
    TaskRun("c" * 32, job_id="b" * 32, job_type="slack_user_sync", kind=RUN_KIND,
            created_sort=created_sort(now, "c" * 32), status="succeeded", trigger="manual", created_at=now,
            expires_at=retention(now), summary={}).save()

    status, shown = api.call("GET", f"/api/task-runs/{'a' * 32}")
    assert status == 200 and shown["warnings"] == ["listed 0 users"]
    assert api.call("GET", f"/api/task-runs/{'c' * 32}")[1]["warnings"] == []
    listed = {item["run_id"]: item["warnings"] for item in api.call("GET", "/api/task-runs")[1]["items"]}
    assert listed == {"a" * 32: ["listed 0 users"], "c" * 32: []}
    assert "warnings" in schemas.TaskRunOut.model_json_schema()["properties"]
