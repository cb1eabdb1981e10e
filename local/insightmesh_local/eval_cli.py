"""`insightmesh eval [--cases FILE]`: the nightly answer-quality check, run now, at the terminal.

The same evaluation as the ``answer_quality_eval`` job (:mod:`insightmesh.evaluation.run`), run in
this process against the running ``insightmesh dev``: its tables (in its AWS emulator), the knowledge
base it serves, and the model its job runner is configured with (names and addresses from the dev
server's ``/_local/stack``; a secret comes from the emulator's Secrets Manager or this shell).
``--here`` uses this process's environment as it is instead (tables, ``QDRANT_*``, ``LLM_*``).

Cases: the evaluation set's active cases (``/api/eval-cases``, 👎 feedback), or with ``--cases FILE``
those of a JSON or YAML file — a list (or ``{"cases": [...]}``) of ``{"question", "scope":
{"user_id"} | {"principals": [[...]]}, "expected_ids"?, "expected_titles"?, "notes"?, "case_id"?}``.

Each run is recorded in the eval table and compared with the last run of the same cases (the table's,
or the file's, by name) that did not regress. Output: one line per case on stderr as it is scored,
then a table of per-case scores and the totals on stdout (``--json``: the summary and the results as
JSON). Exit code 0, 1 when a total regressed beyond ``--threshold`` (2 for a bad cases file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from insightmesh_local import local_auth
from insightmesh_local.cli_errors import EXIT_USAGE, CommandError
from insightmesh_local.stack import LOCAL_CREDENTIALS

COLUMNS = (("recall", "recall"), ("hit_at_k", "hit@k"), ("mrr", "mrr"), ("faithfulness", "faithful"),
           ("answers_question", "answers"), ("cites", "cites"))
EXIT_REGRESSED = 1


def _point_at_dev(port: int, data_dir: str | None) -> str:
    """The layer pointed at the running dev server's tables, knowledge base and model."""
    try:
        stack = local_auth.ControlClient(port, data_dir).request("stack")
    except local_auth.ControlError as error:
        raise CommandError(f"{error} (or use --here with this shell's environment)") from error
    os.environ.update({**stack["environment"], **stack.get("evaluation_environment", {}),
                       "AWS_ENDPOINT_URL": stack["endpoint"], "AWS_REGION": stack["region"],
                       "AWS_DEFAULT_REGION": stack["region"], **LOCAL_CREDENTIALS})
    return f"local stack {stack['stack_name']}"


def load_cases(path: Path) -> list[Any]:
    """The cases of a JSON or YAML file, validated (a bad file is a usage error naming the case)."""
    from pydantic import ValidationError

    from insightmesh.evaluation.cases import EvalCase, EvalCaseSpec

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}", exit_code=EXIT_USAGE) from error
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise CommandError(f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}",
                           exit_code=EXIT_USAGE) from error
    listed = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(listed, list) or not listed:
        raise CommandError(f"{path} holds no cases: a list of cases, or {{\"cases\": [...]}}", exit_code=EXIT_USAGE)
    cases = []
    for number, entry in enumerate(listed, start=1):
        try:
            spec = EvalCaseSpec.model_validate(entry)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'case'}: {e['msg']}" for e in error.errors())
            raise CommandError(f"{path}, case {number}: {problems}", exit_code=EXIT_USAGE) from error
        cases.append(EvalCase.from_spec(spec, origin="file", default_id=f"case-{number}"))
    return cases


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def render(results: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The per-case table, the totals, and the comparison with the baseline."""
    width = max([len("case"), *(len(str(r["case_id"])) for r in results)])
    lines = [f"{'case':<{width}}  " + "  ".join(f"{title:>8}" for _, title in COLUMNS) + "  error"]
    for result in results:
        lines.append(f"{result['case_id']:<{width}}  " + "  ".join(f"{_cell(result.get(name)):>8}"
                                                                  for name, _ in COLUMNS)
                     + (f"  {result['error']}" if result.get("error") else ""))
    totals = summary["totals"]
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{_cell(totals.get(name)):>8}" for name, _ in COLUMNS)
                 + f"  {totals['errors']} of {totals['cases']} case(s) failed")
    if summary["baseline_run_id"] is None:
        lines.append("no earlier run to compare with: this run is the baseline")
    elif summary["regressed"]:
        lines.append("REGRESSED since run " + str(summary["baseline_run_id"]) + ": " + ", ".join(
            f"{item['score']} {item['before']} -> {item['after']}" for item in summary["regressed"]))
    else:
        lines.append(f"no regression since run {summary['baseline_run_id']}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    cases_file = Path(args.cases) if args.cases else None
    with contextlib.redirect_stdout(sys.stderr):  # the layer logs JSON lines to stdout, for CloudWatch
        where = "this environment" if args.here else _point_at_dev(args.port, getattr(args, "data_dir", None))
        from insightmesh.evaluation.cases import active_cases
        from insightmesh.evaluation.job import counted
        from insightmesh.evaluation.run import evaluate
        from insightmesh.llm.factory import get_llm_client

        cases = load_cases(cases_file) if cases_file is not None else list(active_cases(args.max_cases))
        if not cases:
            raise CommandError("the evaluation set has no active case: add some with POST /api/eval-cases, "
                               "or give --cases FILE")
        source = f"cli:{cases_file.name}" if cases_file is not None else "cli"
        run_id = f"cli-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        # Counted as the nightly check's calls are (each written before the next: nothing to drain).
        llm = counted(get_llm_client(), run_id, background=False)
        judge_llm = counted(get_llm_client(args.judge_model), run_id, background=False) if args.judge_model else llm
        print(f"evaluating {len(cases)} case(s) on {where} with {llm.name} (run {run_id})", file=sys.stderr)

        def scored(result: dict[str, Any]) -> None:
            state = f"error: {result['error']}" if result.get("error") else "scored"
            print(f"  {result['case_id']}: {state}", file=sys.stderr)

        report = evaluate(cases, run_id=run_id, source=source, k=args.k, threshold=args.threshold, llm=llm,
                          judge_llm=judge_llm, on_result=scored)
    if args.json:
        print(json.dumps({**report.summary, "results": report.results}, indent=2, default=str))
    else:
        print(render(report.results, report.summary))
    return EXIT_REGRESSED if report.regressed else 0


def _unit_interval(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return number


def add_parser(sub: Any) -> None:
    command = sub.add_parser("eval", help="run the answer-quality check now and print per-case scores",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--cases", metavar="FILE", help="cases from a JSON or YAML file instead of the evaluation set")
    command.add_argument("--k", type=int, default=5, choices=range(1, 51), metavar="K",
                         help="documents retrieved per question (default 5)")
    command.add_argument("--threshold", type=_unit_interval, default=0.1,
                         help="a total falling more than this since the last good run is a regression (default 0.1)")
    command.add_argument("--max-cases", type=int, default=None, help="at most this many cases of the evaluation set")
    command.add_argument("--judge-model", help="the judge's model, of the configured provider (default: the model)")
    command.add_argument("--json", action="store_true", help="print the summary and every result as JSON")
    command.add_argument("--port", type=int, default=3000, help="the local dev server's port (default 3000)")
    command.add_argument("--here", action="store_true",
                         help="use this shell's environment (tables, QDRANT_*, LLM_*) instead of the dev server's")
    local_auth.add_data_dir_option(command)
    command.set_defaults(run=cmd_eval)


__all__ = ["add_parser", "cmd_eval", "load_cases", "render"]
