"""The `insightmesh` command as a new admin meets it, run as a separate process against
`insightmesh dev`: every mistake ends in one line on stderr that says what to do, with exit code 1
(2 for usage), never a traceback; successful commands print no log lines, times are ISO-8601, and
the audit log names a token's user by e-mail next to the id. `insightmesh chat --email` is the
directory user with that address, even one an admin named by e-mail before they ever wrote."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime

import httpx
import pytest

from tests.e2e.dev_server import CLI, ROOT, DevServer, _env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ADMIN = "ops@example.com"


@pytest.fixture(scope="module")
def dev():
    server = DevServer()
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process.poll() is None:
            try:
                server.stop()
            except subprocess.TimeoutExpired:  # a loaded machine: what is tested here is not the shutdown
                server.process.kill()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=90)


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (asserting the exit code and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def admin(dev):
    made = run("token", "create", "--email", ADMIN, "--admin", "--port", str(dev.port))
    assert made.returncode == 0, made.stderr
    with httpx.Client(base_url=f"http://127.0.0.1:{dev.port}", timeout=30,
                      headers={"Authorization": f"Bearer {made.stdout.strip()}"}) as client:
        yield client


def test_an_unknown_user_is_one_line_that_says_how_to_find_or_make_one(dev):
    for command in (["token", "list", "--email", "nobody@example.com"],
                    ["token", "revoke", "--email", "nobody@example.com", "abc123"]):
        line = one_line(run(*command, "--port", str(dev.port)), 1)
        assert line.startswith(f"insightmesh {' '.join(command[:2])}: no user with e-mail nobody@example.com")
        assert "GET /api/users?email=" in line and "insightmesh admin bootstrap" in line


def test_an_invalid_email_is_a_usage_error_before_anything_is_reached(dev):
    line = one_line(run("admin", "bootstrap", "--email", "not-an-email", "--port", str(dev.port)), 2)
    assert line.startswith("insightmesh admin bootstrap: argument --email: not an e-mail address: 'not-an-email'")
    assert "usage: insightmesh admin bootstrap" in line


def test_an_unknown_schedule_lists_the_schedules(dev, admin):
    created = admin.post("/api/jobs", json={"name": "Nightly Slack sync", "job_type": "slack_user_sync",
                                            "schedule": {"expression": "rate(1 day)", "timezone": "UTC"},
                                            "parameters": {}})
    assert created.status_code == 201, created.text
    listed = run("schedules", "list", "--port", str(dev.port))
    assert listed.returncode == 0, listed.stderr
    names = [schedule["name"] for schedule in json.loads(listed.stdout)["schedules"]]
    assert names
    line = one_line(run("schedules", "fire", "nope", "--port", str(dev.port)), 1)
    assert line.startswith("insightmesh schedules: no schedule named 'nope'; the schedules are: ")
    assert all(name in line for name in names)


def test_a_wrong_flag_shows_the_subcommands_usage():
    line = one_line(run("chat", "--usr", "X"), 2)
    assert line.startswith("insightmesh chat: unrecognized arguments: --usr X (did you mean --user?)")
    assert "usage: insightmesh chat " in line and "--signing-secret" in line


def test_no_running_system_is_one_line_that_says_what_to_start():
    line = one_line(run("token", "list", "--email", "ops@example.com", "--port", "9"), 1)
    assert "no insightmesh dev server on 127.0.0.1:9" in line and "start `insightmesh dev`" in line
    line = one_line(run("chat", "--port", "9", "--sandbox-url", "http://127.0.0.1:9/api/"), 1)
    assert line.startswith("insightmesh chat: no Slack sandbox at http://127.0.0.1:9/api/")
    assert "start `insightmesh dev`" in line


def test_commands_print_no_log_lines_and_iso_times_and_the_audit_names_the_user(dev, admin):
    email = "newcomer@example.com"
    made = run("admin", "bootstrap", "--email", email, "--port", str(dev.port))
    assert made.returncode == 0 and made.stderr.count("\n") == 1, made.stderr  # its one line, no JSON log
    token = run("token", "create", "--email", email, "--port", str(dev.port))
    assert token.returncode == 0 and not any(line.lstrip().startswith("{") for line in token.stderr.splitlines()), \
        token.stderr
    listed = run("token", "list", "--email", email, "--port", str(dev.port))
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    shown = json.loads(listed.stdout.splitlines()[0])
    for field in ("created_at", "expires_at"):
        assert "T" in shown[field] and datetime.fromisoformat(shown[field]).tzinfo is not None
    revoked = run("token", "revoke", "--email", email, shown["token_id"], "--port", str(dev.port))
    assert revoked.returncode == 0, revoked.stderr

    user_id = admin.get("/api/users", params={"email": email}).json()["items"][0]["user_id"]
    entries = admin.get("/api/audit", params={"target": f"user:{user_id}"}).json()["items"]
    actions = {entry["action"]: entry for entry in entries}
    assert {"user.bootstrap_admin", "token.create", "token.revoke"} <= set(actions)
    for action in ("token.create", "token.revoke"):
        assert actions[action]["target"] == f"user:{user_id}"
        assert actions[action]["target_label"] == email


def test_chat_as_an_email_is_the_directory_user_with_that_address(dev, admin):
    email = "boss@example.com"
    assert run("admin", "bootstrap", "--email", email, "--port", str(dev.port)).returncode == 0  # before any chat
    sandbox_url = re.search(r"slack sandbox (http://127\.0\.0\.1:\d+/api/)", dev.output()).group(1)
    chat = subprocess.run([*CLI, "chat", "--port", str(dev.port), "--sandbox-url", sandbox_url, "--email", email,
                           "--settle", "1", "--timeout", "60"], cwd=ROOT, env=_env(), input="help\n",
                          capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert f"<{email}>" in chat.stdout.splitlines()[0]  # the chat says who you are
    assert "insightmesh> " in chat.stdout and "&gt;" not in chat.stdout

    found = admin.get("/api/users", params={"email": email}).json()["items"]
    assert len(found) == 1, found  # joined, not a second user with the same address
    assert found[0]["is_admin"] is True
