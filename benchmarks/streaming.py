"""Streamed answers: how soon the answer shows in Slack, and how many Slack calls it costs.

`insightmesh dev` on loopback with the Slack sandbox and the OpenAI stand-in streaming a 400-token
answer at 50 tokens/s (eight seconds of writing, as a real model would). Signed app_mention events
go to /slack/events; for each answer it prints:

* ack → first visible text: from the moment the ack came back to the moment the sandbox recorded
  the first text of the answer (``chat.startStream``, or the first ``chat.update`` of the
  placeholder that is not "Thinking…"); p50 / p95;
* LLM first token → first visible text: the same, from when the LLM stand-in received the request
  (it sends its first token at once). Target: at most 1.5 s;
* Slack calls per answer, by method;
* the 20-concurrent-threads round: every method's busiest minute against its Slack rate tier
  (per workspace, per app: Tier 2 ≈ 20/min, Tier 3 ≈ 50/min, Tier 4 ≈ 100/min; chat.postMessage
  is "special", about 1 per second per channel). The tiers are Slack's published ones: chat.update
  Tier 3, chat.delete Tier 3, chat.startStream and chat.stopStream Tier 2 (docs.slack.dev), and
  chat.appendStream Tier 4 — Slack allows bursts above these, so a figure over its tier means
  "would be throttled (429, Retry-After) under sustained load", not "fails".

Figures are printed, never asserted.

    python benchmarks/streaming.py [--sequential 10] [--concurrent 20] [--tokens 400] [--rate 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "local"))

from insightmesh_local import slack_signing as slack  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.e2e.dev_server import post_event, running  # noqa: E402
from tests.standins.openai_server import OpenAIStandin, RecordedRequest  # noqa: E402

SECRET = "bench-stream-secret"
TIERS = {"chat.startStream": ("Tier 2", 20), "chat.stopStream": ("Tier 2", 20), "chat.appendStream": ("Tier 4", 100),
         "chat.update": ("Tier 3", 50), "chat.delete": ("Tier 3", 50), "conversations.replies": ("Tier 3", 50),
         "chat.postMessage": ("special: ~1/s per channel", 60)}


class TimedStandin(OpenAIStandin):
    """The OpenAI stand-in, noting when each chat request arrived (its first token leaves then)."""

    arrivals: dict[str, float]

    def _record(self, request: RecordedRequest) -> None:
        super()._record(request)
        body = request.body if isinstance(request.body, dict) else {}
        question = next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"),
                        None)
        if isinstance(question, str):
            self.arrivals.setdefault(question.split("#")[-1].strip(), time.time())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_text_at(sandbox: SlackSandbox, channel: str) -> float | None:
    for call in sandbox.calls():
        if call["args"].get("channel") != channel or not call["ok"]:
            continue
        if call["method"] == "chat.startStream":
            return float(call["at"])
        if call["method"] == "chat.update" and "Thinking" not in str(call["args"].get("text") or ""):
            return float(call["at"])
    return None


def answered(sandbox: SlackSandbox, channel: str) -> bool:
    return any(((m.get("metadata") or {}).get("event_payload") or {}).get("status") == "answered"
               for m in sandbox.messages(channel=channel) if m.get("is_bot") and not m.get("deleted"))


def ask(dev: Any, channel: str, tag: str, seq: int) -> float:
    ts = f"{1798000000 + seq}.{seq:06d}"
    text = f"<@{slack.DEFAULT_BOT_USER_ID}> tell me everything #{tag}"
    with dev.http() as http:
        response = post_event(http, SECRET, slack.app_mention_event("U0BENCH", channel, text, ts))
    acked = time.time()
    if response.status_code != 200:
        raise SystemExit(f"event refused: {response.status_code} {response.text}")
    return acked


def wait_all(sandbox: SlackSandbox, channels: list[str], deadline: float) -> None:
    while time.time() < deadline and not all(answered(sandbox, channel) for channel in channels):
        time.sleep(0.25)


def report(sandbox: SlackSandbox, llm: TimedStandin, acks: dict[str, float], label: str) -> None:
    from_ack, from_token, calls = [], [], []
    for channel, acked in acks.items():
        shown = first_text_at(sandbox, channel)
        if shown is None:
            print(f"  {channel}: no visible text")
            continue
        from_ack.append(shown - acked)
        token = llm.arrivals.get(channel)
        if token is not None:
            from_token.append(shown - token)
        calls.append(Counter(c["method"] for c in sandbox.calls() if c["args"].get("channel") == channel))
    if not from_ack:
        return
    print(f"{label}: {len(from_ack)} answers")
    print(f"  ack → first visible text      p50 {statistics.median(from_ack):6.2f} s   "
          f"p95 {pct(from_ack, 0.95):6.2f} s")
    if from_token:
        print(f"  LLM first token → first text  p50 {statistics.median(from_token):6.2f} s   "
              f"p95 {pct(from_token, 0.95):6.2f} s   (target ≤ 1.5 s)")
    total = Counter[str]()
    for counter in calls:
        total.update(counter)
    per = ", ".join(f"{method} {count / len(calls):.1f}" for method, count in sorted(total.items()))
    print(f"  Slack calls per answer: {sum(total.values()) / len(calls):.1f} ({per})")


def busiest_minute(sandbox: SlackSandbox, channels: set[str]) -> None:
    by_method: dict[str, list[float]] = defaultdict(list)
    for call in sandbox.calls():
        if call["args"].get("channel") in channels:
            by_method[call["method"]].append(float(call["at"]))
    print("  busiest 60 s per method (all threads) vs Slack's tier:")
    for method, times in sorted(by_method.items()):
        times.sort()
        peak = max(sum(1 for t in times if start <= t < start + 60) for start in times)
        tier, limit = TIERS.get(method, ("?", 0))
        verdict = "within" if limit and peak <= limit else "over (bursts are throttled)" if limit else "?"
        print(f"    {method:24s} {peak:4d} calls   {tier:28s} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args(argv)
    llm = TimedStandin(port=0)
    llm.arrivals = {}
    llm.start_in_thread()
    llm.set_reply(" ".join(f"token{i}" for i in range(args.tokens)))
    llm.apply_control({"stream_rate": args.rate})
    with SlackSandbox(port=0) as sandbox, running(env={
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": sandbox.url,
        "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-bench-0000000000",
        "LLM_MODEL": "bench-model", "WORKER_TIMEOUT": "60",
    }) as dev:
        print(f"LLM stand-in: {args.tokens} tokens at {args.rate:g} tokens/s "
              f"({args.tokens / args.rate:.1f} s of streaming per answer)")
        seq = 0
        ask(dev, "C0WARM", "C0WARM", seq)  # a cold worker is not what is measured
        wait_all(sandbox, ["C0WARM"], time.time() + 120)
        acks: dict[str, float] = {}
        for index in range(args.sequential):
            seq += 1
            channel = f"C0SEQ{index:02d}"
            acks[channel] = ask(dev, channel, channel, seq)
            wait_all(sandbox, [channel], time.time() + 120)
        report(sandbox, llm, acks, "one at a time")
        channels = [f"C0CON{index:02d}" for index in range(args.concurrent)]
        with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
            times = list(pool.map(lambda item: ask(dev, item[1], item[1], 1000 + item[0]), enumerate(channels)))
        wait_all(sandbox, channels, time.time() + 300)
        report(sandbox, llm, dict(zip(channels, times, strict=True)), f"{args.concurrent} threads at once")
        busiest_minute(sandbox, set(channels))
    llm.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
