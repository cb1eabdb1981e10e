"""The plumbing every stand-in shares: a quiet handler that reads a body and answers JSON (or raw
bytes), never cached, the start/stop of a ``ThreadingHTTPServer`` on 127.0.0.1, and a stand-in
run as a process until it is signalled (:func:`serve_until_signalled`)."""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    json_content_type = "application/json"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer ``body`` as JSON (``bytes`` as they are, with the caller's Content-Type; ``None``:
        no body). A client that went away before the answer just closes the connection."""
        raw = isinstance(body, bytes)
        payload = b"" if body is None else body if raw else json.dumps(body).encode()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None and not raw:
                self.send_header("Content-Type", self.json_content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timed out) before the answer
            self.close_connection = True


class ThreadedServer(ThreadingHTTPServer):
    """A stand-in that *is* its ``ThreadingHTTPServer`` and serves itself on a daemon thread:
    :meth:`start`, :meth:`stop` (idempotent; a server never started is only closed), or a
    ``with`` block."""

    daemon_threads = True
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandinServer:
    """Start/stop of a stand-in that owns a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0: a free
    one), usable as a context manager. Subclasses set ``port`` and ``thread_name`` and build their
    server in :meth:`_new_server`."""

    port: int
    thread_name = "standin"
    _server: Any = None
    _thread: threading.Thread | None = None

    def _new_server(self, port: int) -> ThreadingHTTPServer:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._server = self._new_server(self.port)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Stoppable(Protocol):
    def stop(self) -> None: ...


def serve_until_signalled(server: Stoppable, max_seconds: float) -> None:
    """A started stand-in run as a process (``python -m tests.standins.…``): until SIGINT or
    SIGTERM, or ``max_seconds`` at most; then stopped."""
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait(max_seconds)
    server.stop()
