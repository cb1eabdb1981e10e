"""The agent loop's own cost (insightmesh.tools.loop), apart from the model's and the tools' time.

In process, on loopback, nothing asserted:

* offline: ``run_tool_loop`` with the offline provider's plan (a knowledge_search step, then the
  answer) and an in-memory retrieve, against one plain ``complete`` — the loop's bookkeeping, the
  thread per tool call and its deadline;
* OpenAI stand-in: the same two steps over HTTP (a scripted ``tool_calls`` answer, then text)
  against two plain ``complete`` calls — what the loop adds beyond the two requests;
* the assistant with no tool enabled (``context.tools is None``): its answer path is the one it
  had before tools existed; printed for reference.

    python benchmarks/tool_loop.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))

from insightmesh import resilience  # noqa: E402
from insightmesh.agents.base import AgentContext, AgentThread, AgentUser  # noqa: E402
from insightmesh.agents.builtin.assistant import AssistantAgent  # noqa: E402
from insightmesh.knowledge.base import Passage  # noqa: E402
from insightmesh.llm.base import ChatMessage  # noqa: E402
from insightmesh.llm.offline import OfflineClient  # noqa: E402
from insightmesh.llm.openai import OpenAICompatibleClient, close_http_clients  # noqa: E402
from insightmesh.resilience import CircuitBreaker, Timeouts  # noqa: E402
from insightmesh.tools.base import ToolContext  # noqa: E402
from insightmesh.tools.knowledge_search import KnowledgeSearchTool  # noqa: E402
from insightmesh.tools.loop import run_tool_loop  # noqa: E402
from tests.standins.openai_server import start  # noqa: E402

PASSAGE = Passage("d1", "Acme account plan", "https://drive.example/acme", "Acme Corp buys anvils every quarter.",
                  1.0, 0)
QUESTION = [ChatMessage.user("What does Acme buy?")]


def timed(runs: int, work: Callable[[], object]) -> list[float]:
    work()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def show(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{label:<58} p50 {statistics.median(samples):7.2f} ms   p95 {p95:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    context = ToolContext(user_id="U1", retrieve=lambda _q: [PASSAGE])
    tools = [KnowledgeSearchTool()]
    offline = OfflineClient()

    print(f"{runs} runs each\n")
    show("offline: one complete()", timed(runs, lambda: offline.complete(QUESTION)))
    show("offline: run_tool_loop (search step + answer)", timed(runs, lambda: run_tool_loop(
        offline, QUESTION, tools=tools, context=context, system=None, max_steps=4, max_tokens=100_000)))

    server, base_url = start()
    try:
        client = OpenAICompatibleClient(base_url=base_url, timeouts=Timeouts(2.0, 5.0), sleep=lambda _s: None,
                                        breaker=CircuitBreaker("llm:bench", failure_threshold=100, cool_down=1.0))

        def loop_over_http() -> object:
            server.script_replies({"tool_calls": [{"name": "knowledge_search", "arguments": {"query": "acme"}}]},
                                  "Acme buys anvils [1].")
            return run_tool_loop(client, QUESTION, tools=tools, context=context, system=None, max_steps=4,
                                 max_tokens=100_000)

        show("OpenAI stand-in: two complete() calls", timed(runs, lambda: (client.complete(QUESTION),
                                                                           client.complete(QUESTION))))
        show("OpenAI stand-in: run_tool_loop (tool_calls step + answer)", timed(runs, loop_over_http))
    finally:
        server.stop()
        close_http_clients()
        resilience._breakers.clear()

    plain = AgentContext(user=AgentUser(id="U1", name="Ada"), thread=AgentThread(key="k", team_id="T1",
                                                                                 channel_id="C1", thread_ts="1.0"),
                         text="What does Acme buy?", history=[], summary=None, state={}, llm=offline,
                         retrieve=lambda _q: [PASSAGE])
    show("assistant, no tools enabled (the path it had before)", timed(runs, lambda: AssistantAgent().handle(plain)))


if __name__ == "__main__":
    main()
