"""`insightmesh dev`: the whole stack on one machine, from the template, without Docker.

Start-up: emulator (embedded moto server on 127.0.0.1, or ``AWS_ENDPOINT_URL``) → the Slack
sandbox and the knowledge base's Qdrant (``QDRANT_URL``'s server, or the embedded store in
``<data dir>/qdrant`` served by the local bridge, see ``qdrant_bridge``) → the template's
resources → function specs (environment resolved per function) → API gateway, SQS pollers,
scheduler and TTL sweeper. ``stop()`` (Ctrl-C or SIGTERM) ends all of them within a few seconds.

What fails fast (exit 2, naming the resource or function and the cause): an unreadable or
unresolvable template, a missing parameter, a function whose CodeUri or handler file does not
exist. What keeps serving: a function whose handler fails to import or raises — its invocations
fail as they would in Lambda (500 from the gateway, the batch back on the queue) and the log
names the function and the error, while every other function keeps working.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from insightmesh_local import local_auth
from insightmesh_local.functions import FunctionNotFound, Functions
from insightmesh_local.gateway import Gateway
from insightmesh_local.scheduler import Scheduler
from insightmesh_local.sqs_poller import SqsPoller, mappings_from
from insightmesh_local.stack import LOCAL_CREDENTIALS, Stack
from insightmesh_local.template import Template, TemplateError, load_template
from insightmesh_local.ttl import TtlSweeper

DEFAULT_TEMPLATE = Path("infra/template.yaml")
DEFAULT_DATA_DIR = local_auth.DEFAULT_DATA_DIR  # local state that outlives a run: the knowledge base, the secret
OTLP_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


def make_logger(stream: Any = None) -> Callable[[str], None]:
    lock = threading.Lock()

    def log(message: str) -> None:
        with lock:
            print(f"{_stamp()} [dev] {message}", file=stream or sys.stderr, flush=True)

    return log


class Emulator:
    """The embedded moto server, on loopback only."""

    def __init__(self, port: int) -> None:
        from moto.server import ThreadedMotoServer

        self.port = port
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.started = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not port_free(self.port):
            raise OSError(f"port {self.port} on 127.0.0.1 is in use (pass --emulator-port)")
        self.server.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.server.stop()
            self.started = False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def base_environment() -> dict[str, str]:
    """What a function's process inherits besides its template environment: only what lets the
    interpreter run (PATH, locale, this venv), never this shell's AWS or app settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "SYSTEMROOT")
    environment = {key: os.environ[key] for key in keep if key in os.environ}
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment


@dataclass
class LocalRuntime:
    template_path: Path = DEFAULT_TEMPLATE
    port: int = 3000
    emulator_port: int = 4566
    endpoint_url: str | None = None
    stack_name: str = "insightmesh-dev"
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=dict)
    ttl_interval: float = 5.0
    slack_sandbox_port: int | None = None  # None: PORT + 1
    data_dir: Path = DEFAULT_DATA_DIR
    # Where the functions export their traces (OTLP/HTTP); None: OTEL_EXPORTER_OTLP_ENDPOINT, else off.
    otlp_endpoint: str | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    log: Callable[[str], None] = field(default_factory=make_logger)
    emulator: Emulator | None = None
    stack: Stack | None = None
    functions: Functions | None = None
    gateway: Gateway | None = None
    scheduler: Scheduler | None = None
    ttl: TtlSweeper | None = None
    pollers: list[SqsPoller] = field(default_factory=list)
    slack_sandbox: Any = None
    qdrant_bridge: Any = None
    durable: Any = None  # durable.DurableService, when the template has durable functions
    cfn_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    ready_seconds: float = 0.0
    # The control surface's per-run secret (local_auth); ``write_secret``: put it in the data dir
    # (0600) for the CLI clients, as ``insightmesh dev`` does.
    secret: str = ""
    write_secret: bool = False
    ready: threading.Event = field(default_factory=threading.Event)  # set once every part is up

    def __post_init__(self) -> None:
        self.secret = self.secret or local_auth.new_secret(self.environ)

    # -- start ---------------------------------------------------------------------------------
    def start_emulator(self) -> str:
        if self.endpoint_url:
            self.log(f"using AWS endpoint {self.endpoint_url}")
            return self.endpoint_url
        self.emulator = Emulator(self.emulator_port)
        self.emulator.start()
        self.log(f"embedded AWS emulator (moto) on {self.emulator.url}")
        return self.emulator.url

    def resolve_parameters(self, template: Template) -> dict[str, str]:
        """Parameters: --parameter-overrides, else the environment variable the template's
        ``InsightMesh::Local`` metadata names, else (not in production) its local default."""
        metadata = template.local_metadata
        values: dict[str, str] = {}
        for parameter, variable in (metadata.get("EnvironmentParameters") or {}).items():
            if self.environ.get(str(variable)):
                values[parameter] = self.environ[str(variable)]
        production = (self.parameters.get("Environment") or values.get("Environment")) == "production"
        if not production:
            for parameter, value in (metadata.get("LocalDefaults") or {}).items():
                values.setdefault(parameter, str(value).replace("${LocalPort}", str(self.port)))
        values.update(self.parameters)
        return values

    def start_slack_sandbox(self, template: Template, parameters: dict[str, str]) -> None:
        """A local Slack Web API stand-in when no SLACK_API_URL is given (development only)."""
        if "SlackApiUrl" not in template.parameters or parameters.get("SlackApiUrl"):
            return
        if parameters.get("Environment") == "production":
            return
        from insightmesh_local.slack_sandbox import SlackSandbox

        port = self.slack_sandbox_port if self.slack_sandbox_port is not None else self.port + 1
        if port and not port_free(port):
            self.log(f"port {port} is in use: the Slack sandbox takes a free port instead")
            port = 0
        self.slack_sandbox = SlackSandbox(port=port, secret=self.secret)
        self.slack_sandbox.start()
        parameters["SlackApiUrl"] = self.slack_sandbox.url
        self.log(f"Slack Web API sandbox (a development stand-in, not Slack) on {self.slack_sandbox.url}")

    def start_knowledge_base(self, template: Template, parameters: dict[str, str], *, required: bool = True) -> None:
        """The knowledge base's Qdrant: the server ``QDRANT_URL`` (the ``QdrantUrl`` parameter) names,
        else qdrant-client's embedded store in ``<data dir>/qdrant``. Embedded mode locks its folder
        to one process while every function runs in a process of its own, so this process opens it
        once and serves it to them on 127.0.0.1 (``qdrant_bridge``). ``required=False`` (``insightmesh
        invoke``): when another process (a running ``insightmesh dev``) holds the store, an empty
        in-memory one is served instead, as the invocation's emulator is a fresh one too."""
        if "QdrantUrl" not in template.parameters:
            return
        if parameters.get("QdrantUrl"):
            self.log(f"knowledge base: the Qdrant server at {parameters['QdrantUrl']}")
            return
        if parameters.get("Environment") == "production":
            return
        from insightmesh_local.qdrant_bridge import BridgeError, QdrantBridge

        bridge = QdrantBridge(self.data_dir / "qdrant", log=self.log)
        try:
            bridge.start()
        except BridgeError as error:
            if required:
                raise BridgeError(f"{error} (stop it, or pass --data-dir)") from error
            self.log(f"{error}: this run uses an empty in-memory knowledge base")
            bridge = QdrantBridge(None, log=self.log).start()
        self.qdrant_bridge = bridge
        parameters["QdrantUrl"] = bridge.url
        where = f"stored in {bridge.path}" if bridge.path is not None else "in memory (not kept)"
        self.log(f"knowledge base: {where} (embedded Qdrant, served to the functions on {bridge.url})")

    def deploy(self, *, sandbox: bool = False, knowledge_base: bool | None = None) -> Stack:
        """``sandbox``: the Slack sandbox when no SLACK_API_URL is given (``insightmesh dev``);
        ``knowledge_base`` (default: as ``sandbox``): the local Qdrant when no QDRANT_URL is given,
        required when ``sandbox``, best effort otherwise (``insightmesh invoke``)."""
        template = load_template(self.template_path)
        self.parameters = self.resolve_parameters(template)
        endpoint = self.start_emulator()
        if sandbox:
            self.start_slack_sandbox(template, self.parameters)
        if knowledge_base is None:
            knowledge_base = sandbox
        if knowledge_base:
            self.start_knowledge_base(template, self.parameters, required=sandbox)
        for key, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        self.stack = Stack(template=template, stack_name=self.stack_name, region=self.region,
                           endpoint_url=endpoint, parameters=self.parameters, log=self.log)
        self.stack.deploy()
        self.log(f"created {len(self.stack.created)} resource(s): " + ", ".join(self.stack.created))
        specs = self.stack.function_specs(base_environment())
        problems = [f"function {spec.logical_id}: {problem}" for spec in specs for problem in spec.check()]
        if problems:
            raise TemplateError("; ".join(problems))
        self.trace_functions(specs)
        self.functions = Functions(specs, log=self.log)
        self.start_durable_service(template, specs, persistent=sandbox)
        return self.stack

    def trace_functions(self, specs: list[Any]) -> None:
        """Tracing, when an OTLP endpoint is given (``--otlp-endpoint``, else the shell's
        ``OTEL_EXPORTER_OTLP_ENDPOINT``): every function exports its spans there as a service of
        its own (``OTEL_SERVICE_NAME`` = its folder name, ``slack_ingress``), and the shell's other
        ``OTEL_*`` settings (sampler, headers, content capture) reach every function."""
        endpoint = (self.otlp_endpoint or self.environ.get(OTLP_ENDPOINT_VARIABLE, "")).strip()
        if not endpoint:
            return
        settings = {key: value for key, value in self.environ.items()
                    if key.startswith("OTEL_") and key != "OTEL_SERVICE_NAME"}
        for spec in specs:  # before any worker starts: a worker's environment is fixed when it starts
            spec.environment.update({**settings, OTLP_ENDPOINT_VARIABLE: endpoint,
                                     "OTEL_SERVICE_NAME": spec.short_name})
        self.log(f"tracing: every function exports its spans to {endpoint} (OTLP/HTTP)")

    def start_durable_service(self, template: Template, specs: list[Any], *, persistent: bool) -> None:
        """Lambda's durable execution service for the template's durable functions (``durable``):
        its checkpoint log in ``<data dir>/durable`` under ``insightmesh dev`` (in memory for
        ``insightmesh invoke``), reached by every function through ``AWS_ENDPOINT_URL_LAMBDA``."""
        from insightmesh_local.durable import DurableService, durable_functions

        assert self.functions is not None
        found = durable_functions(template, specs)
        if not found:
            return
        self.durable = DurableService(self.functions, found, secret=self.secret, region=self.region, log=self.log,
                                      state_dir=self.data_dir / "durable" if persistent else None)
        self.durable.start()
        for spec in specs:  # before any worker starts: a worker's environment is fixed when it starts
            spec.environment.update(self.durable.environment())

    def start(self) -> None:
        self.started_at = time.perf_counter()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per invocation is ours
        stack = self.deploy(sandbox=True)
        assert self.functions is not None
        if self.write_secret:  # after deploy: the knowledge base's lock says this run owns the data dir
            path = local_auth.write_secret(self.data_dir, self.secret)
            self.log(f"control secret for the CLI in {path} (mode 0600)")
        self.gateway = Gateway(self.functions, control=self.control, log=self.log, secret=self.secret,
                               ready=self.ready)
        self.gateway.start("127.0.0.1", self.port)
        self.run_custom_resources(stack)
        sqs = stack.client("sqs")
        for mapping in mappings_from(list(self.functions.specs.values()), stack.resolver.resolve):
            if mapping.enabled:
                poller = SqsPoller(mapping, self.functions, sqs, self.region, self.log, self.stop_event)
                poller.start()
                self.pollers.append(poller)
        self.scheduler = Scheduler(self.functions, stack.client, self.region, self.log, self.stop_event)
        self._add_rule_schedules(stack)
        self.scheduler.start()
        self.ttl = TtlSweeper(stack.client("dynamodb"), self.log, self.stop_event, interval=self.ttl_interval)
        self.ttl.start()
        self.ready_seconds = time.perf_counter() - self.started_at
        self.ready.set()  # only now: /health and the control surface answer
        self._announce()

    def run_custom_resources(self, stack: Stack) -> None:
        """Invoke each custom resource's ServiceToken function with CloudFormation's Create
        request, as a deploy would; its answer arrives on /_local/cfn-response/<id>."""
        assert self.functions is not None and self.gateway is not None
        for logical_id in stack.custom_resources:
            resource = stack.template.resources[logical_id]
            properties = stack.resolver.resolve(resource.get("Properties") or {})
            request_id = str(uuid.uuid4())
            event = {
                "RequestType": "Create",
                "ServiceToken": properties["ServiceToken"],
                "ResponseURL": f"http://127.0.0.1:{self.gateway.port}/_local/cfn-response/{request_id}"
                               f"?{urlencode({'token': self.secret})}",
                "StackId": stack.resolver.pseudo("AWS::StackId"),
                "RequestId": request_id,
                "LogicalResourceId": logical_id,
                "ResourceType": resource["Type"],
                "ResourceProperties": properties,
            }
            invocation = self.functions.invoke(str(properties["ServiceToken"]), event,
                                               trigger=f"custom resource {logical_id}")
            answer = self.cfn_responses.pop(request_id, None)
            if not invocation.ok or answer is None or answer.get("Status") != "SUCCESS":
                reason = (answer or {}).get("Reason") or (invocation.error or {}).get("errorMessage") or \
                    "the function did not answer CloudFormation"
                raise TemplateError(f"custom resource {logical_id} failed: {reason}")
            self.log(f"custom resource {logical_id}: {json.dumps(answer.get('Data') or {})}")

    def _add_rule_schedules(self, stack: Stack) -> None:
        assert self.scheduler is not None and self.functions is not None
        for spec in self.functions.specs.values():
            for event_name, event in spec.events.items():
                if event.get("Type") != "Schedule":
                    continue
                properties = stack.resolver.resolve(event.get("Properties") or {})
                enabled = properties.get("Enabled", True) not in (False, "false") and \
                    properties.get("State", "ENABLED") == "ENABLED"
                self.scheduler.add_rule(properties.get("Name") or f"{spec.logical_id}{event_name}",
                                        properties["Schedule"], f"arn:aws:lambda:{self.region}:"
                                        f"123456789012:function:{spec.name}", input_text=properties.get("Input"),
                                        enabled=enabled)
        for logical_id, resource in stack.template.of_type("AWS::Events::Rule").items():
            properties = stack.resolver.resolve(resource.get("Properties") or {})
            if not properties.get("ScheduleExpression"):
                continue
            for target in properties.get("Targets") or []:
                self.scheduler.add_rule(properties.get("Name") or logical_id, properties["ScheduleExpression"],
                                        target["Arn"], input_text=target.get("Input"),
                                        enabled=properties.get("State", "ENABLED") == "ENABLED")

    def _announce(self) -> None:
        assert self.gateway is not None and self.functions is not None
        base = f"http://127.0.0.1:{self.gateway.port}"
        for route in self.gateway.routes:
            self.log(f"route {route.route_key:<32} -> {route.function} (payload {route.payload_version})")
        if self.slack_sandbox is not None:
            self.log(f"slack sandbox {self.slack_sandbox.url}: talk to the bot with "
                     f"`insightmesh chat --port {self.gateway.port}`")
        for poller in self.pollers:
            self.log(f"sqs {poller.mapping.queue_arn.rsplit(':', 1)[-1]} -> {poller.mapping.function} "
                     f"(batch {poller.mapping.batch_size})")
        self.log(f"InsightMesh dev ready on {base} in {self.ready_seconds:.2f}s (Ctrl-C to stop)")

    # -- control surface: /_local/... --------------------------------------------------------------
    def control(self, request: Request) -> WsgiResponse | None:
        parts = [part for part in request.path.split("/") if part][1:]
        if len(parts) == 2 and parts[0] == "cfn-response" and request.method == "PUT":
            self.cfn_responses[parts[1]] = json.loads(request.get_data() or b"{}")
            return _json(200, {})
        if not self.ready.is_set() or self.scheduler is None or self.functions is None:
            return _json(503, {"message": "the runtime is starting"})
        if parts == ["schedules"] and request.method == "GET":
            self.scheduler.refresh()  # what the API just created is listed, not only after the next poll
            return _json(200, {"schedules": self.scheduler.describe()})
        if len(parts) == 3 and parts[0] == "schedules" and parts[2] == "fire" and request.method == "POST":
            self.scheduler.refresh()
            try:
                entry = self.scheduler.fire(parts[1])
            except KeyError:
                names = [entry["name"] for entry in self.scheduler.describe()]
                known = f"the schedules are: {', '.join(names)}" if names else \
                    "there are no schedules yet (a job with a schedule makes one: POST /api/jobs)"
                return _json(404, {"message": f"no schedule named {parts[1]!r}; {known}", "schedules": names})
            return _json(202, {"fired": entry.describe()})
        if parts == ["stack"] and request.method == "GET" and self.stack is not None:
            # For `insightmesh admin bootstrap` / `token create`: where the tables are.
            environment: dict[str, str] = {}
            for spec in self.functions.specs.values():
                environment.update({k: v for k, v in spec.environment.items() if k.endswith("_TABLE")})
            # For `insightmesh chat`: where the Slack sandbox is (PORT + 1 unless that port was taken).
            slack_api_url = self.slack_sandbox.url if self.slack_sandbox is not None else None
            # For `insightmesh eval`: how the job runner reaches the knowledge base and the model
            # (names and addresses; a secret's value never: *_KEY variables are left out).
            runner = next((s for s in self.functions.specs.values() if s.logical_id == "JobRunnerFunction"), None)
            evaluation = {k: v for k, v in (runner.environment if runner is not None else {}).items()
                          if k.startswith(("QDRANT_", "EMBEDDING_", "KNOWLEDGE_", "LLM_")) and not k.endswith("_KEY")}
            return _json(200, {"stack_name": self.stack_name, "region": self.region,
                               "endpoint": self.stack.endpoint_url, "environment": environment,
                               "slack_api_url": slack_api_url, "evaluation_environment": evaluation})
        if parts == ["functions"] and request.method == "GET":
            return _json(200, {"functions": [
                {"logical_id": s.logical_id, "name": s.name, "handler": s.handler, "timeout": s.timeout}
                for s in self.functions.specs.values()]})
        if len(parts) == 3 and parts[0] == "functions" and parts[2] == "invoke" and request.method == "POST":
            try:
                event = json.loads(request.get_data() or b"{}")
                invocation = self.functions.invoke(parts[1], event, trigger="invoke")
            except FunctionNotFound:
                return _json(404, {"message": f"no function {parts[1]!r}"})
            except json.JSONDecodeError as error:
                return _json(400, {"message": f"the event is not JSON: {error}"})
            return _json(200, {"ok": invocation.ok, "result": invocation.result, "error": invocation.error})
        if parts == ["ttl", "sweep"] and request.method == "POST" and self.ttl is not None:
            return _json(200, {"deleted": self.ttl.sweep()})
        if parts[:1] == ["durable"] and self.durable is not None:
            # GET durable/executions[/<name>], POST durable/kill (see insightmesh_local.durable)
            try:
                body = json.loads(request.get_data() or b"{}") if request.method == "POST" else {}
            except json.JSONDecodeError as error:
                return _json(400, {"message": f"the body is not JSON: {error}"})
            status, answer = self.durable.control(request.method, parts[1:], body if isinstance(body, dict) else {})
            return _json(status, answer)
        return None

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        started = time.perf_counter()
        self.ready.clear()
        self.stop_event.set()
        if self.write_secret:
            local_auth.remove_secret(self.data_dir, self.secret)
        if self.gateway is not None:
            self.gateway.stop()
        for poller in self.pollers:
            poller.join(timeout=2)
        if self.scheduler is not None:
            self.scheduler.join(timeout=1)
        if self.ttl is not None:
            self.ttl.join(timeout=1)
        if self.durable is not None:
            self.durable.stop()  # no new invocation starts while the workers close
        if self.functions is not None:
            self.functions.close()
        if self.qdrant_bridge is not None:
            self.qdrant_bridge.stop()  # after the functions: none of them is mid-call any more
            self.qdrant_bridge = None
        if self.slack_sandbox is not None:
            self.slack_sandbox.stop()
        if self.emulator is not None:
            self.emulator.stop()
        self.log(f"stopped in {time.perf_counter() - started:.2f}s")


def _json(status: int, body: Any) -> WsgiResponse:
    return WsgiResponse(json.dumps(body, default=str), status=status, content_type="application/json")
