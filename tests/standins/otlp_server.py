"""An OTLP/HTTP trace receiver on loopback: what a collector's ``otlphttp`` receiver does with
traces, minus the pipeline (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    receiver = OtlpReceiver().start()   # receiver.url = "http://127.0.0.1:<port>"
    ...                                 # OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url
    receiver.spans()                    # every span received, as plain dicts
    receiver.stop()

or as a process (for ``insightmesh dev --otlp-endpoint`` and the benchmarks):
``python -m tests.standins.otlp_server --port 4318``.

Wire format (the OTLP specification, "OTLP/HTTP"): ``POST /v1/traces`` with ``Content-Type:
application/x-protobuf`` and an ``ExportTraceServiceRequest`` body, gzip-compressed when the
request says ``Content-Encoding: gzip``; the answer is an ``ExportTraceServiceResponse`` (200,
protobuf). Another content type → 415, a body that does not parse → 400 (both permanent
failures for the exporter, which does not retry them).

Each span is stored as ``{"trace_id", "span_id", "parent_span_id" (hex; "" for a root), "name",
"kind" ("server", "client", ...), "service.name", "scope", "attributes" (decoded values: str, bool,
int, float or lists of them), "events": [{"name", "attributes"}], "status" ("unset", "ok",
"error"), "start_ns", "end_ns"}``.

Control (not OTLP): ``GET /spans`` → ``{"spans": [...], "requests": n}``; ``POST /_reset``
forgets them.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import threading
import zlib
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.standins.http import JsonHandler, ThreadedServer, serve_until_signalled

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
_KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
          Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}
_STATUSES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the Python value it carries (arrays as lists, maps as dicts)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {pair.key: decode_value(pair.value) for pair in pairs}


def spans_of(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """The spans of one export request, as plain dicts (the module docstring's shape)."""
    found = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": _KINDS.get(span.kind, "unspecified"),
                    "service.name": resource.get("service.name"),
                    "scope": scope_spans.scope.name,
                    "attributes": decode_attributes(span.attributes),
                    "events": [{"name": event.name, "attributes": decode_attributes(event.attributes)}
                               for event in span.events],
                    "status": _STATUSES.get(span.status.code, "unset"),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                })
    return found


class OtlpReceiver(ThreadedServer):
    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self._spans: list[dict[str, Any]] = []
        self.requests = 0

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes (the exporter appends ``/v1/traces``)."""
        return self.url

    def spans(self, *, trace_id: str | None = None) -> list[dict[str, Any]]:
        """A copy of every span received so far (only ``trace_id``'s when given), in arrival order."""
        with self.lock:
            return [dict(span) for span in self._spans if trace_id is None or span["trace_id"] == trace_id]

    def reset(self) -> None:
        with self.lock:
            self._spans.clear()
            self.requests = 0

    def receive(self, spans: list[dict[str, Any]]) -> None:
        with self.lock:
            self._spans.extend(spans)
            self.requests += 1


class _Handler(JsonHandler):
    server: OtlpReceiver

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/spans":
            self._send(404, {"error": "not found"})
            return
        with self.server.lock:
            body = {"spans": list(self.server._spans), "requests": self.server.requests}
        self._send(200, body)

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == "/_reset":
            self.server.reset()
            self._send(200, {"ok": True})
            return
        if path != TRACES_PATH:
            self._send(404, {"error": "not found"})
            return
        if (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower() != PROTOBUF:
            self._send(415, {"error": f"Content-Type must be {PROTOBUF}"})
            return
        request = ExportTraceServiceRequest()
        try:
            if (self.headers.get("Content-Encoding") or "").strip().lower() == "gzip":
                body = gzip.decompress(body)
            request.ParseFromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as error:
            self._send(400, {"error": f"not an ExportTraceServiceRequest: {error}"})
            return
        self.server.receive(spans_of(request))
        self._send(200, ExportTraceServiceResponse().SerializeToString(), headers={"Content-Type": PROTOBUF})


def start(port: int = 0) -> OtlpReceiver:
    """A receiver on 127.0.0.1 (``port=0``: any free port), serving in a background thread."""
    return OtlpReceiver(port).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.otlp_server",
                                     description="OTLP/HTTP trace receiver on 127.0.0.1 (a stand-in for a collector).")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long (bounded)")
    args = parser.parse_args(argv)
    server = start(args.port)
    print(f"OTLP receiver listening on {server.url}; for insightmesh dev:\n"
          f"  insightmesh dev --otlp-endpoint {server.url}   (spans: GET {server.url}/spans)", flush=True)
    serve_until_signalled(server, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
