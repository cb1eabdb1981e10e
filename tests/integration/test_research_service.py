"""Starting and cancelling research runs (insightmesh.research.service) against moto's tables."""

from __future__ import annotations

import pytest

from insightmesh.agents.base import ReportDocument, ReportSection, ResearchRequest
from insightmesh.knowledge.base import Audience, Viewer
from insightmesh.research import launcher, runs, service

THREAD = {"team_id": "T1", "channel_id": "C1", "thread_ts": "1700000000.000100"}
REQUEST = ResearchRequest(kind="profile", subject="Acme Corp", question="profile Acme Corp")


@pytest.fixture
def started(tables, monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(launcher, "start_execution", calls.append)
    return calls


def test_start_records_the_run_then_starts_its_execution(started, monkeypatch, dynamo_calls):
    monkeypatch.setenv("RESEARCH_MAX_TOKENS", "")  # a blank template parameter: the default cap
    run_ids: list[str] = []
    operations = dynamo_calls.operations_during(
        lambda: run_ids.append(service.start_research(REQUEST, user_id="U1", **THREAD)))
    assert operations == ["PutItem", "Query"], "one Query for a running run in the thread, one PutItem"
    assert started == run_ids
    run = runs.get_run(run_ids[0])
    assert run is not None and run.status == "queued" and run.kind == "profile" and run.subject == "Acme Corp"
    assert run.token_cap == 200_000


def test_a_second_study_in_the_same_thread_is_refused_until_the_first_ends(started):
    first = service.start_research(REQUEST, user_id="U1", **THREAD)
    with pytest.raises(service.ResearchBusyError) as refused:
        service.start_research(REQUEST, user_id="U2", **THREAD)
    assert refused.value.run_id == first and "stop" in refused.value.user_message
    runs.finish(first, "succeeded")
    assert service.start_research(REQUEST, user_id="U2", **THREAD) != first


def test_a_run_that_cannot_start_is_marked_failed_and_says_so(tables, monkeypatch):
    monkeypatch.delenv(launcher.FUNCTION_ENV, raising=False)  # the real launcher: not configured
    with pytest.raises(service.ResearchNotStartedError) as failed:
        service.start_research(REQUEST, user_id="U1", **THREAD)
    assert failed.value.user_message == service.NOT_STARTED_MESSAGE
    run = runs.get_run(failed.value.run_id or "")
    assert run is not None and run.status == "failed" and "RESEARCH_FUNCTION_NAME" in (run.error or "")
    assert runs.active_run_in_thread(**THREAD) is None, "a failed start does not block the thread"


def test_an_unknown_kind_is_refused_before_anything_is_recorded(started):
    with pytest.raises(service.ResearchError):
        service.start_research(ResearchRequest(kind="poem", subject="x", question="x"), user_id="U1", **THREAD)
    assert started == []


def test_a_report_is_handed_to_a_report_run_that_does_not_block_the_thread(started):
    document = ReportDocument(title="MEDDIC: Acme", sections=(ReportSection("Metrics", "Saves 20%"),))
    run_id = service.start_report(document, user_id="U1", **THREAD)
    assert started == [run_id]
    run = runs.get_run(run_id)
    assert run is not None and run.kind == "report" and runs.stored_document(run) == document
    assert service.start_research(REQUEST, user_id="U1", **THREAD) in started


def test_cancel_in_thread_asks_the_active_run_to_stop(started, dynamo_calls):
    run_id = service.start_research(REQUEST, user_id="U1", **THREAD)
    counts: list[int] = []
    operations = dynamo_calls.operations_during(
        lambda: counts.append(service.cancel_in_thread(user_id="U2", **THREAD)))
    assert counts == [1] and operations == ["Query", "UpdateItem"]
    run = runs.get_run(run_id)
    assert run is not None and run.cancel_requested and run.cancel_requested_by == "U2"
    assert service.cancel_in_thread(user_id="U2", team_id="T1", channel_id="C9", thread_ts="1.2") == 0


def test_the_enabled_tools_and_the_readers_are_kept_on_the_run(started):
    readers = Audience((Viewer(email="ann@acme.example"),), "members")
    run_id = service.start_research(REQUEST, user_id="U1", tools=frozenset({"web_search", "read_url"}),
                                    audience=readers, **THREAD)
    run = runs.get_run(run_id)
    assert run is not None and run.tools == ["read_url", "web_search"] and runs.stored_audience(run) == readers
    crowd = Audience(tuple(Viewer(email=f"user{n}@acme.example", groups=("g" * 60,)) for n in range(2000)), "members")
    big = runs.get_run(service.start_research(REQUEST, user_id="U1", audience=crowd, team_id="T1", channel_id="C2",
                                              thread_ts="1.1"))
    assert big is not None and big.audience is None, "too many readers to keep: no knowledge search at all"
