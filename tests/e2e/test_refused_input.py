"""Input that must be refused, end to end through `insightmesh dev` (issue 12, item 4): a past ``at()``
and an unknown time zone are 422s that say which field is wrong; a Slack directory sync whose
users.list answers nobody (the Slack sandbox, over loopback) deactivates no one and its run is
recorded ``failed`` with the reason, the numbers and a warning; a token sent without ``Bearer`` is
told how to send it; and ``/health/ready`` checks the knowledge store (the dev stack's Qdrant)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.dev_server import running
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ADMIN = "refusals-admin@example.com"
TEAM = "TLOCAL0001"  # the sandbox's workspace
FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "skipped"}


@pytest.fixture(scope="module")
def dev(sandbox, dev_logs):
    with running(env={"SLACK_BOT_TOKEN": "xoxb-e2e-refusals", "SLACK_API_URL": sandbox.url,
                      "API_RATE_LIMIT_PER_MINUTE": "100000", "API_IP_RATE_LIMIT_PER_MINUTE": "100000"},
                 log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def token(dev) -> str:
    assert dev.cli("admin", "bootstrap", "--email", ADMIN).returncode == 0
    created = dev.cli("token", "create", "--email", ADMIN, "--admin")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.fixture(scope="module")
def admin(dev, token):
    with dev.http(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


def only_detail(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    return detail


def job(expression: str, timezone: str = "Europe/Paris", parameters: dict | None = None) -> dict:
    return {"name": "Refusals", "job_type": "slack_user_sync", "parameters": parameters or {},
            "schedule": {"expression": expression, "timezone": timezone}}


def wait_run(admin, run_id: str) -> dict:
    found: dict = {}

    def finished() -> bool:
        response = admin.get(f"/api/task-runs/{run_id}")
        assert response.status_code == 200, response.text
        found.update(response.json())
        return found["status"] in FINISHED
    wait_for(finished, timeout=90, what=f"run {run_id} finished")
    return found


def test_a_past_at_schedule_is_a_422_naming_it(admin):
    detail = only_detail(admin.post("/api/jobs", json=job("at(2020-01-01T00:00:00)")))
    assert detail["loc"][-2:] == ["schedule", "expression"]
    assert "at(2020-01-01T00:00:00) is in the past" in detail["msg"] and "Europe/Paris" in detail["msg"]
    assert admin.get("/api/jobs").json()["items"] == []  # nothing was created

    created = admin.post("/api/jobs", json=job("at(2099-01-01T09:00:00)"))
    assert created.status_code == 201, created.text
    assert created.json()["schedule"]["next_run"].startswith("2099-01-01T08:00:00")  # 09:00 in Paris
    assert admin.delete(f"/api/jobs/{created.json()['job_id']}").status_code == 204


def test_an_unknown_time_zone_is_a_422_on_the_timezone_field(admin):
    detail = only_detail(admin.post("/api/jobs", json=job("cron(0 3 ? * MON-FRI *)", timezone="Mars/Olympus")))
    assert detail["loc"][-2:] == ["schedule", "timezone"]
    assert "timezone" in detail["msg"] and "'Mars/Olympus'" in detail["msg"] and "cron(" not in detail["msg"]


def test_a_sync_whose_provider_lists_nobody_deactivates_nobody_and_fails(admin, sandbox):
    sandbox.reset()
    people = [{"id": f"UREF{n:04d}", "team_id": TEAM, "name": f"ref{n}", "real_name": f"Ref {n}",
               "profile": {"email": f"ref{n}@example.com", "real_name": f"Ref {n}"}} for n in range(5)]
    sandbox.add_users(people)
    created = admin.post("/api/jobs", json=job("rate(1 day)"))
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]

    first = wait_run(admin, admin.post(f"/api/jobs/{job_id}/run").json()["run_id"])
    assert first["status"] == "succeeded" and first["summary"]["created"] == 5 and first["warnings"] == [], first

    sandbox.remove_users(*(person["id"] for person in people))  # users.list now lists nobody to sync
    refused = wait_run(admin, admin.post(f"/api/jobs/{job_id}/run").json()["run_id"])
    assert refused["status"] == "failed", refused
    assert refused["error"]["type"] == "SyncRefusedError"
    assert "listed 0 users" in refused["error"]["message"] and "5 active users" in refused["error"]["message"]
    assert refused["warnings"] == ["listed 0 users"]
    assert (refused["summary"]["listed"], refused["summary"]["managed"], refused["summary"]["deactivated"]) == (
        0, 5, 0)
    for n in range(5):
        [user] = admin.get("/api/users", params={"email": f"ref{n}@example.com"}).json()["items"]
        assert user["is_active"] is True, user  # the company is not switched off
    failed = admin.get("/api/task-runs", params={"job_id": job_id, "status": "failed"}).json()["items"]
    assert [item["warnings"] for item in failed] == [["listed 0 users"]]
    assert admin.delete(f"/api/jobs/{job_id}").status_code == 204


def test_a_token_without_bearer_is_told_how_to_send_it(dev, token):
    with dev.http(headers={"Authorization": token}, timeout=30) as client:
        response = client.get("/api/jobs")
    assert response.status_code == 401
    assert "send Authorization: Bearer <token>" in response.json()["error"]["message"]
    assert token not in response.text


def test_readiness_checks_the_knowledge_store(admin):
    answers: list[httpx.Response] = []

    def answered() -> bool:  # a cold health function on a loaded machine may time out its first call (503)
        answers.append(admin.get("/health/ready"))
        return answers[-1].status_code == 200
    wait_for(answered, timeout=60, interval=1.0, what="a readiness report")
    [store] = [check for check in answers[-1].json()["checks"] if check["kind"] == "knowledge_store"]
    assert store["name"] == "QDRANT_URL" and store["status"] == "ok", store
    assert store["detail"] == "qdrant ready"
