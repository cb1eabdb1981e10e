"""A `profile` research run end to end: wall time, LLM calls, tokens, Slack calls and web calls.

`insightmesh dev` on loopback with the Slack sandbox, the offline LLM (its deterministic tool plan)
and the web stand-in (tests/standins/web_server.py: SearXNG-shaped search, pages, a PDF, EDGAR).
A signed ``@InsightMesh profile Acme Corp`` goes to /slack/events in a new thread; the run is the
durable research function's (plan, six researchers with web_search/read_url/sec_filings,
synthesis, review, the PDF uploaded into the thread). One warm-up run first (the research
function's cold start is printed, not counted), then ``--runs`` runs one after another. Per run:

* wall time: from the ack of the event to the PDF shared in the thread (the sandbox's record of
  ``files.completeUploadExternal``); p50 and max;
* LLM calls and tokens: what the run recorded (``GET /api/research-runs/{id}``; the offline LLM's
  tokens are estimated from characters, as its docstring says);
* Slack calls: every Web API call the sandbox recorded while the run went on (the worker's answer,
  the board's posts and edits, the upload), by method, and the board's own (its post and edits);
* web calls: the stand-in's requests during the run, by path.

With the offline LLM the figures are the pipeline's own (Slack, DynamoDB, the durable runtime,
the tools over loopback, the PDF); a real model adds its latency to each of the ~9 LLM calls.
Figures are printed, never asserted.

    python benchmarks/research_profile.py [--runs 5] [--subject "Acme Corp"]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "local"))

import httpx  # noqa: E402

from insightmesh_local import slack_signing as slack  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.e2e.dev_server import DevServer, post_event, running  # noqa: E402
from tests.standins.web_server import WebServer  # noqa: E402

SECRET = "bench-research-secret"
FINISHED = ("succeeded", "failed", "cancelled", "capped")
BOARD_EVENT = "insightmesh_research_progress"  # the progress board's message metadata (research.progress)
RUN_TIMEOUT = 600.0


def admin_client(dev: DevServer) -> httpx.Client:
    made = dev.cli("token", "create", "--email", "bench-admin@corp.example", "--admin")
    if made.returncode != 0:
        raise SystemExit(f"token create failed: {made.stderr}")
    return dev.http(headers={"Authorization": f"Bearer {made.stdout.strip()}"})


def wait(condition: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def one_run(dev: DevServer, admin: httpx.Client, sandbox: SlackSandbox, web: WebServer, seq: int,
            subject: str) -> dict[str, Any]:
    channel, ts = f"C0BENCH{seq:03d}", f"{1796500000 + seq}.{seq:06d}"
    calls_before, web_before = len(sandbox.calls()), web.calls_snapshot()
    with dev.http() as http:
        response = post_event(http, SECRET, slack.app_mention_event("U0BENCH", channel, f"profile {subject}", ts))
    acked = time.time()
    if response.status_code != 200:
        raise SystemExit(f"event refused: {response.status_code} {response.text}")

    def run_of_thread() -> dict[str, Any] | None:
        items = admin.get("/api/research-runs", params={"limit": 20}).json()["items"]
        return next((run for run in items if run["thread_ts"] == ts), None)

    run_id = wait(run_of_thread, 120, "the run to be recorded", 0.2)["run_id"]

    def ended() -> dict[str, Any] | None:
        run = admin.get(f"/api/research-runs/{run_id}").json()
        return run if run["status"] in FINISHED else None

    run = wait(ended, RUN_TIMEOUT, f"run {run_id}", 0.25)
    shared = [call for call in sandbox.calls("files.completeUploadExternal")
              if call["args"].get("channel_id") == channel and call["ok"]]
    calls = sandbox.calls()[calls_before:]
    web_after = web.calls_snapshot()
    boards = [m["ts"] for m in sandbox.messages(channel=channel, thread_ts=ts)
              if (m.get("metadata") or {}).get("event_type") == BOARD_EVENT]
    return {
        "status": run["status"],
        "wall": (float(shared[-1]["at"]) - acked) if shared else None,
        "llm_calls": int(run["llm_calls"]), "tokens": int(run["tokens_used"]),
        "slack": Counter(str(call["method"]) for call in calls),
        "board": Counter(str(call["method"]) for call in calls if call["args"].get("channel") == channel
                         and (call["args"].get("ts") in boards
                              or (call["method"] == "chat.postMessage" and "metadata" in call["args"]
                                  and BOARD_EVENT in str(call["args"]["metadata"])))),
        "web": Counter({path: web_after.get(path, 0) - web_before.get(path, 0) for path in web_after
                        if web_after.get(path, 0) > web_before.get(path, 0)}),
    }


def per_run(counters: list[Counter[str]]) -> str:
    total = Counter[str]()
    for counter in counters:
        total.update(counter)
    listed = ", ".join(f"{key} {count / len(counters):.1f}" for key, count in sorted(total.items()))
    return f"{sum(total.values()) / len(counters):.1f} ({listed})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--subject", default="Acme Corp")
    args = parser.parse_args(argv)
    web = WebServer().start()
    try:
        with SlackSandbox(port=0) as sandbox, running(env={
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": sandbox.url,
            "WEB_SEARCH_PROVIDER": "searxng", "WEB_SEARCH_URL": web.url, "SEC_EDGAR_URL": web.url,
            "SEC_USER_AGENT": "InsightMesh bench bench@corp.example", "READ_URL_ALLOW_HOSTS": f"127.0.0.1:{web.port}",
        }) as dev, admin_client(dev) as admin:
            warm = one_run(dev, admin, sandbox, web, 0, args.subject)
            print(f"profile {args.subject!r} with the offline LLM and the web stand-in")
            print(f"  first run (research function cold): {warm['status']}, "
                  f"{warm['wall']:.2f} s" if warm["wall"] is not None else f"  first run: {warm['status']}, no PDF")
            results = [one_run(dev, admin, sandbox, web, seq, args.subject) for seq in range(1, args.runs + 1)]
    finally:
        web.stop()
    statuses = Counter(result["status"] for result in results)
    walls = [result["wall"] for result in results if result["wall"] is not None]
    print(f"  {len(results)} warm runs: {dict(statuses)}")
    if walls:
        print(f"  wall time, ack → PDF in the thread: p50 {statistics.median(walls):.2f} s, max {max(walls):.2f} s")
    print(f"  LLM calls per run: {statistics.mean(r['llm_calls'] for r in results):.1f}; "
          f"tokens per run (estimated): {statistics.mean(r['tokens'] for r in results):,.0f}")
    print(f"  Slack calls per run: {per_run([r['slack'] for r in results])}")
    print(f"    of which the progress board's: {per_run([r['board'] for r in results])}")
    print(f"  web stand-in calls per run: {per_run([r['web'] for r in results])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
