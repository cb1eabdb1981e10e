"""Run one untrusted-input function in a child process, under a wall-clock and a memory limit.

:func:`run_isolated` hands ``module:function``, its keyword arguments and the input bytes to a
*fork server*: a small Python process (``python -m insightmesh.knowledge.isolation``) started
once per process with :mod:`subprocess` and plain pipes, which has imported the parsers and forks
one child per call. The child sets ``RLIMIT_AS`` on itself, calls the function and writes its JSON
result to a pipe; the server waits for it until the deadline and kills it then. So:

* a parser that allocates past the limit gets ``MemoryError`` → :class:`IsolationOutOfMemory`;
* a child still running at the deadline is killed → :class:`IsolationTimeout`;
* any other death (a signal, an abort in C code) → :class:`IsolationCrashed`;
* the function's own exception comes back as :class:`IsolatedFailure` (type, message, ``reason``).

Why this shape:

* **Lambda has no /dev/shm**, so ``multiprocessing.Queue``, ``Pool`` and their semaphores fail
  there; pipes and ``fork`` work everywhere.
* **A daemonic multiprocessing process may not start children.** ``insightmesh dev`` runs each
  function in its own interpreter started with ``subprocess.Popen`` (see
  ``functions.py`` of the local runtime, under ``local/``) and Lambda runs the handler in its runtime's main process;
  a ``subprocess`` child works under both, and under any host that *is* daemonic.
* **No fork of the caller.** The caller has threads (boto3, OpenTelemetry, the SQS batch); forking
  it could copy a held lock into the child, and ``preexec_fn`` is unsafe for the same reason. The
  fork server is single-threaded (BLAS kept to one thread) and never parses anything itself.
* **Cheap per file.** A fresh interpreter per file pays the parser's import every time (0.3-1 s:
  ``benchmarks/extraction.py``); a fork of the warm server pays a few milliseconds.
* **Nothing secret.** The server gets a minimal environment (``PATH``, locale, and the parent's
  ``sys.path`` as ``PYTHONPATH``): no AWS credentials, tokens or secrets reach the parsing code.

A server that stops answering is killed a few seconds after the call's deadline and replaced on
the next call; it exits by itself when its parent goes (end of its stdin). Calls from several
threads take turns (one lock).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Final

MEMORY_EXIT_CODE: Final = 75
SERVER_GRACE_SECONDS: Final = 5.0
_STDERR_TAIL: Final = 2_000


class IsolationError(Exception):
    """The isolated call did not return a result."""


class IsolationTimeout(IsolationError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the child process ran past {seconds:g} s and was killed")
        self.seconds = seconds


class IsolationOutOfMemory(IsolationError):
    def __init__(self, memory_bytes: int) -> None:
        super().__init__(f"the child process needed more than {memory_bytes} bytes of address space")
        self.memory_bytes = memory_bytes


class IsolationCrashed(IsolationError):
    """The child died without a result (a signal, an abort in C code, a broken reply)."""


class IsolatedFailure(IsolationError):
    """The target raised an exception: its type name, message and ``reason`` (when it had one)."""

    def __init__(self, type_name: str, message: str, reason: str | None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.reason = reason


def child_environment() -> dict[str, str]:
    """What the fork server inherits: enough to find Python's modules, nothing secret."""
    environment = {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path),
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
                   # openpyxl imports numpy: one BLAS thread keeps the server single-threaded (safe to
                   # fork) and its address space small
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("PATH", "LANG", "LC_ALL", "TZ"):
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def run_isolated(target: str, content: bytes, arguments: dict[str, Any], *, timeout: float,
                 memory_bytes: int, preload: tuple[str, ...] = ()) -> Any:
    """``module.function(content, **arguments)`` in a forked child; its JSON-able result.

    ``preload``: modules the server imports (once) before forking, so children start warm."""
    request = {"target": target, "arguments": arguments, "memory_bytes": memory_bytes, "timeout": timeout,
               "preload": [target.partition(":")[0], *preload], "length": len(content)}
    with _lock:
        status, body = _call(request, content, timeout)
    if status == "timeout":
        raise IsolationTimeout(timeout)
    if status == "memory":
        raise IsolationOutOfMemory(memory_bytes)
    if status != "ok":
        raise IsolationCrashed(body.decode("utf-8", "replace")[-_STDERR_TAIL:] or status)
    try:
        reply = json.loads(body)
    except ValueError as error:
        raise IsolationCrashed("the child process answered something that is not JSON") from error
    if not isinstance(reply, dict):
        raise IsolationCrashed(f"the child process answered {type(reply).__name__}, not an object")
    if "error" in reply:
        failure = reply["error"]
        raise IsolatedFailure(str(failure.get("type")), str(failure.get("message")), failure.get("reason"))
    return reply.get("result")


# -- the caller's side ----------------------------------------------------------------------------

_lock = threading.Lock()
_server: subprocess.Popen[bytes] | None = None
_server_owner = 0  # the pid that started it: a forked copy of this process must start its own


def _start_server() -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own interpreter and module, no shell
        [sys.executable, "-m", "insightmesh.knowledge.isolation"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=child_environment(), bufsize=0, start_new_session=True)


def stop_server() -> None:
    """Stop the fork server (it is started again by the next call)."""
    global _server
    server, _server = _server, None
    if server is None or _server_owner != os.getpid():
        return
    try:
        os.killpg(server.pid, signal.SIGKILL)  # the server leads its own group: its children go with it
    except ProcessLookupError:
        pass
    server.wait(timeout=5)
    for stream in (server.stdin, server.stdout):
        if stream is not None:
            stream.close()


atexit.register(stop_server)


def _call(request: dict[str, Any], content: bytes, timeout: float) -> tuple[str, bytes]:
    """One request to the fork server (started or restarted as needed): its status and body."""
    global _server, _server_owner
    if _server is not None and _server_owner != os.getpid():
        _server = None  # inherited through a fork: its pipes belong to the parent
    for attempt in (1, 2):
        if _server is None or _server.poll() is not None:
            stop_server()
            _server, _server_owner = _start_server(), os.getpid()
        server = _server
        assert server.stdin is not None and server.stdout is not None
        try:
            _write_all(server.stdin.fileno(), json.dumps(request).encode() + b"\n")
            _write_all(server.stdin.fileno(), content)
        except (BrokenPipeError, ConnectionResetError):
            stop_server()  # a server that died between calls: start a new one, once
            if attempt == 2:
                raise IsolationCrashed("the fork server could not be started") from None
            continue
        deadline = time.monotonic() + timeout + SERVER_GRACE_SECONDS
        try:
            header = json.loads(_read_line(server.stdout, deadline))
            body = _read_exactly(server.stdout, int(header["length"]), deadline)
        except TimeoutError:
            stop_server()  # the server itself is stuck: replace it
            return "timeout", b""
        except (EOFError, ValueError, KeyError):
            stop_server()
            return "crashed", b"the fork server died"
        return str(header["status"]), body
    raise AssertionError("unreachable")


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is in the pipe (one call may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_line(stream: IO[bytes], deadline: float) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        line += _read_some(stream, 1, deadline)
    return bytes(line)


def _read_exactly(stream: IO[bytes], length: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < length:
        data += _read_some(stream, min(length - len(data), 1 << 20), deadline)
    return bytes(data)


def _read_some(stream: IO[bytes], most: int, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([stream], [], [], remaining)[0]:
        raise TimeoutError
    chunk = os.read(stream.fileno(), most)
    if not chunk:
        raise EOFError
    return chunk


# -- the fork server --------------------------------------------------------------------------------


def _serve() -> int:
    """Read requests from stdin until it ends; fork a child for each; answer on stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        request = json.loads(line)
        content = _read_input(stdin, int(request["length"]))
        for module in request.get("preload", []):
            # A module that cannot be imported is not the server's failure: the child imports it
            # again and reports the error as the call's result.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
        status, body = _fork_and_wait(request, content)
        stdout.write(json.dumps({"status": status, "length": len(body)}).encode() + b"\n" + body)
        stdout.flush()


def _read_input(stream: IO[bytes], length: int) -> bytes:
    data = bytearray()
    while len(data) < length:
        chunk = stream.read(length - len(data))
        if not chunk:
            raise EOFError("the caller went away mid-request")
        data += chunk
    return bytes(data)


def _fork_and_wait(request: dict[str, Any], content: bytes) -> tuple[str, bytes]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the server's loop
        os.close(read_end)
        code = 1
        try:
            # stdin and stdout are the server's protocol with its caller: a parser that prints
            # must not write into it.
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.close(devnull)
            code = _child(request, content, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + float(request["timeout"])
    chunks: list[bytes] = []
    timed_out = False
    with os.fdopen(read_end, "rb", buffering=0) as reply:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([reply], [], [], remaining)[0]:
                timed_out = True
                break
            chunk = reply.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return "timeout", b""
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == MEMORY_EXIT_CODE:
        return "memory", b""
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return "ok", b"".join(chunks)
    how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}")
    return "crashed", f"the child process ended with {how}".encode()


def _limit_memory(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))


def _child(request: dict[str, Any], content: bytes, reply_fd: int) -> int:
    """Limit this process, call the target, write one JSON object; the exit status says the rest."""
    try:
        _limit_memory(int(request["memory_bytes"]))
        module_name, _, function_name = str(request["target"]).partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        reply: dict[str, Any] = {"result": function(content, **request["arguments"])}
    except MemoryError:
        return MEMORY_EXIT_CODE  # nothing more can be trusted to allocate: the exit status says it
    except Exception as error:  # noqa: BLE001 - not swallowed: reported to the caller, which raises it
        reason = getattr(error, "reason", None)
        reply = {"error": {"type": type(error).__name__, "message": str(error),
                           "reason": reason if isinstance(reason, str) else None}}
    try:
        with os.fdopen(reply_fd, "wb") as out:
            out.write(json.dumps(reply).encode())
    except MemoryError:
        return MEMORY_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
