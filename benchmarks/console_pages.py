"""The console's pages: server time through the local gateway with 10,000 users and 1,000 groups.

Starts ``insightmesh dev`` (its own ports and data folder; the API rate limits raised so that the
benchmark's own requests are not refused), seeds its emulator directly — pynamodb batch writes to
the tables the dev server uses, as the CLI does, not 11,000 API calls — with 10,000 users (with
e-mails, all in ``all_users``), 1,000 groups (the first 100 with 20 members each, ``team-0000`` with
500), and grants on ``meddic`` (300 groups, 50 people). An admin signs in with a login link; then each
console page is requested N times (default 40) with httpx over loopback, and p50/p95 are printed.

The pages are the ones listed in :data:`PAGES` (those of issue 13, some with a search or a large
detail) plus any the console's navigation links to; a page that answers 404 (not built yet) is
skipped with a note. Figures, not pass/fail: the target is p95 ≤ 300 ms where the API allows.

With ``--profile``, each page is then also served once in this process (functions/console's
handler, against the same emulator, with the same session cookie): the AWS calls it makes, by
operation, and with ``--profile-top K`` the K functions where its time goes (cProfile, cumulative).

    python benchmarks/console_pages.py [--requests N] [--users 10000] [--groups 1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import pstats
import re
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "local"))

import httpx  # noqa: E402

from insightmesh_local import local_auth  # noqa: E402
from insightmesh_local.stack import LOCAL_CREDENTIALS  # noqa: E402
from tests.e2e.dev_server import DevServer, run_cli  # noqa: E402

ADMIN = "bench-admin@example.com"
RATE_LIMIT = "100000"  # requests a minute: the configuration's maximum, so the benchmark is never refused
# (label, path): every console page of issue 13, a search or a large detail where the page has one.
PAGES: list[tuple[str, str]] = [
    ("My access", "/console"),
    ("Dashboard", "/console/dashboard"),
    ("Agents", "/console/agents"),
    ("Agent meddic (350 grants)", "/console/agents/meddic"),
    ("Agent meddic, group search", "/console/agents/meddic?group_q=team-05"),
    ("Groups", "/console/groups"),
    ("Group team-0000 (500 members)", "/console/groups/team-0000"),
    ("Group, people search", "/console/groups/team-0000?q=user0001"),
    ("Users", "/console/users"),
    ("Users, e-mail search", "/console/users?q=user0001"),
    ("User", "/console/users/bench-00001"),
    ("Jobs", "/console/jobs"),
    ("Job form", "/console/jobs/new"),
    ("Credentials", "/console/credentials"),
    ("Knowledge", "/console/knowledge"),
    ("Audit", "/console/audit"),
]


def seed(users: int, groups: int) -> None:
    """Straight into the dev server's tables (``os.environ`` points the models at its emulator)."""
    from insightmesh.directory.models import Grant, Group, Membership, User, group_principal, user_principal

    now = datetime.now(UTC)
    with User.batch_write() as user_batch, Membership.batch_write() as members:
        for n in range(users):
            user_id = f"bench-{n:05d}"
            user_batch.save(User(user_id, email=f"user{n:05d}@bench.example", display_name=f"User {n}",
                                 is_active=True, created_at=now))
            members.save(Membership("all_users", user_id, added_at=now, added_by="bench"))
    with Group.batch_write() as group_batch, Membership.batch_write() as members:
        for g in range(groups):
            name = f"team-{g:04d}"
            group_batch.save(Group(name, description=f"Team {g}", created_at=now))
            size = 500 if g == 0 else (20 if g < 100 else 0)
            for n in range(size):
                user_id = f"bench-{(g * 37 + n) % users:05d}"
                members.save(Membership(name, user_id, added_at=now, added_by="bench"))
    with Grant.batch_write() as grants:
        for g in range(min(300, groups)):
            grants.save(Grant("meddic", group_principal(f"team-{g:04d}"), effect="allow", created_at=now))
        for n in range(min(50, users)):
            grants.save(Grant("meddic", user_principal(f"bench-{n:05d}"), effect="deny", created_at=now))


def seed_cost() -> None:
    """Some priced and unpriced usage and four budgets, so the Dashboard's cost and budget sections
    have rows (and it reads the model prices, as it does when there is usage to show)."""
    from insightmesh.budgets.models import BUDGET_SUBJECT, BudgetItem, budget_key
    from insightmesh.llm.base import Usage
    from insightmesh.llm.pricing import PRICES_SUBJECT, ModelPrice
    from insightmesh.llm.usage import record_usage

    ModelPrice(PRICES_SUBJECT, "gpt-4o-mini", input_usd_per_million=0.15, output_usd_per_million=0.6).save()
    for n in range(20):
        record_usage(agent=("help", "meddic")[n % 2], user_id=f"bench-{n:05d}", usage=Usage(100_000, 20_000),
                     model="gpt-4o-mini" if n % 4 else "bench-unpriced")
    for scope, value in (("agent", "help"), ("agent", "meddic"), ("group", "team-0000"), ("user", "bench-00001")):
        BudgetItem(BUDGET_SUBJECT, budget_key(scope, value), scope=scope, value=value,  # type: ignore[arg-type]
                   limit_micros=5_000_000, period_kind="month", warn_at=0.8, version=1).save()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(len(ordered) * 0.95) - 1)]


def sign_in(client: httpx.Client, dev: DevServer) -> None:
    link = run_cli("login-link", "--email", ADMIN, "--port", str(dev.port), timeout=120)
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip()
    token = re.search(r"token=([^&\s]+)", url)
    assert token, url
    answer = client.post("/console/login", data={"token": token.group(1)})
    assert answer.status_code == 303 and "im_session" in client.cookies, answer.text


def discovered(client: httpx.Client) -> list[tuple[str, str]]:
    """The pages the console's navigation links to that :data:`PAGES` does not name."""
    home = client.get("/console").text
    nav = home.split('aria-label="Console pages"', 1)[-1].split("</nav>", 1)[0]
    known = {path for _, path in PAGES}
    return [(f"{label} (from the navigation)", path)
            for path, label in re.findall(r'<a href="(/console[^"?#]*)"[^>]*>([^<]+)</a>', nav) if path not in known]


def profile(pages: list[tuple[str, str]], cookies: dict[str, str], top: int) -> None:
    """Each page once in-process (see the module doc): AWS calls by operation, and where the time goes."""
    import botocore.client

    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counted(client: Any, operation: str, params: Any) -> Any:
        calls[operation] += 1
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
    # The session cookie is signed with the stack's SECRET_KEY: /_local/stack names only the tables,
    # so the key's secret is found in the emulator by its logical id (AppSecret), as the functions read it.
    import boto3

    secrets = boto3.client("secretsmanager").list_secrets()["SecretList"]
    app_secret = next((secret["ARN"] for secret in secrets if "appsecret" in secret["Name"].lower()), None)
    if app_secret is None:
        print(f"\n--profile: no AppSecret among the emulator's secrets ({[s['Name'] for s in secrets]}): skipped")
        return
    os.environ["SECRET_KEY_SECRET_ID"] = app_secret
    # The dev server's limits (the runs above count against them in the same table), not the defaults.
    os.environ.update({"API_RATE_LIMIT_PER_MINUTE": RATE_LIMIT, "API_IP_RATE_LIMIT_PER_MINUTE": RATE_LIMIT})
    code = ROOT / "functions" / "console" / "handler.py"
    spec = importlib.util.spec_from_file_location("console_handler", code)
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)

    def event(path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        query = dict(pair.split("=", 1) for pair in parts.query.split("&")) if parts.query else None
        return {"version": "2.0", "routeKey": "ANY /console/{proxy+}", "rawPath": parts.path,
                "rawQueryString": parts.query, "queryStringParameters": query,
                "cookies": [f"{name}={value}" for name, value in cookies.items()],
                "headers": {"host": "127.0.0.1", "user-agent": "bench"},
                "requestContext": {"http": {"method": "GET", "path": parts.path, "sourceIp": "127.0.0.1",
                                            "userAgent": "bench"}, "requestId": str(uuid.uuid4()),
                                   "stage": "$default"},
                "isBase64Encoded": False}

    print("\nin this process, one request a page after a warm-up: AWS calls by operation")
    for label, path in pages:
        handler.lambda_handler(event(path), None)
        calls.clear()
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        answer = handler.lambda_handler(event(path), None)
        profiler.disable()
        took = (time.perf_counter() - began) * 1000
        summary = ", ".join(f"{operation} {count}" for operation, count in sorted(calls.items()))
        print(f"{label:<34}{answer['statusCode']:>4}{took:>8.0f} ms  {sum(calls.values()):>3} calls: {summary}")
        if top:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
            lines = [line for line in out.getvalue().splitlines() if "/" in line or "ncalls" in line]
            print("\n".join(line.replace(str(ROOT) + "/", "").replace("/work/main/.venv/lib/python3.11/", "")
                            for line in lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per page (after 3 warm-up requests)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--profile", action="store_true", help="also count each page's AWS calls in-process")
    parser.add_argument("--profile-top", type=int, default=0, help="with --profile: the K costliest functions")
    args = parser.parse_args()

    dev = DevServer("--parameter-overrides", f"ApiRateLimitPerMinute={RATE_LIMIT}",
                    f"ApiIpRateLimitPerMinute={RATE_LIMIT}")
    try:
        dev.wait_ready()
        os.environ[local_auth.ENVIRONMENT_VARIABLE] = dev.secret
        stack = local_auth.ControlClient(dev.port, dev.data_dir).request("stack")
        os.environ.update({**stack["environment"], "AWS_ENDPOINT_URL": stack["endpoint"],
                           "AWS_REGION": stack["region"], "AWS_DEFAULT_REGION": stack["region"], **LOCAL_CREDENTIALS})
        bootstrap = run_cli("admin", "bootstrap", "--email", ADMIN, "--port", str(dev.port), timeout=120)
        assert bootstrap.returncode == 0, bootstrap.stderr
        started = time.perf_counter()
        seed(args.users, args.groups)
        seed_cost()
        print(f"console pages: seeded {args.users:,} users and {args.groups:,} groups in "
              f"{time.perf_counter() - started:.1f} s; python {sys.version.split()[0]}, {os.cpu_count()} cores")

        with httpx.Client(base_url=dev.url, timeout=60, follow_redirects=False) as client:
            sign_in(client, dev)
            session_cookies = {cookie.name: str(cookie.value) for cookie in client.cookies.jar}
            pages = PAGES + discovered(client)
            rows: list[tuple[str, str, float, float, int]] = []
            for label, path in pages:
                first = client.get(path)
                if first.status_code == 404:
                    print(f"  skipped {path}: 404 (not built when this ran)")
                    continue
                if first.status_code != 200:
                    print(f"  skipped {path}: {first.status_code} {first.text[:200]!r}")
                    continue
                for _ in range(2):
                    client.get(path)
                samples = []
                for _ in range(args.requests):
                    began = time.perf_counter()
                    answer = client.get(path)
                    samples.append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
                p50, p95 = percentiles(samples)
                rows.append((label, path, p50, p95, len(first.content)))
        print(f"\nthrough the local gateway (HTTP → console function → in-process API → emulator), "
              f"{args.requests} requests a page:")
        print(f"{'page':<34}{'path':<44}{'p50 ms':>8}{'p95 ms':>8}{'KB':>6}")
        for label, path, p50, p95, size in rows:
            flag = "" if p95 <= 300 else "  > 300"
            print(f"{label:<34}{path:<44}{p50:>8.0f}{p95:>8.0f}{size / 1024:>6.0f}{flag}")
        if args.profile:
            profile([(label, path) for label, path, *_ in rows], session_cookies, args.profile_top)
        return 0
    finally:
        dev.process.send_signal(signal.SIGTERM)
        try:
            dev.process.wait(timeout=60)
        finally:
            dev.log.close()
            if dev.data_dir is not None:
                shutil.rmtree(dev.data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
