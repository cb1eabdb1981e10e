"""The research runs in the admin API (insightmesh.admin.research_runs) through the real handler:
admins list every run, the asker reads their own, anyone else is refused (403) or told it does not
exist (404)."""

from __future__ import annotations

from typing import Any

from insightmesh.research import runs
from tests.integration.test_admin_api import ADMIN_ID, MEMBER_ID, Api
from tests.integration.test_admin_api import api as api

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}


def _run(user_id: str, subject: str) -> str:
    return runs.create_run(kind="profile", user_id=user_id, subject=subject, question=f"profile {subject}",
                           token_cap=1000, **THREAD).run_id


def test_admins_list_every_run_newest_first_and_by_status(api: Api) -> None:
    first, second = _run(MEMBER_ID, "Acme"), _run(ADMIN_ID, "Globex")
    runs.finish(first, "failed", error="boom")
    page: Any = api.ok("GET", "/api/research-runs", query={"limit": "1"})
    assert [item["run_id"] for item in page["items"]] == [second] and page["next_cursor"]
    rest: Any = api.ok("GET", "/api/research-runs", query={"limit": "1", "cursor": page["next_cursor"]})
    assert [item["run_id"] for item in rest["items"]] == [first]
    failed: Any = api.ok("GET", "/api/research-runs", query={"status": "failed"})
    assert [(item["run_id"], item["error"]) for item in failed["items"]] == [(first, "boom")]
    assert api.call("GET", "/api/research-runs", query={"status": "lost"}).status == 422
    assert api.call("GET", "/api/research-runs", as_="member").status == 403


def test_the_asker_and_admins_read_a_run_and_nobody_else(api: Api, dynamo_calls: Any, tables: dict[str, str]) -> None:
    mine = _run(MEMBER_ID, "Acme")
    runs.record_step(mine, "plan", "complete", "6 researchers")
    runs.add_usage(mine, tokens=120, llm_calls=1)
    theirs = _run(ADMIN_ID, "Globex")
    dynamo_calls.start()
    body: Any = api.ok("GET", f"/api/research-runs/{mine}", as_="member")
    dynamo_calls.stop()
    table = tables["RESEARCH_RUNS_TABLE"]
    assert [call for call in dynamo_calls.calls if call.endswith(f":{table}")] == [f"GetItem:{table}"]
    assert "Scan" not in dynamo_calls.operations
    assert body["run_id"] == mine and body["subject"] == "Acme" and body["status"] == "queued"
    assert body["steps"][0]["name"] == "plan" and body["tokens_used"] == 120 and body["llm_calls"] == 1
    assert "document" not in body
    assert api.ok("GET", f"/api/research-runs/{mine}")["run_id"] == mine  # an admin
    assert api.call("GET", f"/api/research-runs/{theirs}", as_="member").status == 404
    assert api.call("GET", "/api/research-runs/missing", as_="member").status == 404
    assert api.call("GET", "/api/research-runs/not%20an%20id").status in (404, 422)
    assert api.call("GET", f"/api/research-runs/{mine}", as_=None).status == 401


def test_me_lists_only_the_callers_runs(api: Api) -> None:
    mine = [_run(MEMBER_ID, f"Acme {n}") for n in range(2)]
    _run(ADMIN_ID, "Globex")
    page: Any = api.ok("GET", "/api/me/research-runs", as_="member")
    assert [item["run_id"] for item in page["items"]] == list(reversed(mine)) and page["next_cursor"] is None
