"""The research progress board (research.progress): Slack calls per run, and the cost of one edit.

A profile run's board is driven as the workflow drives it — the plan shown twice (planning, then
the plan), each of six researchers started and finished, synthesis, review and report, then
``close`` — against the Slack sandbox in-process over loopback, with the changes coming at a
given pace (0 s: as fast as the steps can go, e.g. a replay; 1 s and more: real researchers).
For each pace it prints the board changes, the Slack calls they cost by method (the board edits
at most once per second, the latest state following when the second is over), and the p50/p95 of
one board call. Figures are printed, never asserted. chat.update is Slack's Tier 3 (~50 a minute
per workspace, bursts allowed), so what matters is calls per run, not their speed.

    python benchmarks/research_board.py [--paces 0,0.05,0.25,1] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))
sys.path.insert(0, str(ROOT / "local"))
sys.path.insert(0, str(ROOT))

from insightmesh.research import progress  # noqa: E402
from insightmesh.research.base import PlanTask, TaskStatus  # noqa: E402
from insightmesh.slack import client as slack_client  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.research_fixtures import Run  # noqa: E402

RESEARCHERS = ("overview", "people", "financials", "news", "competitors", "technology")
BOARD_METHODS = ("chat.postMessage", "chat.update", "conversations.replies")


def plan() -> list[PlanTask]:
    return [PlanTask("plan", "Plan the research", "complete"),
            *(PlanTask(name, name.capitalize()) for name in RESEARCHERS),
            PlanTask("synthesis", "Synthesis"), PlanTask("review", "Quality check"), PlanTask("report", "Report")]


def changes() -> list[tuple[str, TaskStatus, str]]:
    steps: list[tuple[str, TaskStatus, str]] = []
    for name in RESEARCHERS:
        steps.append((name, "in_progress", "searching the web"))
    for name in RESEARCHERS:
        steps.append((name, "complete", "4 sources"))
    for name in ("synthesis", "review", "report"):
        steps += [(name, "in_progress", ""), (name, "complete", "")]
    return steps


def one_run(sandbox: SlackSandbox, index: int, pace: float) -> tuple[int, Counter[str], list[float]]:
    thread = str(sandbox.add_user_message(channel="C0BENCH", user="U0BENCH", text="profile Acme Corp")["ts"])
    before = len(sandbox.calls())
    run = Run(f"bench-{pace}-{index}", "C0BENCH", thread)
    board = progress.board_for(run, save_ts=lambda _run, _ts: None)
    timings: list[float] = []

    def timed(action: object) -> None:
        started = time.perf_counter()
        action()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)

    timed(lambda: board.show_plan([PlanTask("plan", "Plan the research", "in_progress")]))
    timed(lambda: board.show_plan(plan()))
    steps = changes()
    for task_id, status, detail in steps:
        time.sleep(pace)
        timed(lambda t=task_id, s=status, d=detail: board.update(t, s, d))  # type: ignore[misc]
    timed(lambda: board.close("Done: the report is in this thread (24 sources)."))
    calls = Counter(call["method"] for call in sandbox.calls()[before:] if call["method"] in BOARD_METHODS)
    return 2 + len(steps) + 1, calls, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paces", default="0,0.05,0.25,1", help="seconds between two changes, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per pace")
    args = parser.parse_args()
    sandbox = SlackSandbox(port=0).start()
    os.environ["SLACK_API_URL"], os.environ["SLACK_BOT_TOKEN"] = sandbox.url, "xoxb-bench"
    slack_client.reset_for_tests()
    try:
        print(f"{'pace s':>7} {'changes':>8} {'postMessage':>12} {'update':>7} {'replies':>8} "
              f"{'calls/run':>10} {'p50 ms':>7} {'p95 ms':>7}")
        for pace in (float(p) for p in args.paces.split(",")):
            totals: Counter[str] = Counter()
            timings: list[float] = []
            made = 0
            for index in range(args.runs):
                made, calls, taken = one_run(sandbox, index, pace)
                totals.update(calls)
                timings += taken
            per_run = {method: totals[method] / args.runs for method in BOARD_METHODS}
            timings.sort()
            p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
            print(f"{pace:>7g} {made:>8} {per_run['chat.postMessage']:>12.1f} {per_run['chat.update']:>7.1f} "
                  f"{per_run['conversations.replies']:>8.1f} {sum(per_run.values()):>10.1f} "
                  f"{statistics.median(timings):>7.2f} {p95:>7.2f}")
    finally:
        sandbox.stop()
        slack_client.reset_for_tests()


if __name__ == "__main__":
    main()
