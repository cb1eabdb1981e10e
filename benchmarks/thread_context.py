"""What reading a thread costs the request path: the Slack calls and the time of
``insightmesh.slack.history.read_thread`` (conversations.replies, paged 200 at a time, names from
users.info through the profile cache) against the local Slack sandbox on loopback.

For threads of each size (default 10, 50, 200, 1000 messages by 8 people), prints the median time
of a read with cold names (the profile cache empty: one users.info per distinct author) and with
warm names, the number of conversations.replies and users.info calls per read, and the size of
the transcript the default bounds (50 messages, 12000 characters) keep. The sandbox answers in
microseconds, so the figures are the client's own work plus loopback HTTP: Slack adds its own
latency per call (typically 50-200 ms), which the call counts let you estimate.

    python benchmarks/thread_context.py [--sizes 10,50,200,1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common" / "python"), str(ROOT / "local"), str(ROOT)]

from insightmesh import resilience  # noqa: E402
from insightmesh.slack import client as slack_client  # noqa: E402
from insightmesh.slack import history, profiles  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402

PEOPLE = [f"U0PERSON{n}" for n in range(8)]


def build_thread(sandbox: SlackSandbox, channel: str, size: int) -> str:
    parent = sandbox.add_user_message(channel=channel, user=PEOPLE[0], text="Kick-off: what ships this week?")["ts"]
    for n in range(size - 1):
        sandbox.add_user_message(channel=channel, user=PEOPLE[(n + 1) % len(PEOPLE)], thread_ts=parent,
                                 text=f"Reply {n}: <@{PEOPLE[n % len(PEOPLE)]}> " + "notes on the plan " * 8)
    return str(parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50,200,1000")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    bounds = history.Bounds(max_messages=50, max_chars=12_000)
    with SlackSandbox(port=0) as sandbox:
        os.environ.update({"SLACK_API_URL": sandbox.url, "SLACK_BOT_TOKEN": "xoxb-benchmark"})
        slack_client.reset_for_tests()
        resilience._breakers.clear()
        sandbox.add_users(*({"id": person, "real_name": f"Person {n}"} for n, person in enumerate(PEOPLE)))
        print(f"{'messages':>8} {'cold ms':>9} {'warm ms':>9} {'replies calls':>14} {'users.info':>11} "
              f"{'kept':>5} {'chars':>6}")
        for size in (int(value) for value in options.sizes.split(",")):
            channel = f"C0BENCH{size}"
            parent = build_thread(sandbox, channel, size)
            cold, warm = [], []
            for _ in range(options.runs):
                profiles.clear_cache()
                before_replies, before_users = len(sandbox.calls("conversations.replies")), len(
                    sandbox.calls("users.info"))
                started = time.perf_counter()
                transcript = history.read_thread(channel, parent, bounds, history.profile_names("T0BENCH"))
                cold.append(time.perf_counter() - started)
                replies_calls = len(sandbox.calls("conversations.replies")) - before_replies
                users_calls = len(sandbox.calls("users.info")) - before_users
                started = time.perf_counter()
                history.read_thread(channel, parent, bounds, history.profile_names("T0BENCH"))
                warm.append(time.perf_counter() - started)
            print(f"{size:>8} {statistics.median(cold) * 1000:>9.1f} {statistics.median(warm) * 1000:>9.1f} "
                  f"{replies_calls:>14} {users_calls:>11} {len(transcript.lines):>5} {len(transcript.body()):>6}")
        sandbox.stop()


if __name__ == "__main__":
    main()
