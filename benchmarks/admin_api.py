"""The control plane's list endpoints: DynamoDB calls per request, and latency with 10k users.

Part 1 — calls per request. The admin API runs in this process against the emulator; botocore
calls are counted for one page (limit 50) of every list endpoint with 10, 100 and 1,000 records
behind it. The architecture requires these to stay constant (no Scan, no per-item loop).

Part 2 — latency. 10,000 users are loaded, then GET /api/users (following cursors) and GET
/api/agents are timed through the local runtime's API gateway (HTTP → worker process → moto),
printing p50 and p99 over N requests each (default 300).

    python benchmarks/admin_api.py [--requests N] [--users 10000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "local"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class CallCounter:
    """Counts every AWS API call botocore makes in this process, by operation."""

    def __init__(self) -> None:
        import botocore.client

        self.calls: Counter[str] = Counter()
        original = botocore.client.BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation: str, params: Any) -> Any:
            counter.calls[operation] += 1
            return original(client, operation, params)

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def reset(self) -> None:
        self.calls.clear()


def v2(path: str, query: str, token: str) -> dict[str, Any]:
    return {"version": "2.0", "routeKey": "ANY /api/{proxy+}", "rawPath": path, "rawQueryString": query,
            "headers": {"authorization": f"Bearer {token}"},
            "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
            "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "127.0.0.1"},
                               "requestId": str(uuid.uuid4()), "stage": "$default"},
            "isBase64Encoded": False}


class Context:
    function_name = "admin-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:admin-bench"
    aws_request_id = "bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def seed(count: int, *, prefix: str) -> None:
    """count users (in all_users and in group <prefix>g), count grants on meddic, count audit entries."""
    from insightmesh.audit.log import AuditEntry
    from insightmesh.directory.models import Grant, Group, Membership, User, group_principal, user_principal

    now = datetime.now(UTC)
    Group(f"{prefix}g", description="bench", is_system=False, created_at=now).save()
    with User.batch_write() as users, Membership.batch_write() as members, Grant.batch_write() as grants, \
            AuditEntry.batch_write() as audit:
        for i in range(count):
            user_id = f"{prefix}-{i:06d}"
            email = f"{prefix}{i:06d}@example.com"
            users.save(User(user_id, email=email, display_name=f"User {i}", is_active=True, created_at=now))
            members.save(Membership("all_users", user_id, added_at=now, added_by="bench"))
            members.save(Membership(f"{prefix}g", user_id, added_at=now, added_by="bench"))
            grants.save(Grant("meddic", user_principal(user_id), effect="allow", created_at=now))
            audit.save(AuditEntry(f"bench:{prefix}", f"{now.isoformat()}#{uuid.uuid4()}", day=now.strftime("%Y-%m-%d"),
                                  at=now, actor="bench", actor_id="bench", action="bench.seed", outcome="allowed",
                                  request_id="bench"))
        grants.save(Grant("meddic", group_principal(f"{prefix}g"), effect="allow", created_at=now))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    from insightmesh_local.gateway import Gateway
    from insightmesh_local.runtime import LocalRuntime

    runtime = LocalRuntime(template_path=ROOT / "infra" / "template.yaml", port=free_port(),
                           emulator_port=free_port(), environ={}, log=lambda _m: None,
                           parameters={"ApiRateLimitPerMinute": "100000", "ApiIpRateLimitPerMinute": "100000"})
    runtime.deploy()
    assert runtime.functions is not None and runtime.emulator is not None
    spec = runtime.functions.find("AdminApiFunction")
    os.environ.update({k: v for k, v in spec.environment.items() if k not in ("PATH", "HOME")})
    os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ["LOG_LEVEL"] = "WARNING"
    try:
        from insightmesh.agents.catalog import seed_agents
        from insightmesh.agents.registry import builtin_definitions
        from insightmesh.auth.tokens import create_token
        from insightmesh.directory import admin_tools
        from insightmesh.directory.users import ensure_system_groups

        seed_agents(builtin_definitions())
        ensure_system_groups()
        admin, _ = admin_tools.make_admin("bench-admin@example.com", actor="bench")
        token, _ = create_token(str(admin.user_id), name="bench", scopes=["admin:read", "admin:write"])

        sys.path.insert(0, str(spec.code_dir))
        module_spec = importlib.util.spec_from_file_location("admin_handler", spec.code_dir / "handler.py")
        assert module_spec and module_spec.loader
        handler = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(handler)
        counter = CallCounter()
        context = Context()

        print(f"admin API: DynamoDB calls for one page (limit 50), python {sys.version.split()[0]}")
        endpoints = {
            "GET /api/agents": lambda p: ("/api/agents", "limit=50"),
            "GET /api/groups": lambda p: ("/api/groups", "limit=50"),
            "GET /api/users": lambda p: ("/api/users", "limit=50"),
            "GET /api/users?email_prefix": lambda p: ("/api/users", f"limit=50&email_prefix={p}"),
            "GET /api/groups/{name}/members": lambda p: (f"/api/groups/{p}g/members", "limit=50"),
            "GET /api/agents/{name}/grants": lambda p: ("/api/agents/meddic/grants", "limit=50"),
            "GET /api/audit?target": lambda p: ("/api/audit", f"limit=50&target=bench:{p}"),
        }
        table: dict[str, list[str]] = {name: [] for name in endpoints}
        for size in (10, 100, 1000):
            prefix = f"s{size}"
            seed(size, prefix=prefix)
            for name, route in endpoints.items():
                path, query = route(prefix)
                handler.lambda_handler(v2(path, query, token), context)  # warm
                counter.reset()
                response = handler.lambda_handler(v2(path, query, token), context)
                assert response["statusCode"] == 200, (name, response)
                total = sum(counter.calls.values())
                table[name].append(f"{total} ({', '.join(f'{op} {n}' for op, n in sorted(counter.calls.items()))})")
        print(f"{'endpoint':<34}{'10 records':<56}{'100 records':<56}{'1,000 records'}")
        for name, cells in table.items():
            print(f"{name:<34}{cells[0]:<56}{cells[1]:<56}{cells[2]}")
        print("(each request includes the guard's calls: token GetItem, user GetItem, two rate-limit UpdateItems)")

        # -- part 2: latency with 10k users through the local gateway ------------------------------
        loaded = 1110 + 1  # seeded so far (+ the admin)
        remaining = max(0, args.users - loaded)
        started = time.perf_counter()
        if remaining:
            seed(remaining, prefix="big")
        print(f"\nloaded {args.users} users in {time.perf_counter() - started:.1f}s")
        import httpx

        gateway = Gateway(runtime.functions, log=lambda _m: None)
        gateway.start("127.0.0.1", free_port())
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", headers=headers, timeout=30) as client:
            for _ in range(5):
                client.get("/api/agents")
            samples: dict[str, list[float]] = {"GET /api/agents": [], "GET /api/users (pages, via cursor)": []}
            cursor = None
            for _ in range(args.requests):
                t = time.perf_counter()
                assert client.get("/api/agents").status_code == 200
                samples["GET /api/agents"].append((time.perf_counter() - t) * 1000)
                params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
                t = time.perf_counter()
                page = client.get("/api/users", params=params)
                samples["GET /api/users (pages, via cursor)"].append((time.perf_counter() - t) * 1000)
                assert page.status_code == 200, page.text
                cursor = page.json()["next_cursor"]
        gateway.stop()
        print(f"through the local gateway, {args.users} users, {args.requests} requests each:")
        print(f"{'request':<40}{'p50 ms':>10}{'p99 ms':>10}")
        for name, values in samples.items():
            p50, p99 = percentiles(values)
            print(f"{name:<40}{p50:>10.1f}{p99:>10.1f}")
    finally:
        runtime.functions.close()
        runtime.emulator.stop()


if __name__ == "__main__":
    main()
