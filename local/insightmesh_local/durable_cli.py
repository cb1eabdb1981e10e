"""`insightmesh durable`: the running dev server's durable executions (list, show one, kill the
durable function's workers), through its control surface (``/_local/durable/*``, see ``durable``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from insightmesh_local import local_auth
from insightmesh_local.cli_errors import CommandError

EXIT_CONFIG = 2


def cmd_durable(args: argparse.Namespace) -> int:
    client = local_auth.ControlClient(args.port, args.data_dir)
    answer: Any
    if args.action == "show":
        if not args.name:
            raise CommandError("give the execution's name (a research run id) or ARN "
                               "(`insightmesh durable list` shows them)", exit_code=EXIT_CONFIG)
        answer = client.request(f"durable/executions/{args.name}")
    elif args.action == "kill":
        answer = client.request("durable/kill", method="POST",
                                body={"function": args.name} if args.name else {})
    else:
        answer = client.request("durable/executions")
    print(json.dumps(answer, indent=2))
    return 0


def add_parser(sub: Any) -> None:
    durable = sub.add_parser("durable", help="the dev server's durable executions: list, show one, kill a worker")
    durable.add_argument("action", choices=["list", "show", "kill"], nargs="?", default="list",
                         help="list executions; show NAME (its operations); kill [FUNCTION] (its workers, mid-run)")
    durable.add_argument("name", nargs="?", help="show: an execution's name or ARN; kill: a function (default all)")
    durable.add_argument("--port", type=int, default=3000)
    local_auth.add_data_dir_option(durable)
    durable.set_defaults(run=cmd_durable)


__all__ = ["add_parser", "cmd_durable"]
