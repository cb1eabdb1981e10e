"""One evaluation run: every case through the current retrieval, prompt and model, scored, totalled,
and compared with the baseline.

For each case (:func:`evaluate_case`):

1. **retrieval** with the case's access scope (:func:`insightmesh.knowledge.retrieval.retrieve`,
   ``k`` documents' best passages, at most 2 a document, as the worker searches): a directory user is
   resolved to their access now (:func:`~insightmesh.knowledge.retrieval.viewer_for_user`); a fixed
   audience is one viewer per principal list;
2. **the answer** of the assistant agent itself (``AssistantAgent.handle``, without tools), given
   those passages as its retrieval — the same system prompt, grounding prompt and model the
   conversation worker uses, so a prompt change shows here;
3. **scores** (:mod:`insightmesh.evaluation.scoring`): retrieval against the expected sources, the
   answer by the judge. An error (the judge's malformed reply, the model or the store failing) is
   that case's ``error``; the other cases still run.

**Totals** are each score's mean over the cases that have it, with ``cases`` and ``errors``.
**Regression**: a total that fell by more than ``threshold`` from the baseline's — the newest
earlier run of the same source (the job, or the CLI) that did not regress
(:func:`insightmesh.evaluation.cases.baseline`) — or that the baseline had and this run has not.
Comparing with the last good run rather than the last run means a bad deploy keeps failing until
it is fixed, instead of becoming the new normal after one failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pynamodb.exceptions import PynamoDBException

from insightmesh.evaluation.cases import CaseScope, EvalCase, baseline, save_result, save_run
from insightmesh.evaluation.scoring import (
    ANSWER_SCORES,
    RETRIEVAL_SCORES,
    JudgeReplyError,
    judge,
    ranked_documents,
    score_retrieval,
)
from insightmesh.knowledge.base import Audience, Passage, Viewer
from insightmesh.llm.base import LlmClient, LlmError
from insightmesh.observability import get_logger

SCORES: Final = (*RETRIEVAL_SCORES, *ANSWER_SCORES)
PER_DOCUMENT: Final = 2
ANSWER_CHARS: Final = 1_500  # of each answer, kept with its result
logger = get_logger()


def viewer_of_principals(principals: Sequence[str]) -> Viewer:
    """The viewer whose principals these are (``anyone``, ``user:``, ``domain:``, ``group:``)."""
    email = next((p.removeprefix("user:") for p in principals if p.startswith("user:")), None)
    domains = tuple(p.removeprefix("domain:") for p in principals if p.startswith("domain:"))
    groups = tuple(p.removeprefix("group:") for p in principals if p.startswith("group:"))
    return Viewer(email=email, groups=groups, domains=domains)


def audience_of(scope: CaseScope) -> Viewer | Audience:
    """Whose access a case is asked with: a directory user's now, or the fixed audience's."""
    if scope.user_id is not None:
        from insightmesh.knowledge.retrieval import viewer_for_user

        return viewer_for_user(scope.user_id)
    return Audience(tuple(viewer_of_principals(reader) for reader in scope.principals or [["anyone"]]), "members")


def assistant_answer(question: str, passages: Sequence[Passage], llm: LlmClient) -> str:
    """The assistant agent's answer to ``question`` from ``passages`` (no thread, no tools)."""
    from insightmesh.agents.base import AgentContext, AgentThread, AgentUser
    from insightmesh.agents.builtin.assistant import AssistantAgent

    context = AgentContext(user=AgentUser(id="evaluation", name="a colleague"),
                           thread=AgentThread(key="evaluation", team_id="-", channel_id="-", thread_ts=None),
                           text=question, history=(), summary=None, state={}, llm=llm,
                           retrieve=lambda _question: passages)
    return AssistantAgent().handle(context).text


def evaluate_case(case: EvalCase, *, k: int, llm: LlmClient, judge_llm: LlmClient) -> dict[str, Any]:
    """One case's result: its scores (None where not scored), documents, answer excerpt and error."""
    from insightmesh.knowledge.retrieval import retrieve

    result: dict[str, Any] = {"case_id": case.case_id, "question": case.question[:300], "error": None,
                              **{name: None for name in SCORES}}
    try:
        passages = retrieve(case.question, audience_of(case.scope), k=k, per_document=PER_DOCUMENT)
        result["documents"] = [document_id for document_id, _ in ranked_documents(passages)]
        retrieval = score_retrieval(passages, expected_ids=case.expected_ids, expected_titles=case.expected_titles)
        if retrieval is not None:
            result.update(retrieval)
        answer = assistant_answer(case.question, passages, llm)
        result["answer"] = answer[:ANSWER_CHARS]
        scores, comment = judge(judge_llm, case.question, passages, answer)
        result.update(scores)
        result["judge_comment"] = comment
    except (JudgeReplyError, LlmError, PynamoDBException, ValueError, OSError) as error:
        result["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        logger.warning("evaluation case failed", extra={"case_id": case.case_id, "error": result["error"]})
    return result


def totals_of(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Each score's mean over the results that have it, rounded to 4 places; ``cases``, ``errors``."""
    listed = list(results)
    totals: dict[str, Any] = {"cases": len(listed), "errors": sum(1 for r in listed if r.get("error"))}
    for name in SCORES:
        values = [float(r[name]) for r in listed if isinstance(r.get(name), int | float)]
        if values:
            totals[name] = round(sum(values) / len(values), 4)
    return totals


def regressions(totals: dict[str, Any], before: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """The scores that fell by more than ``threshold`` (or vanished) since ``before``."""
    fallen = []
    for name in SCORES:
        if not isinstance(before.get(name), int | float):
            continue
        now = float(totals.get(name) or 0.0)
        if float(before[name]) - now > threshold + 1e-9:
            fallen.append({"score": name, "before": before[name], "after": totals.get(name)})
    return fallen


@dataclass
class Report:
    """A finished run: per-case results, totals, the baseline compared with, what regressed."""

    run_id: str
    results: list[dict[str, Any]]
    totals: dict[str, Any]
    baseline_run_id: str | None = None
    baseline_totals: dict[str, Any] | None = None
    regressed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary (a task run's ``summary``, the CLI's ``--json``)."""
        return {"eval_run_id": self.run_id, "totals": self.totals, "baseline_run_id": self.baseline_run_id,
                "baseline_totals": self.baseline_totals, "regressed": self.regressed}


class RegressionError(RuntimeError):
    """The run's totals fell beyond the threshold: the run fails (its summary says which scores)."""


def finish(run_id: str, source: str, results: list[dict[str, Any]], *, threshold: float) -> Report:
    """Total the results, compare them with ``source``'s baseline and record the run."""
    totals = totals_of(results)
    found = baseline(source)
    report = Report(run_id, results, totals)
    if found is not None:
        report.baseline_run_id, report.baseline_totals = found[0], found[1].get("totals") or {}
        report.regressed = regressions(totals, report.baseline_totals, threshold)
    save_run(run_id, source, {**report.summary, "regressed": report.regressed, "source": source})
    return report


def evaluate(cases: Iterable[EvalCase], *, run_id: str, source: str, k: int, threshold: float, llm: LlmClient,
             judge_llm: LlmClient, record: bool = True,
             on_result: Callable[[dict[str, Any]], None] = lambda _result: None) -> Report:
    """Every case of ``cases`` scored (each result stored under ``run_id`` when ``record``), then
    :func:`finish`: one whole run, as ``insightmesh eval`` makes it."""
    results = []
    for case in cases:
        result = evaluate_case(case, k=k, llm=llm, judge_llm=judge_llm)
        if record:
            save_result(run_id, case.case_id, result)
        results.append(result)
        on_result(result)
    return finish(run_id, source, results, threshold=threshold)


def regression_message(report: Report) -> str:
    fallen = ", ".join(f"{item['score']} {item['before']} -> {item['after']}" for item in report.regressed)
    return f"answer quality regressed since run {report.baseline_run_id}: {fallen}"


__all__ = ["SCORES", "RegressionError", "Report", "assistant_answer", "audience_of", "evaluate", "evaluate_case",
           "finish", "regression_message", "regressions", "totals_of", "viewer_of_principals"]
