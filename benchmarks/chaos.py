"""Proof under load and faults: `insightmesh dev` driven over loopback while things break.

Workload (defaults): 500 messages across 50 threads (40 channel threads of @mentions in four
channels, 10 DM threads) from 10 users, sent as signed Events API webhooks at a steady rate,
with at the same time:

* Slack retries: 20% of the events are sent again, as Slack does, with ``X-Slack-Retry-Num``
  (1, and for some 2), re-signed, a moment after the first delivery;
* the conversation worker process SIGKILLed mid-reply: the Slack sandbox holds one
  ``chat.postMessage`` (the placeholder) or ``chat.update`` (progress or the answer) after doing
  it, and the worker process holding that connection is killed (found through ``/proc``: the
  dev process's children that run ``conversation_worker``, and which of them has a socket open
  to the sandbox);
* the Slack sandbox answering 429 with ``Retry-After`` and 5xx, in bursts (its ``fail`` rules);
* the LLM stand-in answering 500 and hanging past the worker's LLM read timeout, in bursts
  (its ``fail_next`` script);
* one poisoned file: a zip-bomb XLSX built here, shared in one of the DM threads;
* optionally (``--dead-letter``), one dead letter: the sandbox fails the next 5 placeholder posts in
  one DM thread's channel, meant to dead-letter that thread's first message and show the
  conversation_dlq function's apology (~5 min more). Under the local emulator it does not: moto
  redelivers a FIFO group's messages newest first after a visibility timeout (AWS keeps the
  order), so the failures spread over the thread and no message reaches maxReceiveCount.

It is bounded: a global deadline (``--deadline``, 600 s by default) after which it reports what
it has and stops the server. It prints, per user message (a request):

* answered exactly once — one final bot reply, nothing else left in the thread for it;
* duplicates — more than one final bot reply to one message;
* lost — no final reply (a "Thinking…" placeholder left up counts here: silent);
* dead-lettered with an apology (the conversation_dlq function's reply);
* ack p50/p99 and acks over 3 s; time to answer p50/p99.

The targets are 0 duplicates, 0 lost, 0 silent and every ack under 3 s; the figures are printed,
never asserted (exit status 0 unless the run itself could not start).

    python benchmarks/chaos.py [--messages 500] [--threads 50] [--users 10] [--rate 6]
                               [--kills 6] [--deadline 600] [--seed 7] [--keep-log]
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import os
import random
import re
import signal
import sys
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "local"))

import boto3  # noqa: E402
import httpx  # noqa: E402

from insightmesh_local import slack_signing as slack  # noqa: E402
from insightmesh_local.slack_sandbox import SlackSandbox  # noqa: E402
from tests.e2e.dev_server import DevServer  # noqa: E402
from tests.standins.openai_server import OpenAIStandin  # noqa: E402

SECRET = "chaos-signing-secret"
TEAM, BOT = slack.DEFAULT_TEAM_ID, slack.DEFAULT_BOT_USER_ID
THINKING = "Thinking"
REPLY_EVENT_TYPE = "insightmesh_reply"
ACK_TARGET = 3.0
WORKER_TIMEOUT = 30  # seconds; the LLM's read timeout is 15 s (template), hangs last 20 s
VISIBILITY_TIMEOUT = 60  # a killed or failed batch comes back after this
MAX_RECEIVES = 5  # the conversation queue's maxReceiveCount (template)


# -- the workload -----------------------------------------------------------------------------------
@dataclass
class Request:
    """One user message and everything the suite saw of it."""

    index: int
    thread: int
    user: str
    channel: str
    ts: str
    thread_ts: str
    text: str
    payload: dict[str, Any]
    poisoned: bool = False
    doomed: bool = False  # its every delivery fails: it must end in the DLQ's apology
    retries: list[int] = field(default_factory=list)  # X-Slack-Retry-Num values to send later
    first_sent: float | None = None
    acks: list[tuple[float, int]] = field(default_factory=list)  # (seconds, status), every delivery

    @property
    def request_id(self) -> str:
        return f"msg:{TEAM}:{self.channel}:{self.ts}"


def zip_bomb_xlsx(expanded_mb: int = 200) -> bytes:
    """An XLSX whose one sheet declares A1:XFD1048576 and expands ~``expanded_mb`` MB from a
    few hundred KB: the shape of issue 10's poisoned file, built here."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
            'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+'
            'xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.worksheet+xml"/></Types>'))
        archive.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        archive.writestr("xl/workbook.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
            'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'))
        archive.writestr("xl/_rels/workbook.xml.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'))
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                        b'spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData>')
            row = b'<row r="1">' + b'<c t="inlineStr"><is><t>boom</t></is></c>' * 200 + b"</row>"
            chunk = row * 100
            for _ in range(expanded_mb * 1024 * 1024 // len(chunk)):
                sheet.write(chunk)
            sheet.write(b"</sheetData></worksheet>")
    return buffer.getvalue()


def build_workload(sandbox: SlackSandbox, *, messages: int, threads: int, users: int, retry_share: float,
                   rng: random.Random) -> list[Request]:
    people = [f"U0CHAOS{n:02d}" for n in range(1, users + 1)]
    sandbox.add_users([{"id": user, "name": user.lower(), "real_name": f"Chaos {user[-2:]}",
                        "email": f"{user.lower()}@example.com"} for user in people])
    dm_threads = max(1, threads // 5)
    per_thread = [messages // threads + (1 if t < messages % threads else 0) for t in range(threads)]
    poisoned_thread = threads - 1  # a DM thread
    requests: list[Request] = []
    roots: dict[int, str] = {}
    for round_ in range(max(per_thread)):
        for t in range(threads):
            if round_ >= per_thread[t]:
                continue
            is_dm = t >= threads - dm_threads
            user = people[(t - (threads - dm_threads)) % users] if is_dm else people[(t + round_) % users]
            channel = f"D0CHAOS{(t - (threads - dm_threads)) % users:02d}" if is_dm else f"C0CHAOS{t % 4}"
            ts = sandbox.state.next_ts()
            thread_ts = roots.setdefault(t, ts)
            index = len(requests)
            text = f"question {index} in thread {t} round {round_}"
            poisoned = t == poisoned_thread and round_ == 2
            if is_dm:
                event = slack.message_event(user, channel, text, ts, None if thread_ts == ts else thread_ts,
                                            channel_type="im", subtype="file_share" if poisoned else None)
            else:
                event = slack.app_mention_event(user, channel, text, ts, None if thread_ts == ts else thread_ts)
            if poisoned:
                event["files"] = [sandbox.state.add_file("report.xlsx", zip_bomb_xlsx(),
                                                         "application/vnd.openxmlformats-officedocument."
                                                         "spreadsheetml.sheet")]
            sandbox.state.add_user_message(channel=channel, user=user, text=event["text"], ts=ts,
                                           thread_ts=None if thread_ts == ts else thread_ts)
            request = Request(index, t, user, channel, ts, thread_ts, text,
                              slack.event_callback(TEAM, slack.DEFAULT_APP_ID, event), poisoned=poisoned)
            if rng.random() < retry_share:
                request.retries = [1, 2] if rng.random() < 0.3 else [1]
            requests.append(request)
    return requests


# -- sending ---------------------------------------------------------------------------------------
def deliver(http: httpx.Client, request: Request, retry: int) -> None:
    body = slack.json_body(request.payload)
    headers = slack.signed_headers(SECRET, body, slack.JSON_CONTENT_TYPE)
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    started = time.time()
    if request.first_sent is None:
        request.first_sent = started
    try:
        status = http.post("/slack/events", content=body, headers=headers).status_code
    except httpx.HTTPError:
        status = 0
    request.acks.append((time.time() - started, status))


def send_all(http: httpx.Client, requests: list[Request], rate: float, rng: random.Random,
             stop: threading.Event) -> None:
    """First deliveries at ``rate`` per second, in thread rounds; retries 0.5-4 s after them."""
    plan: list[tuple[float, int, int]] = []  # (offset, request index, retry number)
    for request in requests:
        offset = request.index / rate
        plan.append((offset, request.index, 0))
        later = offset
        for retry in request.retries:
            later += rng.uniform(0.5, 4.0)
            plan.append((later, request.index, retry))
    heapq.heapify(plan)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        while plan and not stop.is_set():
            offset, index, retry = heapq.heappop(plan)
            wait = started + offset - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            pool.submit(deliver, http, requests[index], retry)


def warm_up(http: httpx.Client) -> None:
    """Four concurrent url_verification handshakes first, so the four slack_ingress workers the
    local runtime keeps are started (Slack's own handshake precedes any event, too)."""
    body = slack.json_body(slack.url_verification("chaos-warm-up"))

    def handshake(_: int) -> None:
        http.post("/slack/events", content=body, headers=slack.signed_headers(SECRET, body, slack.JSON_CONTENT_TYPE))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(handshake, range(4)))


# -- faults ------------------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def worker_pids(dev_pid: int, function_dir: str = "conversation_worker") -> list[int]:
    """The local runtime's worker processes of one function: children of the dev process whose
    command line is ``python -m insightmesh_local.worker <functions/<name>> ...``."""
    pids = []
    for pid in children(dev_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"insightmesh_local.worker" in argv and any(arg.rstrip(b"/").endswith(function_dir.encode())
                                                       for arg in argv):
            pids.append(pid)
    return pids


def connected_to(pids: list[int], port: int) -> list[int]:
    """Those of ``pids`` holding an established TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    holding = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holding.append(pid)
    return holding


@dataclass
class FaultLog:
    kills: list[str] = field(default_factory=list)
    slack: Counter[str] = field(default_factory=Counter)
    llm: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def kill_mid_reply(dev: DevServer, sandbox: SlackSandbox, method: str, faults: FaultLog,
                   stop: threading.Event) -> None:
    """Hold the next ``method`` call after it took effect, then SIGKILL the worker making it."""
    armed = max((call["seq"] for call in sandbox.calls()), default=0)
    sandbox.fail(method, "delay", 1, delay=8.0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not stop.is_set():
        held = [c for c in sandbox.calls(method) if c["seq"] > armed and c.get("delayed")]
        if held:
            break
        time.sleep(0.05)
    else:
        faults.notes.append(f"no {method} call to hold within 20 s: no kill")
        return
    time.sleep(0.3)  # the sandbox has answered nothing yet; the worker is waiting on it
    candidates = worker_pids(dev.process.pid)
    victims = connected_to(candidates, sandbox.port) or candidates
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        faults.kills.append(f"{method}: pid {pid} of {len(candidates)} worker(s)"
                            + ("" if len(victims) < len(candidates) or len(candidates) == 1 else " (all)"))


def inject_faults(dev: DevServer, sandbox: SlackSandbox, llm: OpenAIStandin, kills: int, interval: float,
                  faults: FaultLog, stop: threading.Event, until: float) -> None:
    cycle = ["slack_429", "llm_500", "kill_post", "slack_5xx", "llm_timeout", "kill_update"]
    killed = step = 0
    while time.monotonic() < until and not stop.wait(interval):
        kind = cycle[step % len(cycle)]
        step += 1
        if kind == "slack_429":
            method = random.choice(["chat.postMessage", "chat.update"])
            sandbox.fail(method, "ratelimit", 3, retry_after=1)
            faults.slack[f"429 x3 ({method})"] += 1
        elif kind == "slack_5xx":
            method = random.choice(["chat.postMessage", "chat.update"])
            sandbox.fail(method, "error", 2, status=random.choice([500, 503]), error="internal_error")
            faults.slack[f"5xx x2 ({method})"] += 1
        elif kind == "llm_500":
            llm.fail_next("error", "error", "error", "error")
            faults.llm["500 x4"] += 1
        elif kind == "llm_timeout":
            llm.fail_next("hang", "hang")
            faults.llm["timeout x2 (hang 20 s > 15 s read timeout)"] += 1
        elif killed < kills:
            kill_mid_reply(dev, sandbox, "chat.postMessage" if kind == "kill_post" else "chat.update", faults, stop)
            killed += 1


# -- observing ----------------------------------------------------------------------------------------
def _metadata(message: dict[str, Any]) -> dict[str, Any]:
    metadata = message.get("metadata") or {}
    return metadata if isinstance(metadata, dict) else {}


def _payload(metadata: dict[str, Any]) -> dict[str, Any]:
    payload = metadata.get("event_payload") or {}
    return payload if isinstance(payload, dict) else {}


def is_apology(message: dict[str, Any]) -> bool:
    """The conversation_dlq function's reply (conversation/dead_letters.py): metadata status
    ``apology``, or its text — an apology that carries a reference id."""
    text = str(message.get("text") or "")
    return _payload(_metadata(message)).get("status") == "apology" or (
        text.startswith("Sorry, something went wrong") and "reference" in text)


def classify(sandbox: SlackSandbox, requests: list[Request]) -> dict[str, Any]:
    """Each request's bot messages (by the request id in their metadata) → its outcome."""
    by_request: dict[str, list[dict[str, Any]]] = {}
    unattributed: list[dict[str, Any]] = []
    for message in sandbox.messages():
        if not message.get("is_bot") or message.get("ephemeral") or message.get("deleted"):
            continue
        request_id = _payload(_metadata(message)).get("request_id")
        if isinstance(request_id, str):
            by_request.setdefault(request_id, []).append(message)
        else:
            unattributed.append(message)
    outcomes: dict[str, list[Request]] = {k: [] for k in ("once", "duplicate", "lost", "apology", "stale")}
    kinds: Counter[str] = Counter()
    for request in requests:
        messages = by_request.get(request.request_id, [])
        final = [m for m in messages if THINKING not in m["text"]]
        stale = [m for m in messages if THINKING in m["text"]]
        if len(final) > 1:
            outcomes["duplicate"].append(request)
        elif not final:
            outcomes["lost"].append(request)
        elif is_apology(final[0]):
            outcomes["apology"].append(request)
        else:
            outcomes["once"].append(request)
        if final and stale:
            outcomes["stale"].append(request)
        for message in final[:1]:
            kinds["llm answer" if "LLM: " in message["text"] else "apology" if is_apology(message)
                  else "other reply: " + re.sub(r"\d+", "N", message["text"])[:70]] += 1
    return {"outcomes": outcomes, "kinds": kinds, "unattributed": unattributed, "by_request": by_request}


def answer_times(sandbox: SlackSandbox, requests: list[Request]) -> dict[str, float]:
    """Request id → seconds from the first delivery to the first successful Slack call that
    put its final text up (the answer's or the apology's chat.update, or a post without a
    placeholder)."""
    first_final: dict[str, float] = {}
    placeholder_of: dict[tuple[str, str], str] = {}
    for message in sandbox.messages():
        request_id = _payload(_metadata(message)).get("request_id")
        if isinstance(request_id, str):
            placeholder_of[(message["channel"], message["ts"])] = request_id
    for call in sandbox.calls():
        if not call["ok"] or call["method"] not in ("chat.update", "chat.postMessage"):
            continue
        args = call["args"]
        text = str(args.get("text") or "")
        if THINKING in text or (text.startswith("_") and text.endswith("_")):
            continue  # a placeholder or a progress line
        request_id = placeholder_of.get((str(args.get("channel")), str(args.get("ts"))))
        if request_id is None:
            metadata = args.get("metadata")
            if isinstance(metadata, str):
                try:
                    metadata = json.loads(metadata)
                except ValueError:
                    metadata = None
            request_id = _payload(metadata if isinstance(metadata, dict) else {}).get("request_id")
        if isinstance(request_id, str) and request_id not in first_final:
            first_final[request_id] = call["at"]
    sent = {r.request_id: r.first_sent for r in requests if r.first_sent is not None}
    return {rid: at - sent[rid] for rid, at in first_final.items() if rid in sent}


def queue_depths(dev: DevServer) -> dict[str, int]:
    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{dev.emulator_port}", region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    depths = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        if "Conversation" not in url:
            continue
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        depths[url.rsplit("/", 1)[-1]] = (int(attributes["ApproximateNumberOfMessages"])
                                          + int(attributes["ApproximateNumberOfMessagesNotVisible"]))
    return depths


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


# -- the run -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rate", type=float, default=6.0, help="first deliveries per second")
    parser.add_argument("--retry-share", type=float, default=0.2)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--fault-interval", type=float, default=6.0)
    parser.add_argument("--deadline", type=float, default=600.0, help="global bound, seconds")
    parser.add_argument("--settle", type=float, default=10.0, help="quiet seconds after the last answer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-log", action="store_true", help="keep the dev server's log file")
    parser.add_argument("--template", help="SAM template for insightmesh dev (default: the project's)")
    parser.add_argument("--dead-letter", action=argparse.BooleanOptionalAction, default=False,
                        help="fail the next 5 placeholder posts in one DM thread's channel, meant to dead-letter "
                             "its first message (see the module docstring for moto's FIFO order)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    hard_stop = started + args.deadline
    rng = random.Random(args.seed)
    random.seed(args.seed)
    stop = threading.Event()
    faults = FaultLog()

    sandbox = SlackSandbox(port=0).start()
    llm = OpenAIStandin(0).start_in_thread()
    llm.set_mode("ok", hang_seconds=20.0)
    dev = DevServer(*(["--template", args.template] if args.template else []), env={
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-chaos", "SLACK_API_URL": sandbox.url,
        "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-chaos-key-000000000000",
        "LLM_MODEL": "chaos-model", "WORKER_TIMEOUT": str(WORKER_TIMEOUT),
        "CONVERSATION_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT), "LLM_BREAKER_COOLDOWN_SECONDS": "5",
        # 50 messages a person in ~90 s: above the default per-person limit (20/min), whose friendly
        # refusal would stand in for most answers; the suite is about faults, not that limit.
        "SLACK_USER_RATE_LIMIT_PER_MINUTE": "100000",
    })
    print(f"chaos: dev server on 127.0.0.1:{dev.port} (log {dev.log_path}), Slack sandbox {sandbox.url}, "
          f"LLM stand-in {llm.base_url}", flush=True)
    try:
        try:
            dev.wait_ready()
        except AssertionError as error:
            print(f"chaos: the dev server did not start:\n{error}", file=sys.stderr)
            return 1
        requests = build_workload(sandbox, messages=args.messages, threads=args.threads, users=args.users,
                                  retry_share=args.retry_share, rng=rng)
        retries = sum(len(r.retries) for r in requests)
        if args.dead_letter:
            doomed = next(r for r in requests if r.channel.startswith("D") and r.ts == r.thread_ts)
            doomed.doomed = True
            sandbox.fail("chat.postMessage", "error", MAX_RECEIVES, status=500, channel=doomed.channel)
        send_seconds = len(requests) / args.rate
        print(f"chaos: {len(requests)} messages in {args.threads} threads from {args.users} users over "
              f"~{send_seconds:.0f} s; {sum(1 for r in requests if r.retries)} of them retried by 'Slack' "
              f"({retries} retry deliveries); up to {args.kills} worker kills; deadline {args.deadline:.0f} s",
              flush=True)
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        with httpx.Client(base_url=f"http://127.0.0.1:{dev.port}", timeout=30, limits=limits) as http:
            warm_up(http)
            injector = threading.Thread(target=inject_faults, name="faults", daemon=True, args=(
                dev, sandbox, llm, args.kills, args.fault_interval, faults, stop,
                min(hard_stop, time.monotonic() + send_seconds + 30)))
            injector.start()
            send_all(http, requests, args.rate, rng, stop)
            print(f"chaos: sent at {time.monotonic() - started:.0f} s; waiting for answers", flush=True)
            quiet_since: float | None = None
            last_report = 0.0
            while time.monotonic() < hard_stop:
                seen = classify(sandbox, requests)
                pending = len(seen["outcomes"]["lost"])
                depths = queue_depths(dev)
                if pending == 0 and not any(depths.values()) and not injector.is_alive():
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= args.settle:
                        break
                else:
                    quiet_since = None
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    print(f"chaos: {time.monotonic() - started:.0f} s: {pending} without a final reply; "
                          f"queues {depths}", flush=True)
                time.sleep(1.0)
            stop.set()
            injector.join(timeout=30)
        elapsed = time.monotonic() - started
        report(requests, sandbox, llm, faults, elapsed, timed_out=time.monotonic() >= hard_stop,
               depths=queue_depths(dev), log=dev.output())
    finally:
        stop.set()
        if dev.process.poll() is None:
            dev.stop()
        if not args.keep_log:
            dev.log_path.unlink(missing_ok=True)
        llm.stop()
        sandbox.stop()
    return 0


def completions_per_question(llm: OpenAIStandin) -> Counter[str]:
    """Successful chat completions whose last user message is one of the workload's questions."""
    counts: Counter[str] = Counter()
    for request in llm.chat_requests():
        body = request.body if isinstance(request.body, dict) else {}
        users = [m.get("content") for m in body.get("messages") or []
                 if isinstance(m, dict) and m.get("role") == "user"]
        # The answer's prompt ends with the question alone; a memory summary's transcript holds several.
        found = re.findall(r"question \d+ in thread \d+ round \d+", str(users[-1])) if users else []
        if len(found) == 1 and len(str(users[-1])) < 200 and request.mode == "ok":
            counts[found[0]] += 1
    return counts


def report(requests: list[Request], sandbox: SlackSandbox, llm: OpenAIStandin, faults: FaultLog, elapsed: float, *,
           timed_out: bool, depths: dict[str, int], log: str) -> None:
    seen = classify(sandbox, requests)
    recomputed = sum(1 for count in completions_per_question(llm).values() if count > 1)
    outcomes = seen["outcomes"]
    acks = [seconds for request in requests for seconds, _status in request.acks]
    statuses = Counter(status for request in requests for _seconds, status in request.acks)
    times = answer_times(sandbox, requests)
    answered = [times[r.request_id] for r in outcomes["once"] + outcomes["apology"] if r.request_id in times]
    slack_calls = Counter((c["method"], c["status"]) for c in sandbox.calls() if c["status"] != 200)
    print()
    print(f"== chaos figures ({len(requests)} messages, {elapsed:.0f} s{', DEADLINE REACHED' if timed_out else ''})")
    print(f"answered exactly once      {len(outcomes['once'])}")
    print(f"duplicates                 {len(outcomes['duplicate'])}")
    print(f"lost (no final reply)      {len(outcomes['lost'])}"
          + (" by the deadline (see the queues below: still being retried)" if timed_out else ""))
    print(f"dead-lettered with apology {len(outcomes['apology'])}")
    print(f"placeholders left up       {len(outcomes['stale'])} (beside a final reply)")
    print(f"ack p50 / p99              {percentile(acks, 0.5) * 1000:.0f} ms / {percentile(acks, 0.99) * 1000:.0f} ms "
          f"({len(acks)} deliveries, max {max(acks, default=0) * 1000:.0f} ms)")
    print(f"acks over {ACK_TARGET:.0f} s              {sum(1 for s in acks if s > ACK_TARGET)}")
    print(f"ack statuses               {dict(sorted(statuses.items()))}")
    print(f"time to answer p50 / p99   {percentile(answered, 0.5):.1f} s / {percentile(answered, 0.99):.1f} s "
          f"(max {max(answered, default=0):.1f} s)")
    firsts = [r.first_sent for r in requests if r.first_sent is not None]
    if answered and firsts:
        span = max(t + r.first_sent for r in requests if r.first_sent is not None and (t := times.get(r.request_id))
                   is not None) - min(firsts)
        print(f"throughput                 {len(answered) / span:.1f} answers/s over {span:.0f} s "
              f"(first delivery to last answer)")
    print(f"final replies by kind      {dict(seen['kinds'].most_common())}")
    print(f"bot messages w/o request   {len(seen['unattributed'])}")
    print(f"queues at the end          {depths}")
    print(f"worker kills               {len(faults.kills)}: {'; '.join(faults.kills)}")
    print(f"Slack faults injected      {dict(faults.slack)}; non-200 answers seen {dict(slack_calls)}")
    print(f"LLM faults injected        {dict(faults.llm)}")
    print(f"conversation_worker        {log.count('outcome=Runtime.ExitError')} batch(es) lost to a killed process, "
          f"{log.count('outcome=Sandbox.Timedout')} timed out, {log.count('reported failed')} with failed "
          f"item(s); {log.count('already answered; nothing posted')} redelivered request(s) found answered")
    print(f"answers computed twice     {recomputed} (more than one successful LLM completion for one message: "
          f"a crash after the model call)")
    for note in faults.notes:
        print(f"note: {note}")
    for name in ("duplicate", "lost"):
        for request in outcomes[name][:10]:
            messages = seen["by_request"].get(request.request_id, [])
            print(f"  {name}: {request.request_id} thread {request.thread}"
                  f"{' (poisoned file)' if request.poisoned else ''} acks {request.acks} -> "
                  + json.dumps([{"ts": m["ts"], "text": m["text"][:60], "edits": len(m["edits"])} for m in messages]))
    for request in (r for r in requests if r.doomed):
        messages = seen["by_request"].get(request.request_id, [])
        print(f"dead-letter probe ({request.request_id}): {[m['text'][:160] for m in messages] or 'no reply'}")
    poisoned = [r for r in requests if r.poisoned]
    for request in poisoned:
        messages = seen["by_request"].get(request.request_id, [])
        print(f"poisoned file message: {[m['text'][:160] for m in messages] or 'no reply'}")


if __name__ == "__main__":
    sys.exit(main())
