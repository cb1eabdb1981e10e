"""The control plane over HTTP through `insightmesh dev`: the CLI bootstraps an admin and makes
tokens against the running system; the API is then exercised as scripts would, and fuzzed with
schemathesis against its own OpenAPI document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.dev_server import ROOT, _env, run_cli, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ADMIN, MEMBER = "admin@example.com", "member@example.com"


@pytest.fixture(scope="module")
def dev(dev_logs):
    # Fuzzing sends thousands of requests a minute: lift the per-principal limit for this stack
    # (the limit itself is tested in tests/integration/test_auth_guard.py).
    with running(env={"API_RATE_LIMIT_PER_MINUTE": "100000", "API_IP_RATE_LIMIT_PER_MINUTE": "100000"},
                 log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def tokens(dev):
    bootstrap = dev.cli("admin", "bootstrap", "--email", ADMIN)
    assert bootstrap.returncode == 0, bootstrap.stderr
    assert "is now an admin" in bootstrap.stderr
    again = dev.cli("admin", "bootstrap", "--email", ADMIN)
    assert again.returncode == 0 and "was already an admin" in again.stderr
    admin = dev.cli("token", "create", "--email", ADMIN, "--admin")
    member = dev.cli("token", "create", "--email", MEMBER)
    assert admin.returncode == 0 and member.returncode == 0, admin.stderr + member.stderr
    return {"admin": admin.stdout.strip(), "member": member.stdout.strip()}


@pytest.fixture(scope="module")
def api(dev, tokens):
    def client(role: str | None) -> httpx.Client:
        return dev.http(headers={"Authorization": f"Bearer {tokens[role]}"} if role else {})
    return client


def test_cli_prints_only_the_token_on_stdout(tokens):
    for token in tokens.values():
        assert re.fullmatch(r"imt_[A-Za-z0-9_-]+", token)


def test_cli_without_a_running_system_says_so():
    result = run_cli("token", "create", "--email", "x@example.com", "--port", "9")
    assert result.returncode == 1 and "no insightmesh dev server" in result.stderr and result.stdout == ""


def test_tokens_can_be_listed_and_revoked(dev, api):
    made = dev.cli("token", "create", "--email", "temp@example.com")
    token = made.stdout.strip()
    token_id = token.split("_")[1]
    with dev.http(headers={"Authorization": f"Bearer {token}"}) as temp:
        assert temp.get("/api/me").status_code == 200
        listed = dev.cli("token", "list", "--email", "temp@example.com")
        assert listed.returncode == 0 and f'"token_id": "{token_id}"' in listed.stdout and token not in listed.stdout
        shown = json.loads(listed.stdout.splitlines()[0])
        assert shown["scopes"] == ["admin:read"] and shown["state"] == "active"
        expires = datetime.fromisoformat(shown["expires_at"])
        assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)  # the default lifetime
        assert dev.cli("token", "revoke", "--email", "temp@example.com", token_id).returncode == 0
        assert temp.get("/api/me").status_code == 401
    assert dev.cli("token", "revoke", "--email", "temp@example.com", "nope").returncode == 1


def test_a_token_lifetime_and_scopes_can_be_chosen(dev):
    made = dev.cli("token", "create", "--email", "short@example.com", "--expires-in", "12h",
               "--scope", "admin:read", "--scope", "admin:write")
    assert made.returncode == 0, made.stderr
    assert "scopes admin:read admin:write, expires" in made.stderr
    shown = json.loads(dev.cli("token", "list", "--email", "short@example.com").stdout.splitlines()[0])
    assert shown["scopes"] == ["admin:read", "admin:write"]
    assert timedelta(hours=11) < datetime.fromisoformat(shown["expires_at"]) - datetime.now(UTC) <= timedelta(hours=12)
    forever = dev.cli("token", "create", "--email", "short@example.com", "--expires-in", "never")
    assert forever.returncode == 0 and "never expires" in forever.stderr
    bad = dev.cli("token", "create", "--email", "short@example.com", "--expires-in", "3w")
    assert bad.returncode == 2 and bad.stdout == "" and "--expires-in" in bad.stderr


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "meddic", path)


def test_every_route_requires_authentication(api):
    with api(None) as anonymous:
        document = anonymous.get("/api/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        for path, operations in document["paths"].items():
            for method in operations:
                response = anonymous.request(method.upper(), _concrete(path), json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/health").status_code == 200  # health stays open


def test_admin_and_member(api):
    with api("member") as member, api("admin") as admin:
        me = member.get("/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"]["email"] == MEMBER if "user" in me.json() else me.json()["email"] == MEMBER
        assert member.get("/api/users").status_code == 403
        assert member.post("/api/groups", json={"name": "sneaky"}).status_code == 403
        visible = member.get("/api/agents")
        assert visible.status_code == 200 and {a["name"] for a in visible.json()["items"]} >= {"assistant", "help"}
        assert admin.get("/api/users").status_code == 200
        denied = admin.get("/api/audit", params={"action": "group.create"}).json()["items"]
        assert any(entry["outcome"] == "denied" for entry in denied)


def test_pagination_cap_and_cursor(api):
    with api("admin") as admin:
        assert admin.get("/api/users", params={"limit": 101}).status_code == 422
        assert admin.get("/api/users", params={"limit": 100}).status_code == 200
        first = admin.get("/api/agents", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = admin.get("/api/agents", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert second["items"] and second["items"][0]["name"] != first["items"][0]["name"]
        tampered = first["next_cursor"][:-3] + ("AAA" if not first["next_cursor"].endswith("AAA") else "BBB")
        assert admin.get("/api/agents", params={"cursor": tampered}).status_code == 422


def test_validation_conflicts_and_audit(api):
    with api("admin") as admin:
        assert admin.post("/api/groups", json={"name": "Not A Slug!"}).status_code == 422
        assert admin.post("/api/groups", json={"name": "x" * 200}).status_code == 422
        created = admin.post("/api/groups", json={"name": "sales", "description": "Sales team"})
        assert created.status_code == 201, created.text
        assert admin.post("/api/groups", json={"name": "sales"}).status_code == 409
        assert admin.delete("/api/groups/all_users").status_code in (403, 409)
        assert admin.get("/api/groups/nope").status_code == 404
        agent = admin.get("/api/agents/meddic").json()
        taken = admin.patch("/api/agents/meddic", json={"version": agent["version"], "aliases": ["ask"]})
        assert taken.status_code == 409  # `ask` is the assistant's alias
        edited = admin.patch("/api/agents/meddic", json={"version": agent["version"], "description": "Coach"})
        assert edited.status_code == 200, edited.text
        stale = admin.patch("/api/agents/meddic", json={"version": agent["version"], "description": "Again"})
        assert stale.status_code == 409  # the version moved on
        entries = admin.get("/api/audit", params={"target": "group:sales"}).json()["items"]
        assert any(e["action"] == "group.create" and e["after"] for e in entries), entries
        updates = admin.get("/api/audit", params={"target": "agent:meddic"}).json()["items"]
        assert any(e["action"] == "agent.update" and e["before"] and e["after"] for e in updates), updates


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(dev, tokens, tmp_path: Path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{dev.port}/api/openapi.json",
         "-H", f"Authorization: Bearer {tokens['admin']}",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "8", "--max-time", "75",
         "--seed", "1", "--workers", "1", "--request-timeout", "20", "--no-color",
         "--report-dir", str(tmp_path)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=280)
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert generated and int(generated.group(1)) > 500 and generated.group(1) == generated.group(2), summary
