"""Job type ``answer_quality_eval``: the nightly quality check of the assistant's answers.

Each active case of the evaluation set (:mod:`insightmesh.evaluation.cases`, newest first, at most
``max_cases``) is run again through the current retrieval, prompt and model and scored
(:mod:`insightmesh.evaluation.run`); each result is stored under the evaluation run's id, and the
totals go into the task run's summary with the baseline they were compared with.

**Failing on a regression.** When a total fell by more than ``regression_threshold`` (default 0.1)
from the last run of this job that did not regress, the run raises :class:`RegressionError`: the
runner records it ``failed`` with the error's message (which scores, from what to what), so it shows
in ``/api/task-runs?status=failed`` and on the console's dashboard. Its summary keeps the totals and
``regressed``. Every finished run also prints the EMF metric ``EvalRegressed`` (1 or 0) for the
CloudWatch dashboard.

**Deadline.** Between cases the job checks ``should_stop()``; stopped, it saves a checkpoint (the
evaluation run's id) and returns incomplete. The next run continues that evaluation run: the cases
it already scored (its stored results) are skipped and count in its totals.

**Counts.** ``processed``: cases run; ``succeeded``: scored; ``failed``: a case's error (the judge's
malformed reply, the model failing), which never fails the run by itself.

**The judge** is the configured model, or ``judge_model`` of the same provider
(:func:`insightmesh.llm.factory.get_llm_client`).

**Usage.** Every answer and judge call is counted in the usage counters
(:mod:`insightmesh.llm.recording`) under the agent ``answer_quality_eval`` and the model that
answered, with no user, channel or workspace (nobody asked), and the task run's id as the request
id; the writes still in flight are drained before the run returns or raises.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, ClassVar, Final

from pydantic import Field

from insightmesh.evaluation.cases import active_cases, run_results, save_result
from insightmesh.evaluation.run import RegressionError, evaluate_case, finish, regression_message
from insightmesh.job_contract import (
    JobContext,
    JobParameters,
    JobResult,
    checkpoint_matches,
    parameters_fingerprint,
    parameters_of,
)
from insightmesh.llm.base import LlmClient

CHECKPOINT_VERSION: Final = 1
METRICS_NAMESPACE: Final = "InsightMesh"
MAX_CASES: Final = 1_000


class AnswerQualityEvalParameters(JobParameters):
    k: int = Field(default=5, ge=1, le=50, description="Documents retrieved per question (hit@k).")
    regression_threshold: float = Field(default=0.1, ge=0.0, le=1.0,
                                        description="A total falling more than this from the last good run "
                                                    "fails the run.")
    max_cases: int | None = Field(default=None, ge=1, le=MAX_CASES,
                                  description="At most this many active cases, newest first (default: all).")
    judge_model: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="The judge's model, of the configured provider (default: the "
                                                "configured model).")


class AnswerQualityEval:
    """Re-run the evaluation set's cases and fail on a regression."""

    name: ClassVar[str] = "answer_quality_eval"
    title: ClassVar[str] = "Answer quality check"
    description: ClassVar[str] = (
        "Runs every active case of the evaluation set (questions from 👎 feedback and admins) through the "
        "current retrieval, prompt and model; scores retrieval (recall, hit@k, MRR) and the answer (an LLM "
        "judge: faithfulness, answers the question, cites its sources); fails when a total drops by more "
        "than the threshold since the last good run.")
    Parameters: ClassVar[type[JobParameters]] = AnswerQualityEvalParameters

    def run(self, context: JobContext) -> JobResult:
        from insightmesh.llm.usage import drain_usage

        try:
            return self._run(context)
        finally:
            drain_usage()  # the usage recorded in the background, written before the invocation ends

    def _run(self, context: JobContext) -> JobResult:
        from insightmesh.llm.factory import get_llm_client

        parameters = parameters_of(context, AnswerQualityEvalParameters)
        fingerprint = parameters_fingerprint(parameters)
        saved = context.load_checkpoint() or {}
        eval_run_id = context.run_id
        results: list[dict[str, Any]] = []
        if checkpoint_matches(saved, version=CHECKPOINT_VERSION, fingerprint=fingerprint, present=("eval_run_id",)):
            eval_run_id = str(saved["eval_run_id"])
            context.step("read the results of the interrupted run")
            results = run_results(eval_run_id)
        done = {str(result.get("case_id")) for result in results}
        llm = counted(get_llm_client(), context.run_id)
        judge_llm = counted(get_llm_client(parameters.judge_model), context.run_id) if parameters.judge_model else llm
        context.step("list the active cases")
        for case in active_cases(parameters.max_cases):
            if case.case_id in done:
                continue
            if context.should_stop():
                context.save_checkpoint({"version": CHECKPOINT_VERSION, "parameters": fingerprint,
                                         "eval_run_id": eval_run_id})
                return self._counts(results, complete=False, summary={"eval_run_id": eval_run_id})
            context.step(f"case {case.case_id}")
            result = evaluate_case(case, k=parameters.k, llm=llm, judge_llm=judge_llm)
            save_result(eval_run_id, case.case_id, result)
            results.append(result)
            done.add(case.case_id)
            counts = self._counts(results, complete=True)
            context.progress(processed=counts.processed, succeeded=counts.succeeded, failed=counts.failed,
                             summary={"eval_run_id": eval_run_id})
        if not results:
            context.warn("the evaluation set has no active case")
        context.step("compare with the last good run")
        report = finish(eval_run_id, context.job_id, results, threshold=parameters.regression_threshold)
        emit_regressed(context.job_id, bool(report.regressed))
        counts = self._counts(results, complete=True, summary=report.summary)
        if report.regressed:
            # The runner keeps the last progress summary on a failed run: the totals stay visible.
            context.progress(processed=counts.processed, succeeded=counts.succeeded, failed=counts.failed,
                             summary=report.summary)
            raise RegressionError(regression_message(report))
        return counts

    @staticmethod
    def _counts(results: list[dict[str, Any]], *, complete: bool,
                summary: dict[str, Any] | None = None) -> JobResult:
        failed = sum(1 for result in results if result.get("error"))
        return JobResult(processed=len(results), succeeded=len(results) - failed, failed=failed,
                         summary=summary or {}, complete=complete)


def counted(llm: LlmClient, request_id: str, *, background: bool = True) -> LlmClient:
    """``llm`` with each completion counted under the agent ``answer_quality_eval`` and the model
    used, with no user, channel or workspace, and ``request_id`` (the task run's; the CLI's run id).
    ``background``: the caller drains (:func:`insightmesh.llm.usage.drain_usage`)."""
    from insightmesh.llm.recording import recording

    return recording(llm, AnswerQualityEval.name, None, request_id=request_id, background=background)


def emit_regressed(job_id: str, regressed: bool) -> None:
    """One CloudWatch embedded-metric-format line: ``EvalRegressed`` (1 or 0, namespace ``InsightMesh``,
    dimension ``JobId``), which the operations dashboard shows."""
    line = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": METRICS_NAMESPACE, "Dimensions": [["JobId"]], "Metrics": [{"Name": "EvalRegressed",
                                                                              "Unit": "Count"}]}]},
            "JobId": job_id, "EvalRegressed": 1 if regressed else 0}
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


__all__ = ["AnswerQualityEval", "AnswerQualityEvalParameters", "counted", "emit_regressed"]
