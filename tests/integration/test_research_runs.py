"""The research runs table (insightmesh.research.runs): each access pattern is the request its
docstring names — counted through botocore — and no Scan anywhere."""

from __future__ import annotations

import pytest

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.api.errors import ValidationFailedError
from insightmesh.research import runs
from insightmesh.tools.base import Source

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}


def _create(user_id: str = "U1", **kwargs: object) -> runs.ResearchRun:
    return runs.create_run(kind="profile", user_id=user_id, subject="Acme Corp", question="profile Acme Corp",
                           token_cap=1000, **{**THREAD, **kwargs})  # type: ignore[arg-type]


def test_create_and_get_are_one_request_each(tables, dynamo_calls):
    created: list[runs.ResearchRun] = []
    assert dynamo_calls.operations_during(lambda: created.append(_create())) == ["PutItem"]
    found: list[runs.ResearchRun | None] = []
    assert dynamo_calls.operations_during(lambda: found.append(runs.get_run(created[0].run_id))) == ["GetItem"]
    run = found[0]
    assert run is not None and run.status == "queued" and run.subject == "Acme Corp" and run.token_cap == 1000
    assert run.expires_at is not None and runs.get_run("missing") is None


def test_the_active_run_of_a_thread_is_one_query_on_the_sparse_index(tables, dynamo_calls):
    run = _create()
    _create(channel_id="C2")  # another thread
    found: list[runs.ResearchRun | None] = []
    calls = dynamo_calls.during(lambda: found.append(runs.active_run_in_thread(**THREAD)))
    assert [call.split(":")[0] for call in calls] == ["Query"]
    assert found[0] is not None and found[0].run_id == run.run_id
    assert runs.finish(run.run_id, "succeeded", summary="done")
    assert runs.active_run_in_thread(**THREAD) is None
    assert not runs.finish(run.run_id, "failed", error="late"), "a finished run keeps its first outcome"
    stored = runs.get_run(run.run_id)
    assert stored is not None and stored.status == "succeeded" and stored.error is None
    assert stored.active_thread is None and stored.finished_at is not None


def test_cancel_only_an_active_run(tables, dynamo_calls):
    run = _create()
    assert dynamo_calls.operations_during(lambda: runs.request_cancel(run.run_id, "U2")) == ["UpdateItem"]
    stored = runs.get_run(run.run_id)
    assert stored is not None and stored.cancel_requested and stored.cancel_requested_by == "U2"
    runs.finish(run.run_id, "cancelled")
    assert not runs.request_cancel(run.run_id, "U2")
    assert not runs.request_cancel("missing", "U2")


def test_usage_is_added_atomically_and_steps_are_bounded(tables, dynamo_calls):
    run = _create()
    assert dynamo_calls.operations_during(lambda: runs.add_usage(run.run_id, tokens=120, llm_calls=1)) == ["UpdateItem"]
    assert runs.add_usage(run.run_id, tokens=30, llm_calls=2) == (150, 3)
    runs.record_step(run.run_id, "plan", "in_progress")
    runs.record_step(run.run_id, "plan", "complete", "6 researchers")
    for index in range(runs.MAX_STEPS + 5):
        runs.record_step(run.run_id, f"step-{index}", "pending", "x" * 2000)
    stored = runs.get_run(run.run_id)
    assert stored is not None and len(stored.steps) == runs.MAX_STEPS
    plan = stored.steps[0]
    assert plan.name == "plan" and plan.status == "complete" and plan.detail == "6 researchers"
    assert plan.started_at is not None and plan.ended_at is not None
    assert all(len(step.detail or "") <= runs.MAX_DETAIL for step in stored.steps)


def test_a_report_run_keeps_its_document_bounded(tables):
    document = ReportDocument(title="MEDDIC: Acme", sections=(ReportSection("Metrics", "Saves 20% [1]"),),
                              sources=(Source(title="Acme", url="https://acme.example/", kind="web"),), note="n")
    run = runs.create_run(kind="report", user_id="U1", document=document, **THREAD)
    stored = runs.get_run(run.run_id)
    assert stored is not None and runs.stored_document(stored) == document
    huge = ReportDocument(title="x", sections=(ReportSection("h", "y" * (runs.MAX_DOCUMENT_CHARS + 1)),))
    with pytest.raises(runs.DocumentTooLargeError):
        runs.create_run(kind="report", user_id="U1", document=huge, **THREAD)


def test_listings_are_one_query_per_page_newest_first_with_signed_cursors(tables, dynamo_calls):
    mine = [_create("U1").run_id for _ in range(3)]
    other = _create("U9").run_id
    runs.finish(mine[0], "failed", error="boom")
    dynamo_calls.start()
    first = runs.list_user_runs("U1", limit=2)
    assert dynamo_calls.operations == ["Query"]
    assert [item.run_id for item in first.items] == [mine[2], mine[1]] and first.next_cursor
    second = runs.list_user_runs("U1", limit=2, cursor=first.next_cursor)
    assert [item.run_id for item in second.items] == [mine[0]]
    assert [item.run_id for item in runs.list_runs(limit=10).items] == [other, *reversed(mine)]
    assert [item.run_id for item in runs.list_runs(status="failed").items] == [mine[0]]
    with pytest.raises(ValidationFailedError):  # a cursor of another list
        runs.list_runs(limit=2, cursor=first.next_cursor)
    assert set(dynamo_calls.operations) == {"Query"}, "no Scan, one Query per page"


def test_steps_recorded_in_parallel_are_all_kept(tables, monkeypatch):
    """Two researchers record their steps at once: the second read the run before the first wrote.
    Each writes only its own step, so neither is lost (a list written back whole would lose one)."""
    run = _create()
    stale = runs.get_run(run.run_id)
    runs.record_step(run.run_id, "overview", "complete", "3 sources")
    with monkeypatch.context() as patch:
        patch.setattr(runs, "get_run", lambda *_args, **_kwargs: stale)
        runs.record_step(run.run_id, "people", "in_progress")
    stored = runs.get_run(run.run_id)
    assert stored is not None
    assert [(step.name, step.status) for step in stored.steps] == [("overview", "complete"), ("people", "in_progress")]
