"""The local knowledge base: qdrant-client's embedded Qdrant, opened once, served over Qdrant's REST API.

Why this exists
    In AWS every function reaches a Qdrant server through ``QDRANT_URL``. Locally the knowledge
    base is qdrant-client's *embedded* mode (``QdrantClient(path=...)``, persisted in a folder),
    which takes an exclusive lock on its folder: only ONE process may open it. ``insightmesh dev``
    runs every Lambda function in its own worker process (conversation_worker reads the store,
    job_runner and knowledge_ingest write it), and ``insightmesh ingest`` must work while the dev
    server runs. So the dev process opens the embedded store once, here, and serves it on
    127.0.0.1; every function talks to it with ``QdrantClient(url=...)`` exactly as in AWS, and
    ``insightmesh ingest`` goes through the running system (the knowledge_ingest function), never
    through the folder.

What it is NOT
    Not a Qdrant reimplementation. It parses each request with qdrant-client's own REST models
    (``qdrant_client.http.models``) and forwards it to the real embedded engine's public methods
    (``create_collection``, ``upsert``, ``query_points`` ...); filters, fusion, grouping, scoring and
    persistence are qdrant-client's. The bridge only translates HTTP to method calls and answers in
    Qdrant's envelope ``{"result": ..., "status": "ok", "time": <seconds>}`` (errors:
    ``{"status": {"error": "..."}, "time": ...}`` with 400, 404 or 409, as the server does).
    Calls into the embedded client are serialised with one lock (it is not thread-safe), which is
    also why its SQLite check_same_thread guard can be turned off: only one thread is ever inside.

Endpoints (the subset qdrant-client's REST transport uses for the knowledge base)
    ``GET /`` (version: the installed qdrant-client's, so the client's compatibility check
    passes), ``GET /healthz|/livez|/readyz``, ``GET /collections``,
    ``GET /collections/{c}/exists``, ``GET|PUT|DELETE /collections/{c}``,
    ``PUT /collections/{c}/index``, ``PUT /collections/{c}/points`` (upsert, list or batch),
    ``POST /collections/{c}/points`` (retrieve), ``POST /collections/{c}/points/delete``,
    ``POST /collections/{c}/points/payload`` (set payload), ``POST /collections/{c}/points/scroll``,
    ``POST /collections/{c}/points/count``, ``POST /collections/{c}/points/query``,
    ``POST /collections/{c}/points/query/batch``, ``POST /collections/{c}/points/query/groups``.
    Anything else answers 404 naming the method and path, so a client call the bridge does not
    forward yet is obvious. Query parameters (``wait``, ``timeout``, ``consistency``) are accepted
    and ignored: the embedded engine is synchronous and single-node. Collection tuning (HNSW,
    quantization, shards) is accepted and ignored, as embedded mode does; payload indexes are
    recorded but embedded search is exact (brute force), so they change speed, never results.

Use: ``QdrantBridge(path).start()`` then ``.url``, ``.stop()`` (releases the folder's lock);
``QdrantBridge(None)`` serves an in-memory store instead (nothing kept, no folder locked).
Standalone: ``python -m insightmesh_local.qdrant_bridge --path .insightmesh/qdrant --port 6333``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import QdrantClient
from qdrant_client.http import models
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from insightmesh_local import local_auth

LOCK_WAIT_ON_STOP = 1.0  # seconds stop() waits for a call in progress before closing the store

# Embedded mode warns about what it ignores; through the bridge those are expected, not news.
_EXPECTED_WARNINGS = ("Payload indexes have no effect in the local Qdrant", "Local mode performs exact")

_POINTS_INSERT: TypeAdapter[models.PointsBatch | models.PointsList] = TypeAdapter(models.PointInsertOperations)
_POINTS_SELECTOR: TypeAdapter[models.PointIdsList | models.FilterSelector] = TypeAdapter(models.PointsSelector)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (the functions query the store on every question)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BridgeError(OSError):
    """The store cannot be opened (its folder is locked by another process, or unusable)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def qdrant_client_version() -> str:
    return importlib.metadata.version("qdrant-client")


Handler = Callable[["QdrantBridge", str, Any], Any]
_ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def _route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD /collections/{c}/...; ``{c}`` becomes the first argument."""
    pattern = re.compile("^" + re.escape(path).replace(re.escape("{c}"), "(?P<c>[^/]+)") + "$")

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, pattern, handler.__name__))
        return handler

    return register


def _error_status(error: ValueError) -> int:
    text = str(error).lower()
    if "not found" in text or "does not exist" in text or "doesn't exist" in text:
        return 404
    if "already exists" in text:
        return 409
    return 400


class QdrantBridge:
    """The embedded store behind a loopback HTTP server speaking Qdrant's REST API."""

    host = "127.0.0.1"  # loopback only: the store has no authentication of its own

    def __init__(self, path: Path | str | None, *, port: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path).absolute() if path is not None else None
        self.port = port
        self.log = log or (lambda message: None)
        self.client: QdrantClient | None = None
        self.lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> QdrantBridge:
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            if self.path is None:
                self.client = QdrantClient(location=":memory:")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=str(self.path), force_disable_check_same_thread=True)
        except RuntimeError as error:  # qdrant-client's "already accessed by another instance"
            raise BridgeError(f"the knowledge base in {self.path} is open in another process (another "
                              f"`insightmesh dev`?): {error}") from error
        except OSError as error:
            raise BridgeError(f"cannot open the knowledge base in {self.path}: {error}") from error
        try:
            self._server = make_server(self.host, self.port, self, threaded=True, request_handler=_QuietHandler)
        except OSError:
            self._close_client()
            raise
        self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="qdrant-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._close_client()

    def _close_client(self) -> None:
        if self.client is None:
            return
        # Let a call in progress finish; a process that exits anyway releases the lock itself.
        acquired = self.lock.acquire(timeout=LOCK_WAIT_ON_STOP)
        try:
            self.client.close()
            self.client = None
        finally:
            if acquired:
                self.lock.release()

    # -- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> WsgiResponse:
        started = time.perf_counter()
        path = request.path.rstrip("/") or "/"
        method = request.method.upper()
        refused = local_auth.refusal(request.headers.get("Host"), request.headers.get("Origin"), None, None)
        if refused is not None:  # a foreign Host is a DNS-rebinding page, not a function of this run
            return _failure(refused[0], refused[1], started)
        try:
            if path == "/" and method == "GET":
                return _raw(200, {"title": "qdrant - vector search engine (insightmesh local bridge over "
                                           "qdrant-client's embedded mode)",
                                  "version": qdrant_client_version(), "commit": None})
            if path in ("/healthz", "/livez", "/readyz") and method == "GET":
                return WsgiResponse(f"{path[1:]} check passed", status=200, content_type="text/plain")
            handler, collection = self._resolve(method, path)
            body = self._body(request)
            result = handler(self, collection, body)
            return _raw(200, {"result": to_jsonable_python(result), "status": "ok",
                              "time": time.perf_counter() - started})
        except ApiError as error:
            return _failure(error.status, str(error), started)
        except ValidationError as error:
            return _failure(400, f"Format error in JSON body: {_short(error)}", started)
        except ValueError as error:  # the embedded engine's way of saying "bad input" / "not found"
            status = _error_status(error)
            return _failure(status, f"{'Not found' if status == 404 else 'Wrong input'}: {error}", started)
        except Exception as error:  # noqa: BLE001 - the one place a request's unexpected failure is logged and answered
            self.log(f"qdrant bridge: {method} {path} failed: {type(error).__name__}: {error}")
            return _failure(500, f"Service internal error: {type(error).__name__}: {error}", started)

    def _resolve(self, method: str, path: str) -> tuple[Handler, str]:
        allowed = False
        for route_method, pattern, name in _ROUTES:
            found = pattern.match(path)
            if not found:
                continue
            if route_method == method:
                return getattr(QdrantBridge, name), found.groupdict().get("c", "")
            allowed = True
        if allowed:
            raise ApiError(405, f"method {method} is not allowed on {path} (insightmesh local Qdrant bridge)")
        raise ApiError(404, f"{method} {path} is not forwarded by the insightmesh local Qdrant bridge "
                            "(see insightmesh_local/qdrant_bridge.py)")

    @staticmethod
    def _body(request: Request) -> Any:
        data = request.get_data(cache=False)
        if not data:
            return None
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"Format error in JSON body: {error}") from error

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One call into the embedded client, under the lock."""
        with self.lock:
            if self.client is None:
                raise ApiError(503, "the local knowledge base is stopping")
            return getattr(self.client, method)(*args, **kwargs)

    # -- collections ---------------------------------------------------------------------------
    @_route("GET", "/collections")
    def list_collections(self, _collection: str, _body: Any) -> Any:
        return self._call("get_collections")

    @_route("GET", "/collections/{c}/exists")
    def collection_exists(self, collection: str, _body: Any) -> Any:
        return models.CollectionExistence(exists=self._call("collection_exists", collection))

    @_route("GET", "/collections/{c}")
    def get_collection(self, collection: str, _body: Any) -> Any:
        return self._call("get_collection", collection)

    @_route("PUT", "/collections/{c}")
    def create_collection(self, collection: str, body: Any) -> Any:
        request = models.CreateCollection.model_validate(body or {})
        return self._call("create_collection", collection, vectors_config=request.vectors,
                          sparse_vectors_config=request.sparse_vectors, metadata=request.metadata)

    @_route("DELETE", "/collections/{c}")
    def delete_collection(self, collection: str, _body: Any) -> Any:
        return self._call("delete_collection", collection)

    @_route("PUT", "/collections/{c}/index")
    def create_payload_index(self, collection: str, body: Any) -> Any:
        request = models.CreateFieldIndex.model_validate(body)
        return self._call("create_payload_index", collection, field_name=request.field_name,
                          field_schema=request.field_schema)

    # -- points --------------------------------------------------------------------------------
    @_route("PUT", "/collections/{c}/points")
    def upsert(self, collection: str, body: Any) -> Any:
        request = _POINTS_INSERT.validate_python(body)
        points = request.points if isinstance(request, models.PointsList) else request.batch
        return self._call("upsert", collection, points=points, update_filter=request.update_filter,
                          update_mode=request.update_mode)

    @_route("POST", "/collections/{c}/points")
    def retrieve(self, collection: str, body: Any) -> Any:
        request = models.PointRequest.model_validate(body)
        return self._call("retrieve", collection, ids=request.ids,
                          with_payload=True if request.with_payload is None else request.with_payload,
                          with_vectors=request.with_vector or False)

    @_route("POST", "/collections/{c}/points/delete")
    def delete(self, collection: str, body: Any) -> Any:
        return self._call("delete", collection, points_selector=_POINTS_SELECTOR.validate_python(body))

    @_route("POST", "/collections/{c}/points/payload")
    def set_payload(self, collection: str, body: Any) -> Any:
        request = models.SetPayload.model_validate(body)
        if request.points is not None:
            selector: models.PointIdsList | models.FilterSelector = models.PointIdsList(points=request.points)
        elif request.filter is not None:
            selector = models.FilterSelector(filter=request.filter)
        else:
            raise ApiError(400, "Wrong input: either points or filter is required")
        return self._call("set_payload", collection, payload=request.payload, points=selector, key=request.key)

    @_route("POST", "/collections/{c}/points/scroll")
    def scroll(self, collection: str, body: Any) -> Any:
        request = models.ScrollRequest.model_validate(body or {})
        points, next_offset = self._call(
            "scroll", collection, scroll_filter=request.filter, limit=request.limit or 10,
            order_by=request.order_by, offset=request.offset,
            with_payload=True if request.with_payload is None else request.with_payload,
            with_vectors=request.with_vector or False)
        return models.ScrollResult(points=points, next_page_offset=next_offset)

    @_route("POST", "/collections/{c}/points/count")
    def count(self, collection: str, body: Any) -> Any:
        request = models.CountRequest.model_validate(body or {})
        return self._call("count", collection, count_filter=request.filter,
                          exact=True if request.exact is None else request.exact)

    # -- query ---------------------------------------------------------------------------------
    def _query(self, collection: str, request: models.QueryRequest) -> Any:
        return self._call(
            "query_points", collection, query=request.query, using=request.using, prefetch=request.prefetch,
            query_filter=request.filter, search_params=request.params,
            limit=10 if request.limit is None else request.limit, offset=request.offset,
            with_payload=request.with_payload or False, with_vectors=request.with_vector or False,
            score_threshold=request.score_threshold, lookup_from=request.lookup_from)

    @_route("POST", "/collections/{c}/points/query")
    def query_points(self, collection: str, body: Any) -> Any:
        return self._query(collection, models.QueryRequest.model_validate(body or {}))

    @_route("POST", "/collections/{c}/points/query/batch")
    def query_batch_points(self, collection: str, body: Any) -> Any:
        batch = models.QueryRequestBatch.model_validate(body)
        return [self._query(collection, request) for request in batch.searches]

    @_route("POST", "/collections/{c}/points/query/groups")
    def query_points_groups(self, collection: str, body: Any) -> Any:
        request = models.QueryGroupsRequest.model_validate(body)
        return self._call(
            "query_points_groups", collection, group_by=request.group_by, query=request.query,
            using=request.using, prefetch=request.prefetch, query_filter=request.filter,
            search_params=request.params, limit=10 if request.limit is None else request.limit,
            group_size=3 if request.group_size is None else request.group_size,
            with_payload=request.with_payload or False, with_vectors=request.with_vector or False,
            score_threshold=request.score_threshold, with_lookup=request.with_lookup,
            lookup_from=request.lookup_from)


def _raw(status: int, body: Any) -> WsgiResponse:
    return WsgiResponse(json.dumps(body), status=status, content_type="application/json")


def _failure(status: int, message: str, started: float) -> WsgiResponse:
    return _raw(status, {"status": {"error": message}, "time": time.perf_counter() - started})


def _short(error: ValidationError) -> str:
    problems = error.errors()[:3]
    return "; ".join(f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insightmesh_local.qdrant_bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=".insightmesh/qdrant", help="the embedded store's folder (:memory: for none)")
    parser.add_argument("--port", type=int, default=6333, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    bridge = QdrantBridge(None if args.path == ":memory:" else args.path, port=args.port, log=log)
    try:
        bridge.start()
    except OSError as error:
        print(f"qdrant bridge: {error}", file=sys.stderr)
        return 1
    log(f"embedded Qdrant in {bridge.path or 'memory'} served on {bridge.url} (Ctrl-C to stop)")
    while not stopping.wait(0.5):
        pass
    bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
