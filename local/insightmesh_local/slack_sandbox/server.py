"""The sandbox's HTTP server (127.0.0.1 only), the in-process :class:`SlackSandbox` and ``main``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from insightmesh_local import local_auth
from insightmesh_local.slack_sandbox import uploads
from insightmesh_local.slack_sandbox.control import control_reply
from insightmesh_local.slack_sandbox.state import (
    DEFAULT_PORT,
    SANDBOX_HEADER,
    SANDBOX_HEADER_VALUE,
    SANDBOX_WARNING,
    Reply,
    SandboxError,
    log,
)
from insightmesh_local.slack_sandbox.web_api import SandboxState, _api


# -- HTTP ----------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    secret = ""  # the control endpoints' secret (SlackSandbox sets it; empty refuses every control call)

    def __init__(self, port: int, state: SandboxState, stopping: threading.Event) -> None:
        self.state = state
        self.stopping = stopping
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "InsightMeshSlackSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("slack sandbox (development stand-in): " + format, *args)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        path = url.path
        # Every request: a loopback Host (DNS rebinding) and no foreign Origin; the control
        # endpoints also need the run's secret (local_auth). The Web API needs only a bot token.
        control = path.startswith("/_sandbox/") and path != "/_sandbox/health"
        refused = local_auth.refusal(self.headers.get("Host"), self.headers.get("Origin"),
                                     self.headers.get(local_auth.HEADER), self.server.secret if control else None)
        if refused is not None:
            self._raw()
            self._send(Reply(refused[0], {"ok": False, "error": "forbidden" if refused[0] == 403 else "not_authed",
                                          "message": refused[1], "warning": SANDBOX_WARNING}))
            return
        try:
            if path.startswith("/api/"):
                reply = self._web_api(path[len("/api/"):], query)
            elif path.startswith(uploads.UPLOAD_PATH) and verb == "POST":  # files_upload_v2's step 2
                reply = uploads.receive_upload(state, path[len(uploads.UPLOAD_PATH):], self._raw(),
                                               self.headers.get("Content-Type") or "")
            elif path.startswith("/files-pri/") and verb == "GET":
                self._send_file(path[len("/files-pri/"):].split("/", 1)[0])
                return
            elif path.startswith("/response/") and verb == "POST":
                reply = state.response_url_post(path[len("/response/"):], self._json_body(default=None))
            elif path.startswith("/_sandbox/"):
                reply = control_reply(state, verb, path[len("/_sandbox/"):], query, self._json_body)
            elif path == "/" and verb == "GET":
                reply = Reply(200, {"ok": True, "warning": SANDBOX_WARNING, "api": state.base_url + "api/",
                                    "about": "Slack Web API development stand-in for InsightMesh (not Slack)"})
            else:
                reply = Reply(404, {"ok": False, "error": "not_found", "warning": SANDBOX_WARNING})
        except SandboxError as error:
            reply = Reply(400, {"ok": False, "error": "bad_request", "message": str(error), "warning": SANDBOX_WARNING})
        self._send(reply)

    def _raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, default: Any) -> Any:
        raw = self._raw()
        if not raw.strip():
            return default
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _web_api(self, method: str, query: dict[str, str]) -> Reply:
        state = self.server.state
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self._raw()
        args: dict[str, Any] = dict(query)
        if raw:
            if content_type == "application/json":
                try:
                    parsed = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return _api(200, {"ok": False, "error": "invalid_json"})
                if not isinstance(parsed, dict):
                    return _api(200, {"ok": False, "error": "json_not_object"})
                args.update(parsed)
            elif content_type in ("application/x-www-form-urlencoded", ""):
                args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            else:
                return _api(200, {"ok": False, "error": "invalid_form_data"})
        authorization = self.headers.get("Authorization") or ""
        token = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else None
        token = token or (args.get("token") if isinstance(args.get("token"), str) else None)
        return state.api_call(method, args, token)

    def _send_file(self, file_id: str) -> None:
        authorization = self.headers.get("Authorization") or ""
        token = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else None
        status, found = self.server.state.download_file(file_id, token)
        data = found["content"] if found is not None else b"<html>sign in to Slack</html>"
        self.send_response(status)
        self.send_header("Content-Type", found["mimetype"] if found is not None else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(SANDBOX_HEADER, SANDBOX_HEADER_VALUE)
        self.end_headers()
        self.wfile.write(data)

    def _send(self, reply: Reply) -> None:
        if reply.delay:
            # The call already happened (its message is recorded); only the answer is late.
            self.server.stopping.wait(reply.delay)
        text = isinstance(reply.body, str)  # the upload URL answers plain text ("OK - 1234"), as Slack's
        data = reply.body.encode("utf-8") if text else json.dumps(reply.body).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8" if text else "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header(SANDBOX_HEADER, SANDBOX_HEADER_VALUE)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("slack sandbox (development stand-in): the client went away before the answer")


# -- in-process API --------------------------------------------------------------------------------------
class SlackSandbox:
    """The sandbox server, for tests and ``insightmesh dev`` (127.0.0.1 only)."""

    def __init__(self, port: int = 0, *, secret: str | None = None, **identity: str) -> None:
        self.port = port
        self.secret = secret or local_auth.new_secret()  # for /_sandbox/* over HTTP (X-InsightMesh-Local-Token)
        self.state = SandboxState(**identity)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """The Web API base URL, for ``WebClient(base_url=...)`` and ``SLACK_API_URL``."""
        return self.root + "api/"

    def start(self) -> SlackSandbox:
        self._stopping.clear()
        self._server = _Server(self.port, self.state, self._stopping)
        self._server.secret = self.secret
        self.port = int(self._server.server_address[1])
        self.state.base_url = self.root
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="slack-sandbox", daemon=True)
        self._thread.start()
        log.info("Slack Web API development sandbox (a stand-in, NOT Slack) on %s", self.url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection and control ------------------------------------------------------------------------
    def messages(self, channel: str | None = None, thread_ts: str | None = None,
                 since: str | None = None) -> list[dict[str, Any]]:
        return self.state.messages(channel, thread_ts, since)

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return self.state.calls(method)

    def reset(self) -> None:
        self.state.reset()

    def fail(self, method: str, mode: str, count: int = 1, **options: Any) -> dict[str, Any]:
        return self.state.fail(method, mode, count, **options).describe()

    def add_users(self, *users: dict[str, Any] | Iterable[dict[str, Any]]) -> list[str]:
        """Register users: ``add_users(u1, u2)`` or ``add_users([u1, u2, ...])``."""
        flat: list[dict[str, Any]] = []
        for given in users:
            if isinstance(given, dict):
                flat.append(given)
            else:
                flat.extend(given)
        return self.state.add_users(flat)

    def generate_users(self, count: int, *, domain: str = "example.com", start: int = 1,
                       id_prefix: str = "U") -> list[str]:
        return self.state.generate_users(count, domain=domain, start=start, id_prefix=id_prefix)

    def remove_users(self, *user_ids: str) -> list[str]:
        return self.state.remove_users(user_ids)

    def add_file(self, name: str, content: bytes, mimetype: str) -> dict[str, Any]:
        return self.state.add_file(name, content, mimetype)

    def set_channel(self, channel_id: str, members: Iterable[str], **options: Any) -> dict[str, Any]:
        return self.state.set_channel(channel_id, members, **options)

    def response_url(self, *, channel: str | None, user: str | None = None, message_ts: str | None = None,
                     thread_ts: str | None = None) -> str:
        return self.state.response_url(channel=channel, user=user, message_ts=message_ts, thread_ts=thread_ts)

    def add_user_message(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        return self.state.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insightmesh_local.slack_sandbox",
                                     description="Slack Web API development stand-in (NOT Slack), on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--quiet", action="store_true", help="do not log every call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s [slack-sandbox] %(message)s", stream=sys.stderr)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sandbox = SlackSandbox(port=args.port).start()
    except OSError as error:
        print(f"slack sandbox: cannot listen on 127.0.0.1:{args.port}: {error}", file=sys.stderr)
        return 1
    given = bool(os.environ.get(local_auth.ENVIRONMENT_VARIABLE))
    secret = f"${local_auth.ENVIRONMENT_VARIABLE}" if given else \
        f"export {local_auth.ENVIRONMENT_VARIABLE}={sandbox.secret}  (for insightmesh chat)"
    print(f"Slack Web API development sandbox — NOT Slack, nothing leaves this machine.\n"
          f"  SLACK_API_URL={sandbox.url}\n  inspect: {sandbox.root}_sandbox/messages  (Ctrl-C to stop)\n"
          f"  /_sandbox/* needs the header {local_auth.HEADER}: {secret}",
          file=sys.stderr, flush=True)
    while not stopping.wait(0.5):
        pass
    sandbox.stop()
    return 0
