"""Time from Slack's event to the LLM call, through `insightmesh dev` (warm worker).

One `insightmesh dev` with the Slack sandbox and an OpenAI-compatible stand-in on loopback. Each
sample posts one signed Events API webhook and waits until the stand-in receives the chat
request that carries the question; the figure is that interval (ingress, queue, poller, worker:
gate, directory, routing, permission, audience, retrieval, prompt). Samples run one after another
after a warm-up, each waiting for its answer before the next, and print p50 / p99 in ms:

* ``DM, no knowledge base``      — the bot's DM (message.im), nothing ingested;
* ``DM, knowledge base``         — the same with documents ingested (retrieval on the path);
* ``channel, warm``              — an @mention in a 10-member channel: the members and their
                                   access resolved once, then cached (``CHANNEL_AUDIENCE_CACHE_SECONDS``);
* ``channel, first question``    — each sample in a channel not seen before (conversations.info,
                                   conversations.members and the directory lookups on the path).

    python benchmarks/request_path.py [--samples 40]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from insightmesh_local import slack_signing as slack  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.e2e.dev_server import CLI, DevServer, _env  # noqa: E402
from tests.standins.openai_server import OpenAIStandin, RecordedRequest  # noqa: E402

SECRET = "benchmark-request-path"
TEAM = slack.DEFAULT_TEAM_ID
PEOPLE = [f"U0P{n:04d}" for n in range(10)]
_ts = itertools.count(1)


class TimedStandin(OpenAIStandin):
    """The OpenAI stand-in, noting when each chat request arrived."""

    def __init__(self) -> None:
        super().__init__(0)
        self.arrivals: list[tuple[float, str]] = []
        self.arrived = threading.Condition()

    def _record(self, request: RecordedRequest) -> None:
        super()._record(request)
        body = request.body if isinstance(request.body, dict) else {}
        text = " ".join(str(message.get("content")) for message in body.get("messages") or []
                        if isinstance(message, dict) and message.get("role") == "user")
        with self.arrived:
            self.arrivals.append((time.monotonic(), text))
            self.arrived.notify_all()

    def wait_for(self, marker: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for when, text in self.arrivals:
                    if marker in text:
                        return when
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the LLM never saw {marker!r}")
                self.arrived.wait(left)


def new_ts() -> str:
    n = next(_ts)
    return f"{1799000000 + n}.{n:06d}"


def usage_counted(dev: DevServer, calls: int, timeout: float = 60.0) -> None:
    """Wait until the usage aggregator has counted ``calls`` completions of the model: its first
    batch comes a batching window (5 s) after the first reply, and its cold start (a process and
    its imports) would otherwise land on the samples that follow."""
    dynamodb = dev.aws("dynamodb")
    key = {"subject": {"S": "model#bench"}, "period": {"S": time.strftime("%Y-%m", time.gmtime())}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = dynamodb.get_item(TableName="insightmesh-dev-UsageTable", Key=key, ConsistentRead=True).get("Item")
        if item and int(item["calls"]["N"]) >= calls:
            return
        time.sleep(0.25)
    raise TimeoutError(f"the usage aggregator did not count {calls} completions in {timeout:.0f}s")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args(argv)
    llm = TimedStandin().start_in_thread()
    counter = itertools.count(1)
    with SlackSandbox(port=0) as sandbox:
        sandbox.add_users(*({"id": person, "email": f"person{n}@corp.example"} for n, person in enumerate(PEOPLE)))
        sandbox.set_channel("C0WARM", PEOPLE)
        for person in PEOPLE:
            sandbox.set_channel(f"D{person[1:]}", [], kind="im", user=person)
        dev = DevServer(env={
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": sandbox.url,
            "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-bench-000000000",
            "LLM_MODEL": "bench", "SLACK_USER_RATE_LIMIT_PER_MINUTE": "0"})
        try:
            dev.wait_ready()
            with httpx.Client(base_url=f"http://127.0.0.1:{dev.port}", timeout=30) as http:

                def sample(person: str, channel: str, *, dm: bool) -> float:
                    marker = f"q{next(counter)}x"
                    ts = new_ts()
                    text = f"what does {marker} mean for the travel policy?"
                    event = (slack.message_event(person, channel, text, ts, channel_type="im") if dm else
                             slack.app_mention_event(person, channel, f"<@{slack.DEFAULT_BOT_USER_ID}> {text}", ts))
                    body = slack.json_body(slack.event_callback(TEAM, slack.DEFAULT_APP_ID, event))
                    started = time.monotonic()
                    response = http.post("/slack/events", content=body,
                                         headers=slack.signed_headers(SECRET, body, "application/json"))
                    response.raise_for_status()
                    elapsed = (llm.wait_for(marker) - started) * 1000
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:  # the reply lands before the next sample
                        replies = [m for m in sandbox.messages(channel=channel, thread_ts=ts)
                                   if m.get("is_bot") and marker in m["text"]]
                        if replies:
                            break
                        time.sleep(0.01)
                    return elapsed

                def row(name: str, make: list[tuple[str, str, bool]]) -> None:
                    times = [sample(person, channel, dm=dm) for person, channel, dm in make]
                    p50, p99 = percentiles(times)
                    print(f"{name:<30} n={len(times):<4} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms", flush=True)

                for person in PEOPLE:  # warm-up: every person known, every function warm
                    sample(person, f"D{person[1:]}", dm=True)
                usage_counted(dev, len(PEOPLE))  # ... the usage aggregator too (its own container in AWS)
                n = args.samples
                row("DM, no knowledge base", [(PEOPLE[i % 10], f"D{PEOPLE[i % 10][1:]}", True) for i in range(n)])
                with tempfile.TemporaryDirectory() as folder:
                    for i in range(20):
                        (Path(folder) / f"policy-{i}.md").write_text(
                            f"# Travel policy {i}\n\nEconomy class for flights under {i + 3} hours. The per diem "
                            f"in city {i} is {50 + i} euros. Book through the travel desk.\n")
                    subprocess.run([*CLI, "ingest", folder, "--acl", "domain:corp.example", "--port", str(dev.port)],
                                   cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=120)
                sample(PEOPLE[0], f"D{PEOPLE[0][1:]}", dm=True)  # the vector store's client imported
                sample(PEOPLE[0], "C0WARM", dm=False)  # the channel's members resolved once
                row("DM, knowledge base", [(PEOPLE[i % 10], f"D{PEOPLE[i % 10][1:]}", True) for i in range(n)])
                row("channel, warm", [(PEOPLE[i % 10], "C0WARM", False) for i in range(n)])
                fresh = []
                for i in range(n):
                    channel = f"C0NEW{i:04d}"
                    sandbox.set_channel(channel, PEOPLE)
                    fresh.append((PEOPLE[i % 10], channel, False))
                row("channel, first question", fresh)
        finally:
            dev.stop()
            llm.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
