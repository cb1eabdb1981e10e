"""Limiting an agent to a group, end to end through `insightmesh dev` (issue 12, items 1 and 2).

An admin does what the README says, over HTTP with a CLI-made token: make the group `sales`, add
Sam to it by e-mail, set `meddic`'s visibility to `restricted` and grant it to `sales`. Then Sam,
in Slack, is coached by meddic; Olly, who is not in sales, gets the reply that says how to get
access, and his `help` neither lists nor suggests meddic. Grants that would change nothing (an
allow on a public agent) are 409s that say what to do.
"""

from __future__ import annotations

import itertools

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running
from tests.helpers import wait_for

SECRET = "e2e-agent-access-secret"
ADMIN = "boss@corp.example"
SAM, OLLY = "U0SAM", "U0OLLY"
SAM_EMAIL, OLLY_EMAIL = "sam@corp.example", "olly@corp.example"
CHANNEL = "C0ACCESS"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1799000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def sandbox(sandbox):
    sandbox.add_users({"id": SAM, "real_name": "Sam Seller", "email": SAM_EMAIL},
                      {"id": OLLY, "real_name": "Olly Outsider", "email": OLLY_EMAIL})
    return sandbox


@pytest.fixture(scope="module")
def dev(sandbox, dev_logs):
    with running(env={"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-e2e-access",
                      "SLACK_API_URL": sandbox.url}, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def admin(dev):
    assert dev.cli("admin", "bootstrap", "--email", ADMIN).returncode == 0
    made = dev.cli("token", "create", "--email", ADMIN, "--admin")
    assert made.returncode == 0, made.stderr
    with dev.http(headers={"Authorization": f"Bearer {made.stdout.strip()}"}) as client:
        yield client


@pytest.fixture(scope="module")
def slack_http(dev):
    with dev.http() as client:
        yield client


def ask(slack_http, sandbox, user: str, text: str) -> str:
    """``@InsightMesh <text>`` from ``user`` in a new thread; the bot's final answer there."""
    ts = new_ts()
    response = post_event(slack_http, SECRET, slack.app_mention_event(user, CHANNEL, text, ts, None))
    assert response.status_code == 200, response.text

    def final() -> str | None:
        for message in sandbox.messages(channel=CHANNEL, thread_ts=ts):
            if not message.get("is_bot") or message.get("ephemeral"):
                continue
            # The worker's last edit says "answered" in its metadata; a placeholder says "placeholder".
            status = ((message.get("metadata") or {}).get("event_payload") or {}).get("status")
            if status == "answered" or (not status and "Thinking" not in message["text"]
                                        and not message.get("streaming")):  # a streamed answer, still growing
                return str(message["text"])
        return None

    return wait_for(final, timeout=60, what=f"the answer to {text!r} from {user}")


def test_meddic_restricted_to_sales_by_e_mail(dev, sandbox, admin, slack_http):
    # Before they have talked to the assistant, the directory does not know them: a 404 that says how to find people.
    assert admin.post("/api/groups", json={"name": "sales", "description": "Sales team"}).status_code == 201
    unknown = admin.post("/api/groups/sales/members", json={"email": SAM_EMAIL})
    assert unknown.status_code == 404, unknown.text
    assert "GET /api/users?email=" in unknown.json()["error"]["message"]
    for user in (SAM, OLLY):  # first contact puts them in the directory, with their Slack e-mail
        assert "meddic" in ask(slack_http, sandbox, user, "help")

    added = admin.post("/api/groups/sales/members", json={"email": SAM_EMAIL})
    assert added.status_code == 201, added.text
    assert added.json()["email"] == SAM_EMAIL
    public = admin.post("/api/agents/meddic/grants", json={"principal_type": "group", "principal_id": "sales"})
    assert public.status_code == 409, public.text
    assert public.json()["error"]["message"].startswith(
        "meddic is public: set visibility to restricted to limit it to grants")
    meddic = admin.get("/api/agents/meddic").json()
    assert meddic["visibility"] == "public"
    restricted = admin.patch("/api/agents/meddic", json={"version": meddic["version"], "visibility": "restricted"})
    assert restricted.status_code == 200 and restricted.json()["visibility"] == "restricted", restricted.text
    granted = admin.post("/api/agents/meddic/grants", json={"principal_type": "group", "principal_id": "sales"})
    assert granted.status_code == 201, granted.text
    assert admin.post("/api/agents/meddic/grants",
                      json={"principal_type": "group", "principal_id": "sales"}).status_code == 409  # again

    coached = ask(slack_http, sandbox, SAM, "meddic we met their VP of sales today")
    assert "MEDDPICC" in coached and "don't have access" not in coached
    refused = ask(slack_http, sandbox, OLLY, "meddic we met their VP of sales today")
    assert "don't have access" in refused and "MEDDPICC coach" in refused
    assert "Ask an InsightMesh admin to grant you access" in refused and "`help`" in refused
    olly_help = ask(slack_http, sandbox, OLLY, "help")
    assert "meddic" not in olly_help.lower() and "assistant" in olly_help
    assert "meddic" in ask(slack_http, sandbox, SAM, "help")

    audit = admin.get("/api/audit", params={"target": "agent:meddic"}).json()["items"]
    changes = [(entry["action"], (entry["after"] or {}).get("visibility")) for entry in audit
               if entry["outcome"] == "allowed"]
    assert ("agent.update", "restricted") in changes and ("grant.put", None) in changes


def test_help_cannot_be_restricted(admin):
    version = admin.get("/api/agents/help").json()["version"]
    refused = admin.patch("/api/agents/help", json={"version": version, "visibility": "restricted"})
    assert refused.status_code == 409 and "help must stay public" in refused.json()["error"]["message"]
