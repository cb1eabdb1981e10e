"""The `insightmesh` command line: run the stack locally, invoke one function, fire schedules, ingest files."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from insightmesh_local import admin_cli, durable_cli, eval_cli, ingest_cli, local_auth
from insightmesh_local import chat as chat_command
from insightmesh_local.cli_errors import CommandError, Parser, run_command
from insightmesh_local.runtime import (
    DEFAULT_DATA_DIR,
    DEFAULT_TEMPLATE,
    Emulator,
    LocalRuntime,
    make_logger,
    port_free,
)
from insightmesh_local.template import TemplateError

EXIT_CONFIG = 2


def _parameters(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"insightmesh: --parameter-overrides takes KEY=VALUE, got {pair!r}")
        values[key] = value
    return values


def _find_template(path: str | None) -> Path:
    candidate = Path(path) if path else DEFAULT_TEMPLATE
    if not candidate.is_file() and not path:
        # Also work from any folder inside the project.
        for parent in Path.cwd().parents:
            if (parent / DEFAULT_TEMPLATE).is_file():
                return parent / DEFAULT_TEMPLATE
    return candidate


def cmd_dev(args: argparse.Namespace) -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log = make_logger()
    if not port_free(args.port):
        log(f"error: port {args.port} on 127.0.0.1 is in use (pass --port)")
        return 1
    runtime = LocalRuntime(
        template_path=_find_template(args.template), port=args.port, emulator_port=args.emulator_port,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, stack_name=args.stack_name,
        region=args.region, parameters=_parameters(args.parameter_overrides), ttl_interval=args.ttl_interval,
        data_dir=Path(args.data_dir), log=log, write_secret=True, otlp_endpoint=args.otlp_endpoint,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        runtime.start()
    except TemplateError as error:
        log(f"error: {error}")
        runtime.stop()
        return EXIT_CONFIG
    except OSError as error:
        log(f"error: {error}")
        runtime.stop()
        return 1
    while not stopping.wait(0.5):
        pass
    log("stopping ...")
    runtime.stop()
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """`sam local invoke` without Docker: one invocation, its result as JSON on stdout."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log = make_logger()
    try:
        event: Any = json.loads(Path(args.event).read_text()) if args.event != "-" else json.load(sys.stdin)
    except (OSError, json.JSONDecodeError) as error:
        print(f"insightmesh invoke: cannot read the event {args.event}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    emulator_port = args.emulator_port
    if endpoint is None and not port_free(emulator_port):
        emulator_port = 0  # a dev server owns the default port: use an ephemeral emulator of our own
    if endpoint is None and emulator_port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            emulator_port = probe.getsockname()[1]
    runtime = LocalRuntime(template_path=_find_template(args.template), emulator_port=emulator_port,
                           endpoint_url=endpoint, stack_name=args.stack_name, region=args.region,
                           parameters=_parameters(args.parameter_overrides), data_dir=Path(args.data_dir), log=log)
    try:
        runtime.deploy(knowledge_base=True)
        assert runtime.functions is not None
        try:
            invocation = runtime.functions.invoke(args.function, event, trigger="invoke")
        except KeyError:
            names = ", ".join(sorted(runtime.functions.specs))
            print(f"insightmesh invoke: no function {args.function!r} (functions: {names})", file=sys.stderr)
            return EXIT_CONFIG
    except TemplateError as error:
        print(f"insightmesh invoke: {error}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if runtime.durable is not None:
            runtime.durable.stop()
        if runtime.functions is not None:
            runtime.functions.close()
        if runtime.qdrant_bridge is not None:
            runtime.qdrant_bridge.stop()
        if runtime.emulator is not None:
            runtime.emulator.stop()
    if invocation.ok:
        print(json.dumps(invocation.result, indent=2, default=str))
        return 0
    print(json.dumps(invocation.error, indent=2), file=sys.stderr)
    return 1


def cmd_schedules(args: argparse.Namespace) -> int:
    client = local_auth.ControlClient(args.port, args.data_dir)
    if args.action == "fire":
        if not args.name:
            raise CommandError("give the name of the schedule to fire (`insightmesh schedules list` shows them)",
                               exit_code=EXIT_CONFIG)
        answer = client.request(f"schedules/{args.name}/fire", method="POST")
    else:
        answer = client.request("schedules")
    print(json.dumps(answer, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="insightmesh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stack_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--template", help=f"SAM template (default: {DEFAULT_TEMPLATE})")
        command.add_argument("--emulator-port", type=int, default=4566,
                             help="port of the embedded AWS emulator when AWS_ENDPOINT_URL is unset (default 4566)")
        command.add_argument("--stack-name", default="insightmesh-dev", help="prefix of local resource names")
        command.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
        command.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                             help="template parameters, as for sam deploy")
        command.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                             help=f"local state kept between runs: the knowledge base in DATA_DIR/qdrant when "
                                  f"QDRANT_URL is unset (default: {DEFAULT_DATA_DIR} in the current folder)")

    dev = sub.add_parser("dev", help="run every function of the template locally, without Docker")
    dev.add_argument("--port", type=int, default=3000, help="HTTP port of the local API (default 3000)")
    dev.add_argument("--ttl-interval", type=float, default=5.0, help="seconds between TTL sweeps (default 5)")
    dev.add_argument("--otlp-endpoint", metavar="URL",
                     help="export every function's traces to this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318 "
                          "(default: OTEL_EXPORTER_OTLP_ENDPOINT; unset: tracing off)")
    stack_options(dev)
    dev.set_defaults(run=cmd_dev)

    invoke = sub.add_parser("invoke", help="invoke one function once with an event file (sam local invoke)")
    invoke.add_argument("function", help="logical id (HealthFunction) or folder name (health)")
    invoke.add_argument("--event", "-e", required=True, help="event JSON file, or - for stdin")
    stack_options(invoke)
    invoke.set_defaults(run=cmd_invoke)

    schedules = sub.add_parser("schedules", help="list the running dev server's schedules, or fire one now")
    schedules.add_argument("action", choices=["list", "fire"], nargs="?", default="list")
    schedules.add_argument("name", nargs="?")
    schedules.add_argument("--port", type=int, default=3000)
    local_auth.add_data_dir_option(schedules)
    schedules.set_defaults(run=cmd_schedules)
    chat_command.add_parser(sub)
    admin_cli.add_parsers(sub)
    ingest_cli.add_parser(sub)
    durable_cli.add_parser(sub)
    eval_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `insightmesh` entry point: a failure is one line on stderr, never a traceback (cli_errors)."""
    args = build_parser().parse_args(argv)
    return run_command(args.run, args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Emulator", "build_parser", "main"]
