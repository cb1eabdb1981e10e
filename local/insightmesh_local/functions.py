"""Lambda's execution model, locally: one worker process per concurrent execution environment.

Each function gets its own interpreter (so its own environment variables from the template and
its own module namespace), imported on first use (a real cold start) and reused while warm. A
function that exceeds its timeout is killed, as Lambda does, and the next call starts cold.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INIT_TIMEOUT = 10.0


def _timed_out(message: str, init_ms: float | None = None) -> dict[str, Any]:
    return {"ok": False, "init_ms": init_ms, "error": {"errorType": "Sandbox.Timedout", "errorMessage": message}}


class FunctionNotFound(KeyError):
    pass


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: float
    memory: int
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]
    reserved_concurrency: int | None = None

    @property
    def short_name(self) -> str:
        """The folder name under functions/, e.g. ``health``."""
        return self.code_dir.name

    def check(self) -> list[str]:
        """Problems that would make every invocation fail, found before serving."""
        problems = []
        module, _, function = self.handler.rpartition(".")
        if not module or not function:
            problems.append(f"Handler {self.handler!r} is not MODULE.FUNCTION")
        elif not (self.code_dir / (module.replace(".", "/") + ".py")).is_file():
            problems.append(f"handler file {module.replace('.', '/')}.py not found in {self.code_dir}")
        return problems


@dataclass
class Invocation:
    function: str
    trigger: str
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    init_ms: float | None = None
    request_id: str = ""

    @property
    def outcome(self) -> str:
        if self.ok:
            return "ok"
        return str((self.error or {}).get("errorType", "error"))


class _Worker:
    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "insightmesh_local.worker", str(spec.code_dir), spec.handler, str(write_fd)],
            stdin=subprocess.PIPE,
            env=spec.environment,
            pass_fds=(write_fd,),
            cwd=str(spec.code_dir),
            text=True,
            start_new_session=True,  # Ctrl-C reaches the runtime, which stops its workers itself
        )
        os.close(write_fd)
        self.reply = os.fdopen(read_fd, "r")
        # A reader thread turns the reply pipe into a queue, so waiting for a line can time out
        # without select() missing lines that Python's buffered reader has already taken in.
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_lines, name=f"worker-{spec.logical_id}", daemon=True)
        self._reader.start()

    def _read_lines(self) -> None:
        try:
            for line in self.reply:
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.reply.close()
        self.lines.put("")  # end of output: the worker exited

    def invoke(self, event: Any, request_id: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event, "request_id": request_id, "timeout": timeout}) + "\n")
        self.process.stdin.flush()
        # Init (the import, on a cold start) has Lambda's own 10 s limit; the function's timeout
        # starts when the worker says the handler is being called.
        line = self._read(INIT_TIMEOUT)
        if line is None:
            return _timed_out(f"Init phase did not finish within {INIT_TIMEOUT:.0f} seconds")
        message: dict[str, Any] = json.loads(line) if line else {}
        if message.get("phase") == "invoke":
            line = self._read(timeout)
            if line is None:
                return _timed_out(f"Task timed out after {timeout:.2f} seconds", message.get("init_ms"))
            message = json.loads(line) if line else {}
        if not message:
            code = self.process.wait(timeout=5)
            return {"ok": False, "error": {"errorType": "Runtime.ExitError",
                                            "errorMessage": f"Runtime exited with error: exit status {code}"}}
        return message

    def _read(self, timeout: float) -> str | None:
        """The next line from the worker, "" if it exited, None (and the worker killed) on time-out."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()  # the worker's loop ends at end of input
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=1.5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=2)


@dataclass
class WorkerPool:
    """Warm workers of one function; at most ``max_concurrency`` run at once (others wait)."""

    spec: FunctionSpec
    max_concurrency: int = 4
    _idle: list[_Worker] = field(default_factory=list)
    _all: set[_Worker] = field(default_factory=set)
    _slots: threading.Semaphore = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def __post_init__(self) -> None:
        limit = self.spec.reserved_concurrency or self.max_concurrency
        self._slots = threading.Semaphore(max(1, limit))

    def invoke(self, event: Any, request_id: str) -> dict[str, Any]:
        with self._slots:
            worker = self._acquire()
            response = worker.invoke(event, request_id, self.spec.timeout)
            with self._lock:
                if worker.alive and not self._closed:
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
            return response

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the runtime is stopping")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                self._all.discard(worker)
            worker = _Worker(self.spec)
            self._all.add(worker)
            return worker

    def kill_all(self) -> list[int]:
        """Kill every worker of this function now (a crash, for tests): an invocation in flight ends
        as Lambda's Runtime.ExitError and the next invocation starts cold. Returns their pids."""
        with self._lock:
            workers = [worker for worker in self._all if worker.alive]
        for worker in workers:
            worker.kill()
        return sorted(worker.process.pid for worker in workers)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        threads = [threading.Thread(target=w.stop) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=4)


class Functions:
    """All functions of the template, invoked by logical id, short name or ARN."""

    def __init__(self, specs: list[FunctionSpec], *, log: Callable[[str], None]) -> None:
        self.specs = {spec.logical_id: spec for spec in specs}
        self._pools = {spec.logical_id: WorkerPool(spec) for spec in specs}
        self._log = log

    def find(self, name: str) -> FunctionSpec:
        if name in self.specs:
            return self.specs[name]
        for spec in self.specs.values():
            if name in (spec.name, spec.short_name) or name.endswith(f":function:{spec.name}"):
                return spec
        raise FunctionNotFound(name)

    def invoke(self, name: str, event: Any, *, trigger: str) -> Invocation:
        spec = self.find(name)
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            response = self._pools[spec.logical_id].invoke(event, request_id)
        except RuntimeError as error:
            response = {"ok": False, "error": {"errorType": "Runtime.Stopping", "errorMessage": str(error)}}
        invocation = Invocation(
            function=spec.logical_id,
            trigger=trigger,
            ok=bool(response.get("ok")),
            result=response.get("result"),
            error=response.get("error"),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            init_ms=response.get("init_ms"),
            request_id=request_id,
        )
        cold = f" init={invocation.init_ms}ms" if invocation.init_ms is not None else ""
        self._log(
            f"{spec.logical_id} trigger={trigger} duration={invocation.duration_ms}ms{cold} "
            f"outcome={invocation.outcome}"
        )
        if invocation.error:
            self._log(f"{spec.logical_id} error {invocation.error.get('errorType')}: "
                      f"{invocation.error.get('errorMessage')}")
            for frame in (invocation.error.get("stackTrace") or [])[-6:]:
                self._log("  " + str(frame).rstrip())
        return invocation

    def kill_workers(self, name: str) -> list[int]:
        """Kill the worker processes of function ``name`` (see ``WorkerPool.kill_all``)."""
        return self._pools[self.find(name).logical_id].kill_all()

    def invoke_async(self, name: str, event: Any, *, trigger: str) -> threading.Thread:
        thread = threading.Thread(target=self.invoke, args=(name, event), kwargs={"trigger": trigger}, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        threads = [threading.Thread(target=pool.close) for pool in self._pools.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=4.5)
