"""Documents shared with an admin-made group, end to end through `insightmesh dev`: an admin makes
the group ``sales`` over the API and adds Alice; `insightmesh ingest --acl group:sales` submits a
file; Alice's DM question is answered from it, Bob's (not in the group) is not. The admin lists the
document with GET /api/knowledge/documents, and the ingest is in the audit log."""

from __future__ import annotations

import itertools

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running
from tests.e2e.test_slack_conversations import bot_messages, is_final
from tests.helpers import wait_for

SECRET = "e2e-group-documents-secret"
ADMIN = "admin@corp.example"
ALICE, BOB = "U0GALICE", "U0GBOB"
FACT = "twelve million euros"
QUESTION = "what is the Q3 pipeline target for the sales team?"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1799000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def dev(sandbox, dev_logs):
    sandbox.add_users({"id": ALICE, "real_name": "Alice Archer", "email": "alice@corp.example"},
                      {"id": BOB, "real_name": "Bob Baker", "email": "bob@corp.example"})
    for user in (ALICE, BOB):
        sandbox.set_channel(f"D{user}", [], kind="im", user=user)
    with running(env={"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-e2e-groups",
                      "SLACK_API_URL": sandbox.url, "LLM_PROVIDER": "offline",
                      "CHANNEL_AUDIENCE_CACHE_SECONDS": "0",
                      # Alice and Bob say hello before the first ingest: search on every question
                      "KNOWLEDGE_EMPTY_RECHECK_SECONDS": "0"}, log_dir=dev_logs) as server:
        yield server


def dm(http, sandbox, user: str, text: str) -> str:
    ts = new_ts()
    response = post_event(http, SECRET, slack.message_event(user, f"D{user}", text, ts, channel_type="im"))
    assert response.status_code == 200, response.text

    def answered():
        replies = [m for m in bot_messages(sandbox, ts, f"D{user}") if is_final(m)]  # not still streaming
        return replies or None
    return wait_for(answered, timeout=60, what=f"an answer to {user}")[-1]["text"]


@pytest.fixture(scope="module")
def admin(dev, http):
    assert dev.cli("admin", "bootstrap", "--email", ADMIN).returncode == 0
    made = dev.cli("token", "create", "--email", ADMIN, "--admin")
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


@pytest.fixture(scope="module")
def sales(dev, http, sandbox, admin):
    """Alice and Bob have talked to the bot (the directory knows them); Alice is in ``sales``."""
    for user in (ALICE, BOB):
        dm(http, sandbox, user, "hello")
    created = http.post("/api/groups", json={"name": "sales", "description": "The sales team"}, headers=admin)
    assert created.status_code == 201, created.text
    found = http.get("/api/users", params={"email": "alice@corp.example"}, headers=admin).json()["items"]
    added = http.post("/api/groups/sales/members", json={"user_id": found[0]["user_id"]}, headers=admin)
    assert added.status_code == 201, added.text


def test_a_group_members_dm_answer_uses_the_document_and_an_outsiders_does_not(dev, http, sandbox, admin, sales,
                                                                                tmp_path):
    folder = tmp_path / "sales"
    folder.mkdir()
    (folder / "pipeline.md").write_text(f"# Pipeline target\n\nThe Q3 pipeline target for the sales team is {FACT}.\n")
    typo = dev.cli("ingest", str(folder), "--acl", "group:sles", timeout=120)
    assert typo.returncode == 1 and "no directory group named 'sles'" in typo.stderr, typo.stderr
    done = dev.cli("ingest", str(folder), "--acl", "group:sales", timeout=120)
    assert done.returncode == 0, done.stderr

    member = dm(http, sandbox, ALICE, QUESTION)
    assert FACT in member and "pipeline.md" in member
    outsider = dm(http, sandbox, BOB, QUESTION)
    assert FACT not in outsider and "pipeline.md" not in outsider

    listed = http.get("/api/knowledge/documents", params={"acl": "group:sales"}, headers=admin)
    assert listed.status_code == 200, listed.text
    [document] = listed.json()["items"]
    assert (document["title"], document["acl"], document["status"], document["source"]) == (
        "pipeline.md", ["group:sales"], "indexed", f"local:{folder}")
    assert document["chunks"] >= 1 and document["last_error"] is None

    audited = http.get("/api/audit", params={"target": f"knowledge:local:{folder}"}, headers=admin).json()["items"]
    outcomes = [(entry["action"], [(item["title"], item["outcome"], item["acl"])
                                   for item in entry["after"]["documents"]]) for entry in audited]
    assert outcomes == [("knowledge.ingest", [("pipeline.md", "new", ["group:sales"])]),  # newest first
                        ("knowledge.ingest", [("pipeline.md", "rejected", ["group:sles"])])]
    assert all(entry["actor"].startswith("cli") for entry in audited)
