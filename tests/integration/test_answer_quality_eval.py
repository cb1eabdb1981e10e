"""The nightly quality check (issue 16 §4) against moto, an embedded Qdrant and LLMs on loopback:
an ``answer_quality_eval`` run over a seeded case set scores retrieval and answers; a bad deploy
that drops the citation instruction from the assistant's grounding prompt makes the next run
regressed and failed; a 👎 with a reason becomes one case; a malformed judge reply is one case's
error, not the run's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from insightmesh.agents.builtin import assistant
from insightmesh.conversation import feedback, provenance, replies
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.evaluation import cases, run
from insightmesh.evaluation.cases import CaseScope, EvalCase
from insightmesh.evaluation.scoring import JUDGE_RUBRIC
from insightmesh.jobs.schemas import JobCreate
from insightmesh.knowledge import answers
from insightmesh.knowledge.answers import best_sentences
from insightmesh.knowledge.pipeline import ingest_documents
from insightmesh.llm.base import ChatMessage
from insightmesh.llm.factory import get_llm_client
from insightmesh.llm.offline import OfflineClient
from tests.integration.test_job_runner import ADMIN, run_now
from tests.integration.test_job_runner import jobs as jobs
from tests.knowledge_corpus import generate_corpus
from tests.standins.openai_server import OpenAIStandin
from tests.standins.openai_server import start as start_openai

CITE_INSTRUCTION = "cite the documents you used by number"
_BLOCK = re.compile(r"^\[(\d+)\] [^\n]*\n(.+?)(?=\n\n\[\d+\] |\Z)", re.MULTILINE | re.DOTALL)


def prompt_following_model(body: dict[str, Any]) -> str | None:
    """A model that follows its prompt, deterministically: graded requests get the offline judge's
    scores; an answer quotes the best sentence of passage [1] and cites it only when asked to."""
    system = "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
    question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    if "grade" in system.lower() and "json" in system.lower():
        return OfflineClient().complete([ChatMessage.user(question)], system=system).text
    blocks = _BLOCK.findall(system)
    if not blocks:
        return "I could not find that in the knowledge base."
    number, text = blocks[0]
    sentence = " ".join(best_sentences(question, text, limit=1))
    return f"{sentence} [{number}]" if CITE_INSTRUCTION in system else sentence


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStandin]:
    server, base_url = start_openai(port=0)
    server.set_responder(prompt_following_model)
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_BASE_URL", base_url)
    monkeypatch.setenv("LLM_API_KEY", "sk-eval-test-0000")
    monkeypatch.setenv("LLM_MODEL", "answer-model")
    get_llm_client.cache_clear()
    yield server
    server.stop()
    get_llm_client.cache_clear()


@pytest.fixture
def corpus(knowledge: dict[str, str], jobs: Any) -> list[EvalCase]:
    """The generated handbook ingested, and six of its questions as cases (expected: their document)."""
    documents, questions = generate_corpus(distractors=10)
    assert ingest_documents(documents).failed == 0
    seeded = []
    for number, question in enumerate(questions[:6]):
        case = EvalCase(case_id=f"case-{number}", question=question.text, scope=CaseScope.public(),
                        expected_ids=[question.document_id], origin="admin")
        assert cases.create_case(case)
        seeded.append(case)
    return seeded


def create_eval_job(jobs: Any, **parameters: Any) -> Any:
    body = {"name": "Nightly eval", "job_type": "answer_quality_eval", "schedule": {"expression": "cron(0 3 * * ? *)"},
            "parameters": parameters}
    return jobs.service.create_job(JobCreate.model_validate(body), actor=ADMIN, request_id="req-eval")


def test_a_run_scores_retrieval_and_answers_and_a_prompt_that_drops_citations_fails_the_next(
        corpus: list[EvalCase], model: OpenAIStandin, jobs: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    job = create_eval_job(jobs, k=5)
    first = run_now(jobs, job.job_id)
    assert first.status == "succeeded", first.error
    assert (first.records_processed, first.records_failed) == (6, 0)
    totals = first.summary["totals"]
    assert totals["cases"] == 6 and totals["errors"] == 0
    assert totals["hit_at_k"] == 1.0 and totals["recall"] == 1.0 and totals["mrr"] >= 0.75
    assert totals["cites"] == 1.0 and totals["faithfulness"] >= 0.8
    assert first.summary["baseline_run_id"] is None and first.summary["regressed"] == []
    results = cases.run_results(first.summary["eval_run_id"])
    assert sorted(r["case_id"] for r in results) == [f"case-{n}" for n in range(6)]
    assert all(re.search(r"\[\d\]", r["answer"]) for r in results)
    # Every answer went through the model with the assistant's prompt, and each was judged.
    systems = [r.body["messages"][0]["content"] for r in model.chat_requests()]
    assert sum(1 for s in systems if s.startswith("You are InsightMesh")) == 6
    assert sum(1 for s in systems if s == JUDGE_RUBRIC) == 6
    assert '"EvalRegressed":0' in capsys.readouterr().out

    # A bad deploy: the grounding prompt loses its citation instruction.
    original = answers.knowledge_prompt
    monkeypatch.setattr(assistant, "knowledge_prompt",
                        lambda passages: original(passages).replace(CITE_INSTRUCTION, "mention the documents"))
    second = run_now(jobs, job.job_id)
    assert second.status == "failed" and second.error is not None
    assert second.error.type == "RegressionError"
    assert "cites 1.0 -> 0.0" in second.error.message
    assert second.summary["totals"]["cites"] == 0.0 and second.summary["totals"]["hit_at_k"] == 1.0
    assert [item["score"] for item in second.summary["regressed"]] == ["cites"]
    assert second.summary["baseline_run_id"] == first.summary["eval_run_id"]
    failed = jobs.service.list_runs(job_id=None, status="failed", limit=10, cursor=None)
    assert [r.run_id for r in failed.items] == [second.run_id]
    assert '"EvalRegressed":1' in capsys.readouterr().out

    # Still broken: compared with the last good run, not the failed one, it fails again.
    assert run_now(jobs, job.job_id).status == "failed"
    monkeypatch.undo()


def test_a_malformed_judge_reply_is_the_cases_error_not_the_runs(corpus: list[EvalCase], model: OpenAIStandin,
                                                                 jobs: Any) -> None:
    model.set_responder(None)  # the echo: "LLM: <message>" — no JSON for the judge
    job = create_eval_job(jobs, max_cases=2)
    result = run_now(jobs, job.job_id)
    assert result.status == "succeeded"
    assert (result.records_processed, result.records_succeeded, result.records_failed) == (2, 0, 2)
    errors = [r["error"] for r in cases.run_results(result.summary["eval_run_id"])]
    assert all(error.startswith("JudgeReplyError") for error in errors)
    assert result.summary["totals"]["errors"] == 2 and result.summary["totals"]["hit_at_k"] == 1.0


def test_the_offline_llm_judges_without_a_model(corpus: list[EvalCase], jobs: Any) -> None:
    """LLM_PROVIDER=offline (the dev default): extractive answers that cite, graded deterministically."""
    report = run.evaluate(corpus[:3], run_id="offline-1", source="test", k=5, threshold=0.1,
                          llm=OfflineClient(), judge_llm=OfflineClient())
    assert report.totals["errors"] == 0 and report.totals["cites"] == 1.0 and report.totals["hit_at_k"] == 1.0
    assert 0 < report.totals["faithfulness"] <= 1 and report.regressed == []


def test_an_inactive_case_is_skipped_and_the_deadline_resumes_the_same_evaluation(
        corpus: list[EvalCase], jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.test_job_runner import FakeLambdaContext

    cases.case_item(corpus[0].model_copy(update={"active": False})).save()
    monkeypatch.setenv("JOB_DEADLINE_MARGIN_SECONDS", "5")
    job = create_eval_job(jobs)
    # 12 s left, 1.5 s per look at the clock: the run stops after a few cases.
    stopped = run_now(jobs, job.job_id, FakeLambdaContext(12_000, tick=1_500))
    assert stopped.status == "timed_out" and 0 < stopped.records_processed < 5
    resumed = run_now(jobs, job.job_id)
    assert resumed.status == "succeeded" and resumed.resumed_from == stopped.run_id
    assert resumed.summary["eval_run_id"] == stopped.summary["eval_run_id"]
    assert resumed.records_processed == 5 and resumed.summary["totals"]["cases"] == 5
    scored = sorted(r["case_id"] for r in cases.run_results(resumed.summary["eval_run_id"]))
    assert scored == [f"case-{n}" for n in range(1, 6)]  # each active case once; case-0 is inactive


# -- a 👎 with a reason becomes a case ---------------------------------------------------------------

TEAM, CHANNEL, THREAD = "T0EV", "C0EV", "1796200000.000100"


def answered(request_id: str, *, scope: str, asker: str | None = None, readers: list[list[str]] | None = None,
             where: tuple[str, str, str] = (TEAM, CHANNEL, THREAD), question: str = "what is the refund policy?",
             passage: tuple[str, str] = ("doc-refunds", "Refund policy")) -> None:
    """A request the worker answered in thread ``where`` (team, channel, thread ts), with its provenance."""
    team, channel, thread = where
    message = ConversationRequest(kind=RequestKind.MESSAGE, request_id=request_id, team_id=team, channel_id=channel,
                                  user_id="U0ASKER", text=question, thread_ts=thread)
    claim = replies.claim(message)
    made = provenance.capture(agent="assistant", agent_impl=None, passages=dict([passage]), scope=scope,
                              question=question, answer="the answer [1]", asker=asker, readers=readers)
    replies.set_answered(claim.record, f"{thread[:-3]}200", "assistant", made)


def _vote(request_id: str, action_id: str, *, user: str, reply_ts: str, reason: str | None = None) -> None:
    request = ConversationRequest(kind=RequestKind.ACTION, request_id=f"act:{request_id}:{user}:{action_id}",
                                  team_id=TEAM, channel_id=CHANNEL, user_id=user, ts=reply_ts, thread_ts=THREAD,
                                  action_id=action_id, action_value=request_id)
    feedback.record_vote(request, reason=reason, comment="we changed it in May" if reason else None)


def test_a_down_vote_with_a_reason_becomes_one_case(tables: dict[str, str]) -> None:
    answered("msg:shared", scope="shared", asker="u-asker", readers=[["anyone", "user:a@example.com"],
                                                                      ["anyone", "domain:example.com"]])
    _vote("msg:shared", "feedback_down", user="U2", reply_ts="5.5")  # no reason yet: no case
    assert cases.list_cases(limit=10, cursor=None).items == []
    _vote("msg:shared", "feedback_reason", user="U2", reply_ts="5.5", reason="outdated")
    _vote("msg:shared", "feedback_reason", user="U2", reply_ts="5.5", reason="wrong")  # the same reply again
    _vote("msg:shared", "feedback_up", user="U3", reply_ts="5.5")
    listed = cases.list_cases(limit=10, cursor=None).items
    assert len(listed) == 1
    case = listed[0]
    assert case.origin == "feedback" and case.question == "what is the refund policy?"
    assert case.expected_ids == ["doc-refunds"] and case.notes == "👎 outdated: we changed it in May"
    assert case.scope.principals == [["anyone", "user:a@example.com"], ["anyone", "domain:example.com"]]
    assert case.active and case.created_by == "slack:U2"

    answered("msg:private", scope="private", asker="u-asker", readers=None)
    _vote("msg:private", "feedback_reason", user="U0ASKER", reply_ts="6.6", reason="wrong")
    private = next(c for c in cases.list_cases(limit=10, cursor=None).items if c.case_id != case.case_id)
    assert private.scope.user_id == "u-asker"


def test_a_case_the_table_cannot_take_still_stores_the_vote(tables: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pynamodb.exceptions import PutError

    from insightmesh.conversation.models import FeedbackRecord

    def refuse(*_args: Any, **_kwargs: Any) -> bool:
        raise PutError("simulated: the eval table is unavailable")

    monkeypatch.setattr(cases, "put_if_absent", refuse)
    answered("msg:soft", scope="none", asker=None, readers=None)
    _vote("msg:soft", "feedback_reason", user="U4", reply_ts="7.7", reason="wrong")
    assert FeedbackRecord.get(f"reply#{TEAM}#{CHANNEL}#7.7", "user#U4").reason == "wrong"


def test_an_answers_provenance_keeps_its_asker_and_a_shared_audiences_readers(tables: dict[str, str]) -> None:
    from insightmesh.conversation.audience import AudienceRetriever
    from insightmesh.knowledge.base import Audience, Viewer

    request = ConversationRequest(kind=RequestKind.MESSAGE, request_id="msg:x", team_id=TEAM, channel_id=CHANNEL,
                                  user_id="U0ASKER", text="q", thread_ts=THREAD)
    shared = AudienceRetriever(request, "u-asker", private=False)
    shared._audience = Audience((Viewer("a@example.com"), Viewer(None)), "members")  # as a search found them
    made = provenance.of_answer("assistant", shared, "q", "a")
    assert made is not None and made["scope"] == "shared" and made["asker"] == "u-asker"
    assert made["readers"] == [["anyone", "user:a@example.com", "domain:example.com"], ["anyone"]]
    private = AudienceRetriever(request, "u-asker", private=True)
    private._audience = Audience.of(Viewer("a@example.com"))
    made = provenance.of_answer("assistant", private, "q", "a")
    assert made is not None and made["scope"] == "private" and made["asker"] == "u-asker" and "readers" not in made
    # An audience too large for an evaluation case is left out, never cut (cutting readers widens access).
    many = AudienceRetriever(request, "u-asker", private=False)
    many._audience = Audience(tuple(Viewer(f"p{n}@example.com") for n in range(provenance.MAX_READERS + 1)), "members")
    made = provenance.of_answer("assistant", many, "q", "a")
    assert made is not None and "readers" not in made


# -- usage: the check's LLM calls are counted -------------------------------------------------------


def test_a_runs_answer_and_judge_calls_are_counted_under_its_job_type_with_no_user(
        corpus: list[EvalCase], model: OpenAIStandin, jobs: Any) -> None:
    from datetime import UTC, datetime

    from insightmesh.llm.usage import UsageCall, UsageIndex, UsageRecord, forget_indexed

    forget_indexed()
    job = create_eval_job(jobs, max_cases=2, judge_model="judge-model")
    result = run_now(jobs, job.job_id)
    assert result.status == "succeeded", result.error
    # The run returned: every write is done (drained), each completion under the task run's id.
    calls = list(UsageCall.query(f"request#{result.run_id}"))
    assert sorted(str(call.model) for call in calls) == ["answer-model", "answer-model", "judge-model", "judge-model"]
    assert {(call.agent, call.user_id, call.channel, call.workspace, call.groups) for call in calls} == {
        ("answer_quality_eval", None, None, None, None)}
    assert all(call.prompt_tokens > 0 and call.completion_tokens > 0 for call in calls)
    month = datetime.now(UTC).strftime("%Y-%m")
    agent = UsageRecord.get("agent#answer_quality_eval", month, consistent_read=True)
    assert int(agent.calls) == 4 and int(agent.prompt_tokens) == sum(int(c.prompt_tokens) for c in calls)
    assert int(UsageRecord.get("model#judge-model", month, consistent_read=True).calls) == 2
    # Nobody asked: no user, workspace or channel is charged, and the reports by user list nobody.
    for dimension in ("user", "workspace", "channel"):
        assert UsageIndex.count(f"index#{dimension}") == 0, dimension
    assert UsageIndex.get("index#agent", month).members == {"answer_quality_eval"}  # the report by agent lists it


def test_with_the_usage_queue_a_runs_calls_are_sent_before_it_ends_and_the_aggregator_counts_them(
        corpus: list[EvalCase], model: OpenAIStandin, jobs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the stack (``USAGE_QUEUE_URL`` on every function): one message per call, all sent when
    the run returns, and the aggregator's counters for the job type and no user."""
    from datetime import UTC, datetime

    import boto3

    from insightmesh.llm.usage import USAGE_QUEUE_VARIABLE, UsageCall, UsageIndex, UsageRecord, forget_indexed
    from tests.integration.test_usage_aggregate import Context, handler, received

    forget_indexed()
    queue = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="usage-eval")["QueueUrl"]
    monkeypatch.setenv(USAGE_QUEUE_VARIABLE, queue)
    result = run_now(jobs, create_eval_job(jobs, max_cases=2).job_id)
    assert result.status == "succeeded", result.error
    records = received(queue)
    assert len(records) == 4  # an answer and a judgement per case
    assert {json.loads(r["body"])["call"]["request_id"] for r in records} == {result.run_id}
    assert handler().lambda_handler({"Records": records}, Context()) == {"batchItemFailures": []}
    month = datetime.now(UTC).strftime("%Y-%m")
    assert int(UsageRecord.get("agent#answer_quality_eval", month, consistent_read=True).calls) == 4
    assert int(UsageRecord.get("model#answer-model", month, consistent_read=True).calls) == 4
    assert {call.user_id for call in UsageCall.query(f"request#{result.run_id}")} == {None}
    assert UsageIndex.count("index#user") == 0
