"""Scheduled jobs end to end through `insightmesh dev`: the jobs API creates EventBridge Scheduler
schedules in the emulator, "run now" goes through the job queue to job_runner, a fired schedule
makes a run, and slack_user_sync pulls users.list from the Slack stand-in into the directory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.dev_server import running
from tests.helpers import wait_for
from tests.standins.google_directory_server import GoogleDirectoryServer
from tests.standins.google_oauth_server import GoogleOAuthServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ADMIN, MEMBER = "jobs-admin@example.com", "jobs-member@example.com"
TEAM = "T0JOBS"
FINISHED = {"succeeded", "failed", "cancelled", "timed_out", "skipped"}


def slack_user(index: int, **extra) -> dict:
    user_id = f"U{index:07d}"
    return {"id": user_id, "team_id": TEAM, "name": f"user{index}", "deleted": False, "is_bot": False,
            "real_name": f"User {index}", "profile": {"email": f"user{index}@example.com",
                                                        "display_name": f"user{index}",
                                                        "real_name": f"User {index}"}, **extra}


@pytest.fixture(scope="module")
def google():
    oauth = GoogleOAuthServer(port=0, client_id="e2e-google-client", client_secret="e2e-google-secret").start()
    directory = GoogleDirectoryServer(port=0, tokens=(), validator=oauth.is_valid_access_token).start()
    try:
        yield oauth, directory
    finally:
        directory.stop()
        oauth.stop()


@pytest.fixture(scope="module")
def dev(sandbox, google, dev_logs):
    oauth, directory = google
    with running(env={"SLACK_BOT_TOKEN": "xoxb-e2e-jobs", "SLACK_API_URL": sandbox.url,
                      "API_RATE_LIMIT_PER_MINUTE": "100000", "API_IP_RATE_LIMIT_PER_MINUTE": "100000",
                      "GOOGLE_CLIENT_ID": oauth.client_id, "GOOGLE_CLIENT_SECRET": oauth.client_secret,
                      "GOOGLE_AUTHORIZE_URL": oauth.authorize_url, "GOOGLE_TOKEN_URL": oauth.token_url,
                      "GOOGLE_REVOKE_URL": oauth.revoke_url, "GOOGLE_DIRECTORY_API_URL": directory.url},
                 log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def api(dev):
    assert dev.cli("admin", "bootstrap", "--email", ADMIN).returncode == 0
    tokens = {"admin": dev.cli("token", "create", "--email", ADMIN, "--admin").stdout.strip(),
              "member": dev.cli("token", "create", "--email", MEMBER).stdout.strip()}

    def client(role: str | None) -> httpx.Client:
        return dev.http(headers={"Authorization": f"Bearer {tokens[role]}"} if role else {}, timeout=30)
    return client


@pytest.fixture(scope="module")
def admin(api):
    with api("admin") as client:
        yield client


@pytest.fixture(scope="module")
def scheduler(dev):
    return dev.aws("scheduler")


def schedule_of(scheduler, job_id):
    found = scheduler.list_schedules(NamePrefix=f"job-{job_id}")["Schedules"]
    if not found:
        return None
    summary = found[0]
    return scheduler.get_schedule(Name=summary["Name"], GroupName=summary["GroupName"])


def create_job(admin, *, name="Slack directory", schedule="rate(1 day)", parameters=None, job_type="slack_user_sync",
               enabled=True):
    response = admin.post("/api/jobs", json={"name": name, "job_type": job_type, "enabled": enabled,
                                             "schedule": {"expression": schedule, "timezone": "Europe/Paris"},
                                             "parameters": parameters or {}})
    assert response.status_code == 201, response.text
    return response.json()


def wait_run(admin, run_id, timeout=90):
    found = {}

    def finished():
        response = admin.get(f"/api/task-runs/{run_id}")
        assert response.status_code == 200, response.text
        found.update(response.json())
        return found["status"] in FINISHED
    wait_for(finished, timeout=timeout, what=f"run {run_id} finished")
    return found


@pytest.fixture
def clean_sandbox(sandbox):
    sandbox.reset()
    yield sandbox
    sandbox.reset()


def test_job_types_are_listed_with_their_parameter_schemas(api):
    with api(None) as anonymous:
        assert anonymous.get("/api/job-types").status_code == 401
    with api("member") as member:
        listed = member.get("/api/job-types")
    assert listed.status_code == 200
    types = {item["name"]: item for item in listed.json()["items"]}
    assert {"slack_user_sync", "google_workspace_sync"} <= set(types)
    assert "email_domains" in types["slack_user_sync"]["parameters_schema"]["properties"]
    assert "credential_id" in types["google_workspace_sync"]["parameters_schema"]["required"]


def test_every_jobs_route_requires_authentication_and_mutations_an_admin(api, admin):
    job = create_job(admin, name="Access check")
    routes = [("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", f"/api/jobs/{job['job_id']}"),
              ("PATCH", f"/api/jobs/{job['job_id']}"), ("DELETE", f"/api/jobs/{job['job_id']}"),
              ("POST", f"/api/jobs/{job['job_id']}/run"), ("POST", f"/api/jobs/{job['job_id']}/pause"),
              ("POST", f"/api/jobs/{job['job_id']}/resume"), ("GET", "/api/task-runs"),
              ("GET", f"/api/task-runs/{'0' * 32}"), ("GET", "/api/credentials")]
    with api(None) as anonymous, api("member") as member:
        for method, path in routes:
            assert anonymous.request(method, path).status_code == 401, (method, path)
            assert member.request(method, path, json={}).status_code in (403, 422), (method, path)
        assert member.post(f"/api/jobs/{job['job_id']}/run").status_code == 403
    audit = admin.get("/api/audit", params={"action": "job.run"}).json()["items"]
    assert any(entry["outcome"] == "denied" and entry["actor"] == MEMBER for entry in audit)
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_creating_a_job_creates_its_schedule_and_bad_input_is_refused(admin, scheduler):
    job = create_job(admin, schedule="cron(0 3 ? * MON-FRI *)")
    schedule = schedule_of(scheduler, job["job_id"])
    assert schedule is not None
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris" and schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"].endswith("JobRunnerFunction") or ":function:" in schedule["Target"]["Arn"]
    assert job["schedule"]["next_run"] is not None and job["created_by"]
    audit = admin.get("/api/audit", params={"action": "job.create"}).json()["items"]
    assert any(entry["target"] == f"job:{job['job_id']}" for entry in audit)

    bad = [{"schedule": {"expression": "rate(0 minutes)"}}, {"schedule": {"expression": "cron(0 3 * * * *)"}},
           {"schedule": {"expression": "rate(1 day)", "timezone": "Mars/Olympus"}},
           {"job_type": "nope"}, {"parameters": {"page_size": 5000}}, {"parameters": {"unknown": 1}},
           {"name": ""}]
    for change in bad:
        body = {"name": "Bad", "job_type": "slack_user_sync", "schedule": {"expression": "rate(1 day)"}, **change}
        response = admin.post("/api/jobs", json=body)
        assert response.status_code == 422, (change, response.text)
    names = {s["Name"] for s in scheduler.list_schedules(NamePrefix="job-")["Schedules"]}
    jobs = {item["job_id"] for item in admin.get("/api/jobs", params={"limit": 100}).json()["items"]}
    assert names == {f"job-{job_id}" for job_id in jobs}  # no schedule without a job, no job without one
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_pause_disables_the_schedule_resume_enables_it_delete_removes_it(admin, scheduler):
    job = create_job(admin, name="Pausable")
    paused = admin.post(f"/api/jobs/{job['job_id']}/pause")
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    assert paused.json()["schedule"]["next_run"] is None
    assert schedule_of(scheduler, job["job_id"])["State"] == "DISABLED"
    resumed = admin.post(f"/api/jobs/{job['job_id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["enabled"] is True
    assert schedule_of(scheduler, job["job_id"])["State"] == "ENABLED"

    stale = admin.patch(f"/api/jobs/{job['job_id']}", json={"version": 1, "name": "Renamed"})
    assert stale.status_code == 409
    current = admin.get(f"/api/jobs/{job['job_id']}").json()
    changed = admin.patch(f"/api/jobs/{job['job_id']}", json={"version": current["version"],
                                                             "schedule": {"expression": "rate(2 hours)"}})
    assert changed.status_code == 200, changed.text
    assert schedule_of(scheduler, job["job_id"])["ScheduleExpression"] == "rate(2 hours)"

    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204
    assert schedule_of(scheduler, job["job_id"]) is None
    assert admin.get(f"/api/jobs/{job['job_id']}").status_code == 404


def test_run_now_syncs_1000_slack_users_over_5_pages_despite_a_429(admin, clean_sandbox):
    clean_sandbox.add_users([slack_user(i) for i in range(1000)])
    clean_sandbox.fail("users.list", "ratelimit", count=1, retry_after=1)
    job = create_job(admin, name="Slack 1000", parameters={"page_size": 200})
    queued = admin.post(f"/api/jobs/{job['job_id']}/run")
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued" and queued.json()["trigger"] == "manual"
    run = wait_run(admin, queued.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["records_processed"] == 1000 and run["records_succeeded"] == 1000 and run["records_failed"] == 0
    assert run["summary"]["pages"] == 5 and run["summary"]["created"] == 1000
    assert run["triggered_by"] and run["duration_ms"] is not None and run["correlation_id"]
    assert run["job"]["name"] == "Slack 1000" and run["job"]["exists"] is True
    calls = clean_sandbox.calls("users.list")
    assert len(calls) == 6  # five pages, one of them asked twice after its 429
    found = admin.get("/api/users", params={"email": "user999@example.com"}).json()["items"]
    assert [user["email"] for user in found] == ["user999@example.com"]
    listed = admin.get("/api/task-runs", params={"job_id": job["job_id"], "status": "succeeded"}).json()
    assert [item["run_id"] for item in listed["items"]] == [run["run_id"]]
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_a_job_that_raises_is_recorded_failed_with_its_error(admin, clean_sandbox):
    clean_sandbox.add_users([slack_user(i) for i in range(3)])
    clean_sandbox.fail("users.list", "error", count=1, error="invalid_auth")
    job = create_job(admin, name="Failing")
    run = wait_run(admin, admin.post(f"/api/jobs/{job['job_id']}/run").json()["run_id"])
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "SlackApiError"
    assert "invalid_auth" in run["error"]["message"]
    assert run["error"]["step"] and "users.list" in run["error"]["step"]
    assert "Traceback" in run["error"]["traceback"] or "File" in run["error"]["traceback"]
    failed = admin.get("/api/task-runs", params={"status": "failed"}).json()["items"]
    assert run["run_id"] in {item["run_id"] for item in failed}
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_two_concurrent_starts_one_runs_one_is_skipped(admin, clean_sandbox):
    clean_sandbox.add_users([slack_user(i) for i in range(10)])
    clean_sandbox.fail("users.list", "delay", count=1, delay=4.0)  # the first run holds the lease a while
    # max_deactivate_percent: the earlier tests' users are gone from the sandbox, and this run may deactivate them.
    job = create_job(admin, name="Concurrent", parameters={"page_size": 5, "max_deactivate_percent": 100})
    with ThreadPoolExecutor(2) as pool:
        starts = list(pool.map(lambda _: admin.post(f"/api/jobs/{job['job_id']}/run"), range(2)))
    assert [start.status_code for start in starts] == [202, 202]
    runs = [wait_run(admin, start.json()["run_id"]) for start in starts]
    statuses = sorted(run["status"] for run in runs)
    assert statuses == ["skipped", "succeeded"], runs
    ran = next(run for run in runs if run["status"] == "succeeded")
    skipped = next(run for run in runs if run["status"] == "skipped")
    assert skipped["summary"]["running_run_id"] == ran["run_id"]
    assert ran["records_processed"] == 10
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_a_schedule_fired_by_the_local_runtime_produces_a_run(dev, admin, clean_sandbox):
    clean_sandbox.add_users([slack_user(i) for i in range(7)])
    job = create_job(admin, name="Fired", schedule="rate(12 hours)", parameters={"max_deactivate_percent": 100})
    fired = httpx.post(f"{dev.url}/_local/schedules/job-{job['job_id']}/fire", timeout=10,
                       headers={"X-InsightMesh-Local-Token": dev.secret})
    assert fired.status_code == 202, fired.text
    runs: list = []

    def recorded():
        runs[:] = admin.get("/api/task-runs", params={"job_id": job["job_id"]}).json()["items"]
        return bool(runs) and runs[0]["status"] in FINISHED
    wait_for(recorded, timeout=60, what="scheduled run")
    assert runs[0]["trigger"] == "scheduler" and runs[0]["status"] == "succeeded", runs[0]
    assert runs[0]["scheduled_time"] and runs[0]["records_processed"] == 7
    assert admin.get(f"/api/jobs/{job['job_id']}").json()["last_run"]["run_id"] == runs[0]["run_id"]
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204


def test_runs_list_is_paginated_with_a_cap(admin):
    assert admin.get("/api/task-runs", params={"limit": 101}).status_code == 422
    first = admin.get("/api/task-runs", params={"limit": 1})
    assert first.status_code == 200 and len(first.json()["items"]) <= 1
    if first.json()["next_cursor"]:
        second = admin.get("/api/task-runs", params={"limit": 1, "cursor": first.json()["next_cursor"]})
        assert second.status_code == 200
        assert second.json()["items"][0]["run_id"] != first.json()["items"][0]["run_id"]
        assert admin.get("/api/task-runs", params={"limit": 1, "cursor": first.json()["next_cursor"],
                                                   "status": "failed"}).status_code == 422
    time.sleep(0)


DIRECTORY_SCOPES = ["https://www.googleapis.com/auth/admin.directory.user.readonly",
                    "https://www.googleapis.com/auth/admin.directory.group.readonly",
                    "https://www.googleapis.com/auth/admin.directory.group.member.readonly"]
XSS = "<script>alert('x')</script> Directory"


def connect_google(admin, name=XSS, scopes=DIRECTORY_SCOPES):
    """The browser's part: open the authorization URL (the stand-in consents at once and
    redirects), then follow the redirect to the callback, as a browser without a bearer token."""
    started = admin.post("/api/credentials/google/authorize", json={"name": name, "scopes": scopes})
    assert started.status_code in (200, 201), started.text
    consent = httpx.get(started.json()["authorization_url"], follow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    callback = consent.headers["location"]
    # The browser that asked for the consent URL holds the im_connect cookie that binds the flow.
    binding = started.cookies.get("im_connect")
    assert binding, started.headers.get("set-cookie")
    page = httpx.get(callback, headers={"Cookie": f"im_connect={binding}"}, timeout=30)
    return started, callback, page


def all_tokens(oauth) -> set[str]:
    return set(oauth.tokens())


def test_connecting_a_google_credential_escapes_its_name_and_never_shows_a_token(dev, admin, google):
    oauth, _ = google
    seen: list[str] = []
    started, callback, page = connect_google(admin)
    seen += [started.text, page.text]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    assert "default-src 'none'" in page.headers.get("content-security-policy", "")

    replayed = httpx.get(callback, headers={"Cookie": f"im_connect={started.cookies.get('im_connect')}"}, timeout=30)
    elsewhere = httpx.get(callback, timeout=30)  # another browser: no im_connect cookie
    assert elsewhere.status_code == 400 and "not started in this browser" in elsewhere.text
    forged = httpx.get(f"{dev.url}/api/credentials/google/callback",
                       params={"state": "forged-state-value-000000000000", "code": "whatever"}, timeout=30)
    seen += [replayed.text, forged.text]
    assert replayed.status_code == 400 and forged.status_code == 400
    assert "<script>" not in forged.text

    listed = admin.get("/api/credentials")
    seen.append(listed.text)
    credentials = [item for item in listed.json()["items"] if item["name"] == XSS]
    assert len(credentials) == 1  # the replay and the forgery stored nothing
    credential = credentials[0]
    assert credential["provider"] == "google" and credential["status"] == "active"
    assert set(credential["scopes"]) == set(DIRECTORY_SCOPES) and "last_used_at" in credential
    shown = admin.get(f"/api/credentials/{credential['id']}")
    seen.append(shown.text)
    tokens = all_tokens(oauth)
    assert tokens, "the stand-in issued tokens"
    for token in tokens:
        assert all(token not in body for body in seen)
        assert token not in dev.output()  # no log line of any function holds it

    too_long = admin.post("/api/credentials/google/authorize", json={"name": "x" * 200, "scopes": DIRECTORY_SCOPES})
    bad_scope = admin.post("/api/credentials/google/authorize",
                           json={"name": "ok", "scopes": ["https://mail.google.com/"]})
    assert too_long.status_code == 422 and bad_scope.status_code == 422


def test_google_workspace_sync_uses_the_stored_credential(dev, admin, google):
    oauth, directory = google
    directory.add_users([{"primaryEmail": f"gw{i}@example.com", "name": f"Person {i}"} for i in range(12)]
                        + [{"primaryEmail": "gone@example.com", "name": "Suspended", "suspended": True}])
    directory.add_group("sales@example.com", name="Sales", members=["gw1@example.com", "gw2@example.com"])
    _, _, page = connect_google(admin, name="Workspace directory")
    assert page.status_code == 200
    credential = next(item for item in admin.get("/api/credentials").json()["items"]
                      if item["name"] == "Workspace directory")
    job = create_job(admin, name="Google directory", job_type="google_workspace_sync",
                     parameters={"credential_id": credential["id"], "page_size": 5})
    run = wait_run(admin, admin.post(f"/api/jobs/{job['job_id']}/run").json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["summary"]["users_listed"] == 13 and run["summary"]["groups_created"] == 1
    assert run["summary"]["memberships_added"] == 2
    members = admin.get("/api/groups/gw-sales/members").json()["items"]
    assert len(members) == 2
    assert admin.get(f"/api/credentials/{credential['id']}").json()["last_used_at"] is not None
    for token in all_tokens(oauth):
        assert token not in dev.output() and token not in str(run)

    revoked_before = len(oauth.revocations)
    deleted = admin.delete(f"/api/credentials/{credential['id']}")
    assert deleted.status_code == 200 and deleted.json()["revoked"] is True
    assert len(oauth.revocations) == revoked_before + 1
    assert admin.get(f"/api/credentials/{credential['id']}").status_code == 404
    failing = wait_run(admin, admin.post(f"/api/jobs/{job['job_id']}/run").json()["run_id"])
    assert failing["status"] == "failed" and "Credential" in failing["error"]["type"]
    assert admin.delete(f"/api/jobs/{job['job_id']}").status_code == 204
